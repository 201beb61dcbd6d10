"""Puli 1.7's ``puliclient.jobs`` names: the runner base class and its parameters (for writing
runners), the built-in runners, and the task decomposer / expander base classes.

A runner written for Puli 1.7 needs only its import changed::

    from puli.client.jobs import CommandRunner, StringParameter, IntegerParameter, CommandError
"""
from puli.commandwatcher.runner import (  # noqa: F401
    BooleanParameter, CommandDone, CommandError, CommandRunner, FloatParameter, IntegerParameter, Parameter,
    RangeError, RunnerLoadError, StringListParameter, StringParameter, ValidationError, load_runner_class)
from puli.commandwatcher.runners import CommandLineRunner, DefaultCommandRunner  # noqa: F401

__all__ = [
    "CommandRunner", "Parameter", "CommandRunnerParameter", "StringParameter", "StringListParameter",
    "BooleanParameter", "IntegerParameter", "FloatParameter", "CommandError", "CommandDone", "ValidationError",
    "RangeError", "DefaultCommandRunner", "CommandLineRunner", "TaskExpander", "TaskDecomposer",
    "DefaultTaskDecomposer", "JobTypeImportError", "loadCommandRunner", "loadTaskDecomposer", "loadTaskExpander",
]

# Puli 1.7's name of the parameter base class.
CommandRunnerParameter = Parameter


class JobTypeImportError(ImportError):
    """A runner, decomposer or expander named by a dotted path cannot be loaded."""


class TaskExpander:
    """Base of TaskGroup expanders: called with the group at submission, may add nodes to it."""

    def __init__(self, taskGroup):
        self.taskGroup = taskGroup


class TaskDecomposer:
    """Base of task decomposers: called with the task at submission, adds its commands."""

    def __init__(self, task):
        self.task = task

    def addCommand(self, name, args, runnerPackages=None, watcherPackages=None):
        return self.task.addCommand(name, args, runnerPackages, watcherPackages)


class DefaultTaskDecomposer(TaskDecomposer):
    """Puli's default decomposition: start/end/packetSize or framesList, else one command."""

    def __init__(self, task):
        super().__init__(task)
        task.decomposer = None
        task.decompose()


def _load(name, base):
    import importlib
    module_name, _, attr = str(name).rpartition(".")
    if not module_name:
        raise JobTypeImportError(f"invalid name {name!r}: expected some.module.ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobTypeImportError(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise JobTypeImportError(f"no {attr!r} in module {module_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise JobTypeImportError(f"{name!r} is not a {base.__name__}")
    return cls


def loadCommandRunner(name):
    try:
        return load_runner_class(name)
    except RunnerLoadError as exc:
        raise JobTypeImportError(str(exc)) from None


def loadTaskDecomposer(name):
    return _load(name, TaskDecomposer)


def loadTaskExpander(name):
    return _load(name, TaskExpander)
