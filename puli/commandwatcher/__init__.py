"""The commandwatcher: the per-command process that runs, watches, limits and reports one command
for the worker (see main.py for the contract)."""
