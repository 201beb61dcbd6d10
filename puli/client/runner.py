"""CallableRunner: run a Python function or method as a command (Puli's ``addNewCallable``).

``graph.addNewCallable(module.function, user_args=(1, 2), user_kwargs={"x": 3})`` makes a task
whose command imports ``module`` on the render node and calls ``function(1, 2, x=3)``; a method
is called on an instance made with no arguments. The arguments must be JSON-serializable, and the
module importable there (``sysPath`` carries this process's ``sys.path`` along).
"""
import importlib
import inspect
import json
import site
import sys

from puli.commandwatcher.runner import CommandError, CommandRunner, StringListParameter, StringParameter


def callable_arguments(target, name, user_args, user_kwargs):
    """(task name, runner arguments) for a function or a method."""
    from .errors import GraphError
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        raise GraphError(f"addNewCallable() takes a function or a method, not {target!r}")
    try:
        arguments = {"user_args": json.dumps(list(user_args)), "user_kwargs": json.dumps(dict(user_kwargs))}
    except TypeError as exc:
        raise GraphError(f"addNewCallable(): the arguments must be JSON-serializable: {exc}") from None
    module = target.__module__
    if module == "__main__":
        raise GraphError("addNewCallable(): the callable must be importable from a module, not defined "
                         "in the script being run (__main__)")
    arguments.update(sysPath=[p for p in sys.path if p], moduleName=module)
    if inspect.ismethod(target):
        cls = target.__self__ if inspect.isclass(target.__self__) else type(target.__self__)
        arguments.update(execType="method", className=cls.__name__, methodName=target.__name__)
        default_name = f"{cls.__name__}.{target.__name__}"
    else:
        arguments.update(execType="function", funcName=target.__name__)
        default_name = target.__name__
    return name or default_name, arguments


class CallableRunner(CommandRunner):
    execType = StringParameter(default="function")
    moduleName = StringParameter(mandatory=True)
    funcName = StringParameter()
    className = StringParameter()
    methodName = StringParameter()
    sysPath = StringListParameter(default=[])
    user_args = StringParameter(default="[]")
    user_kwargs = StringParameter(default="{}")

    def execute(self, arguments, updateCompletion, updateMessage, updateStats=None):
        for path in arguments["sysPath"]:
            if path not in sys.path:
                site.addsitedir(path)
        try:
            module = importlib.import_module(arguments["moduleName"])
        except ImportError as exc:
            raise CommandError(f"cannot import {arguments['moduleName']!r}: {exc}") from None
        args = json.loads(arguments["user_args"])
        kwargs = json.loads(arguments["user_kwargs"])
        if arguments["execType"] == "method":
            cls = getattr(module, arguments["className"] or "", None)
            if cls is None:
                raise CommandError(f"no class {arguments['className']!r} in {arguments['moduleName']!r}")
            target = getattr(cls(), arguments["methodName"] or "")
        else:
            target = getattr(module, arguments["funcName"] or "", None)
            if target is None:
                raise CommandError(f"no function {arguments['funcName']!r} in {arguments['moduleName']!r}")
        updateMessage(f"calling {arguments['moduleName']}.{getattr(target, '__qualname__', target)}")
        target(*args, **kwargs)
        updateCompletion(1.0)
