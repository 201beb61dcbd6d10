"""Puli's command-line tools: puliquery, the Puli-era pul_* names, puliexec and pulistats."""
