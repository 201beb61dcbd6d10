"""Puli, a render farm manager: dispatcher, worker, job-script API and command-line tools."""

__version__ = "2.0.0.dev0"
