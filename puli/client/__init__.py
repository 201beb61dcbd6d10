"""Puli's job-script API and the dispatcher's HTTP client.

A Puli 1.7 job script needs only its imports changed: ``from puliclient import Graph, Task``
becomes ``from puli.client import Graph, Task`` (and ``puliclient.jobs`` becomes
``puli.client.jobs``). Runner names such as ``puliclient.jobs.DefaultCommandRunner`` may stay as
they are in the script: the commandwatcher maps them.
"""
from .errors import (  # noqa: F401
    DependencyCycleError, Error, GraphConnectionError, GraphError, GraphExecError, GraphExecInterrupt,
    GraphSubmissionError, SubmissionUnreachable, TaskAlreadyDecomposedError)
from .graph import Graph  # noqa: F401
from .nodes import (  # noqa: F401
    BLOCKED, CANCELED, DONE, ERROR, NODE_STATUS_NAMES, PAUSED, READY, RUNNING, Command, HierarchicalDict, Task,
    TaskGroup)
from .jobs import (  # noqa: F401
    BooleanParameter, CommandDone, CommandError, CommandLineRunner, CommandRunner, DefaultCommandRunner,
    DefaultTaskDecomposer, FloatParameter, IntegerParameter, RangeError, StringListParameter,
    StringParameter, TaskDecomposer, TaskExpander, ValidationError)
from .openjd import submit_openjd  # noqa: F401
from .server import PuliError, RequestError, Server, ServerUnreachable, server_url  # noqa: F401

# Puli 1.7's name; not in __all__, so that `from puli.client import *` keeps the builtin.
ConnectionError = GraphConnectionError


def __getattr__(name):
    # Loaded on first use: it is only needed by scripts that submit callables.
    if name == "CallableRunner":
        from .runner import CallableRunner
        return CallableRunner
    raise AttributeError(f"module 'puli.client' has no attribute {name!r}")


__all__ = [
    "Graph", "TaskGroup", "Task", "Command",
    "BLOCKED", "READY", "RUNNING", "DONE", "ERROR", "CANCELED", "PAUSED",
    "Error", "GraphError", "GraphConnectionError", "DependencyCycleError", "GraphSubmissionError",
    "SubmissionUnreachable", "GraphExecError", "GraphExecInterrupt", "TaskAlreadyDecomposedError",
    "HierarchicalDict", "NODE_STATUS_NAMES",
    "CommandRunner", "StringParameter", "StringListParameter", "BooleanParameter", "IntegerParameter",
    "FloatParameter", "CommandError", "CommandDone", "ValidationError", "RangeError",
    "DefaultCommandRunner", "CommandLineRunner", "TaskDecomposer", "DefaultTaskDecomposer", "TaskExpander",
    "PuliError", "ServerUnreachable", "RequestError", "Server", "server_url", "submit_openjd",
]
