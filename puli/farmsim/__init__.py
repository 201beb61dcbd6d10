"""puli-farmsim: thousands of simulated render nodes speaking the real worker protocol, in one
process, for capacity planning and the end-to-end benchmark (benchmarks/endtoend.py)."""
