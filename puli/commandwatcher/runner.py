"""The Puli runner model: declared parameters, validation, the CommandRunner base class and how
a runner is named and loaded.

A runner declares its parameters as class attributes::

    class MyRunner(CommandRunner):
        scene = StringParameter(mandatory=True)
        samples = IntegerParameter(default=64, min=1, max=4096)

        def execute(self, arguments, updateCompletion, updateMessage, updateStats):
            ...

The watcher calls ``validate(arguments)`` (defaults, casts, ranges), then ``execute``; it passes
``updateStats`` only when the signature names it. Returning or raising ``CommandDone`` means DONE,
``CommandError`` means ERROR with its message, any other exception ERROR with the traceback logged.
"""
import importlib
import logging


class ValidationError(ValueError):
    """An argument is missing or has the wrong type; `parameter` names it."""

    def __init__(self, parameter, reason):
        super().__init__(f"parameter {parameter!r}: {reason}")
        self.parameter = parameter


class RangeError(ValidationError):
    """An argument is outside its parameter's min..max."""


class CommandError(Exception):
    """Raised by a runner: the command failed (ERROR, with this message)."""


class CommandDone(Exception):
    """Raised by a runner: the command is finished (DONE), e.g. stopped early on purpose."""


class Parameter:
    """A declared runner parameter; the attribute name is the argument's name."""

    def __init__(self, default=None, mandatory=False):
        self.default = default
        self.mandatory = mandatory
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def validate(self, value):
        """The value cast to the parameter's type; ValidationError if it cannot be."""
        return value

    def fail(self, reason):
        raise ValidationError(self.name, reason)


class StringParameter(Parameter):
    def validate(self, value):
        if not isinstance(value, str):
            self.fail(f"expected a string, got {value!r}")
        return value


class StringListParameter(Parameter):
    def validate(self, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
            self.fail(f"expected a list of strings, got {value!r}")
        return list(value)


class BooleanParameter(Parameter):
    # Arguments often come from command lines and forms, so the usual spellings are accepted.
    TRUE = {"1", "true", "yes", "on"}
    FALSE = {"0", "false", "no", "off", ""}

    def validate(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in self.TRUE | self.FALSE:
            return value.strip().lower() in self.TRUE
        self.fail(f"expected a boolean, got {value!r}")


class _NumberParameter(Parameter):
    kind = "number"

    def __init__(self, default=None, min=None, max=None, mandatory=False):
        super().__init__(default=default, mandatory=mandatory)
        self.min = min
        self.max = max

    def cast(self, value):
        raise NotImplementedError

    def validate(self, value):
        # bool is an int in Python, but True as a frame number is a mistake, not a 1.
        if isinstance(value, bool):
            self.fail(f"expected {self.kind}, got {value!r}")
        try:
            number = self.cast(value)
        except (TypeError, ValueError):
            self.fail(f"expected {self.kind}, got {value!r}")
        if self.min is not None and number < self.min:
            raise RangeError(self.name, f"{number} is below the minimum {self.min}")
        if self.max is not None and number > self.max:
            raise RangeError(self.name, f"{number} is above the maximum {self.max}")
        return number


class IntegerParameter(_NumberParameter):
    kind = "an integer"

    def cast(self, value):
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(value, (int, str)):
            return int(value)
        raise TypeError(value)


class FloatParameter(_NumberParameter):
    kind = "a number"

    def cast(self, value):
        if isinstance(value, (int, float, str)):
            return float(value)
        raise TypeError(value)


class CommandRunner:
    """Base class of runners. Subclasses declare Parameters and implement execute()."""

    parameters = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Inherited parameters first, so that a subclass can redeclare (override) one.
        collected = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Parameter):
                    collected[name] = value
        cls.parameters = collected

    def __init__(self):
        self.log = logging.getLogger(f"puli.runner.{type(self).__name__}")

    def validate(self, arguments):
        """Apply defaults, casts and ranges to `arguments` in place (as Puli did) and return it.
        Arguments without a declared parameter are left alone."""
        for name, parameter in self.parameters.items():
            if arguments.get(name) is None:
                if parameter.mandatory:
                    raise ValidationError(name, "is mandatory")
                if parameter.default is not None:
                    arguments[name] = parameter.default
                continue
            arguments[name] = parameter.validate(arguments[name])
        return arguments

    def execute(self, arguments, updateCompletion, updateMessage, updateStats=None):
        raise NotImplementedError(f"{type(self).__name__}.execute()")


def wants_stats(runner):
    """Whether runner.execute() takes updateStats (by name, or through **kwargs)."""
    # Imported here: only a runner child needs it, and the watcher's start-up time counts.
    import inspect
    parameters = inspect.signature(runner.execute).parameters
    return "updateStats" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


BUILTIN = "puli.commandwatcher.runners."

# Puli 1.7 job scripts name their runners like this; they mean ours.
ALIASES = {
    "puliclient.jobs.DefaultCommandRunner": BUILTIN + "DefaultCommandRunner",
    "puliclient.contrib.commandlinerunner.CommandLineRunner": BUILTIN + "CommandLineRunner",
    "puliclient.CallableRunner": "puli.client.runner.CallableRunner",
    "puliclient.runner.CallableRunner": "puli.client.runner.CallableRunner",
}


class RunnerLoadError(Exception):
    pass


def canonical_name(name):
    """The runner's dotted path, with Puli 1.7 aliases mapped to ours."""
    if not isinstance(name, str) or "." not in name:
        raise RunnerLoadError(f"runner must be a dotted path module.Class, got {name!r}")
    return ALIASES.get(name, name)


def load_runner_class(name):
    """The CommandRunner subclass a dotted path names; RunnerLoadError says why not."""
    module_name, _, class_name = canonical_name(name).rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RunnerLoadError(f"cannot import runner module {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, CommandRunner)):
        raise RunnerLoadError(f"{name!r} is not a CommandRunner class")
    return cls
