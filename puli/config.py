"""Typed YAML settings, layered: defaults file < config file < environment < ``--set`` overrides."""

import difflib
import math
import os
import sys
import pathlib
import re
import types
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping as MappingABC

import yaml


class ConfigError(Exception):
    """Settings that cannot be loaded; ``errors`` holds one line per problem found."""

    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --- kinds: how a raw value (YAML, or environment or --set text) becomes a setting ---

class Kind:
    """A setting's type: ``convert`` returns the checked value or raises ValueError saying why."""

    #: String kinds take environment and --set text literally when it does not read as a YAML
    #: string, so that ``--set address=8004`` or ``--set db_url=`` mean what they say.
    textual = False

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def from_text(self, text: str) -> Any:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            if self.textual:
                return self.convert(text)
            raise ValueError(f"{text!r} is not a valid YAML value ({_yaml_problem(exc)})") from None
        if self.textual and not isinstance(value, str):
            value = text
        return self.convert(value)


def _is_number(value: Any) -> bool:
    # YAML's true/false are bools, and bool is an int subclass: never let them pass as numbers.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Str(Kind):
    """Text; empty only when ``empty`` is true. A YAML null reads as the empty string."""

    textual = True

    def __init__(self, *, empty: bool = False):
        self.empty = empty

    def convert(self, value):
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string (quote it)")
        if not value and not self.empty:
            raise ValueError("must not be empty")
        return value


class Int(Kind):
    """An integer within [minimum, maximum]."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value):
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        return _check_range(value, self.minimum, self.maximum, str)


class Float(Kind):
    """A finite number within [minimum, maximum]."""

    def __init__(self, minimum: float | None = None, maximum: float | None = None):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value):
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if not _is_number(number) or not math.isfinite(number):
            raise ValueError(f"{value!r} is not a number")
        return _check_range(float(number), self.minimum, self.maximum, _format_number)


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


class Duration(Kind):
    """Seconds, as a float: a number, or text such as "500ms", "30s", "5m", "2h", "7d", "1h30m"."""

    def __init__(self, minimum: float = 0):
        self.minimum = minimum

    def convert(self, value):
        if _is_number(value):
            seconds = value
        elif isinstance(value, str) and _is_duration_text(value):
            seconds = sum(float(number) * _DURATION_UNITS[unit]
                          for number, unit in _DURATION_PART.findall(value))
        elif isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
            seconds = float(value)
        else:
            raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 30s, 5m, 2h, 7d)")
        if not math.isfinite(seconds):
            raise ValueError(f"{value!r} is not a duration")
        return _check_range(float(seconds), self.minimum, None, format_duration)


def _is_duration_text(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not _DURATION_PART.sub("", stripped).strip()


def format_duration(seconds: float) -> str:
    """Shortest exact spelling of a duration in one unit, such as "30s", "5m" or "7d"."""
    for unit in ("w", "d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{_format_number(seconds)}s"


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class Size(Kind):
    """A byte count: an integer, or text with a binary unit such as "512K", "64MiB", "2G"."""

    def __init__(self, minimum: int = 0):
        self.minimum = minimum

    def convert(self, value):
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*(?:([kKmMgGtT])(?:iB)?)?\s*", value)
            if not match:
                raise ValueError(f"{value!r} is not a size (bytes, or e.g. 512K, 64MiB, 2G)")
            value = int(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a size in bytes")
        return _check_range(value, self.minimum, None, str)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Bool(Kind):
    """true/false; also yes/no, on/off and 1/0, as environment variables are often written."""

    def convert(self, value):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (true or false)")


class Path(Kind):
    """A filesystem path, made absolute against the working directory at load time.

    With ``optional``, an empty value means "not set" and reads as None, leaving the caller
    to derive a default (e.g. a directory under the data directory).
    """

    textual = True

    def __init__(self, *, optional: bool = False):
        self.optional = optional

    def convert(self, value):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        text = Str(empty=self.optional).convert(value)
        if not text:
            return None
        return pathlib.Path(os.path.abspath(os.path.expanduser(text)))


class Url(Kind):
    """A URL whose scheme is one of ``schemes``; empty only when ``optional``."""

    textual = True

    def __init__(self, schemes: Iterable[str], *, optional: bool = False):
        self.schemes = tuple(schemes)
        self.optional = optional

    def convert(self, value):
        text = Str(empty=self.optional).convert(value)
        if text and urllib.parse.urlsplit(text).scheme not in self.schemes:
            raise ValueError(f"{text!r} is not a {' or '.join(self.schemes)} URL")
        return text


class Choice(Kind):
    """One of a fixed set of words; with ``fold_case``, any case matches the canonical one."""

    textual = True

    def __init__(self, *choices: str, fold_case: bool = False):
        self.choices = choices
        self.fold_case = fold_case

    def convert(self, value):
        for choice in self.choices:
            if value == choice or (self.fold_case and isinstance(value, str)
                                   and value.lower() == choice.lower()):
                return choice
        raise ValueError(f"{value!r} is not one of: {', '.join(self.choices)}")


class LogLevel(Choice):
    """A logging level name, in any case, stored upper-case."""

    def __init__(self):
        super().__init__("DEBUG", "INFO", "WARNING", "ERROR", fold_case=True)


class Invalid(ValueError):
    """A bad value inside a structured one; ``where`` locates it, e.g. ".farm[2]"."""

    def __init__(self, reason: str, where: str):
        super().__init__(reason)
        self.reason, self.where = reason, where


def _inside(where: str, convert: Callable[[Any], Any], value: Any) -> Any:
    try:
        return convert(value)
    except Invalid as exc:
        raise Invalid(exc.reason, where + exc.where) from None
    except ValueError as exc:
        raise Invalid(str(exc), where) from None


class Mapping(Kind):
    """A read-only mapping from non-empty strings to values of kind ``values``; null is empty."""

    def __init__(self, values: Kind):
        self.values = values

    def convert(self, value):
        if value is None:
            value = {}
        if not isinstance(value, MappingABC):
            raise ValueError(f"{value!r} is not a mapping (e.g. {{name: value}})")
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"key {key!r} is not a non-empty string (quote it)")
            result[key] = _inside(f".{key}", self.values.convert, item)
        return types.MappingProxyType(result)


class List(Kind):
    """A tuple of values of kind ``items``; null is empty."""

    def __init__(self, items: Kind):
        self.items = items

    def convert(self, value):
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{value!r} is not a list (e.g. [a, b])")
        return tuple(_inside(f"[{index}]", self.items.convert, item)
                     for index, item in enumerate(value))


def _check_range(value, minimum, maximum, spell):
    if minimum is not None and value < minimum:
        raise ValueError(f"{spell(value)} is less than the minimum, {spell(minimum)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{spell(value)} is more than the maximum, {spell(maximum)}")
    return value


def _format_number(number: float) -> str:
    return f"{number:g}"


# --- schema and loaded settings ---

@dataclass(frozen=True)
class Setting:
    """One setting of a schema (a dict: name -> Setting); its default is in the defaults file.

    ``check``, if given, gets the converted value and raises ValueError to refuse it.
    """

    kind: Kind
    help: str
    check: Callable[[Any], None] | None = None

    def convert(self, value: Any, *, text: bool = False) -> Any:
        converted = self.kind.from_text(value) if text else self.kind.convert(value)
        if self.check is not None:
            self.check(converted)
        return converted


class Settings:
    """Loaded settings: read-only, one attribute per setting."""

    __slots__ = ("_values",)

    def __init__(self, values: MappingABC[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}{_suggestion(name, self._values)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("settings are read-only; use replace()")

    __delattr__ = __setattr__

    # Immutable, so a copy is the object itself (the default copy protocol would need setattr).
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other):
        return isinstance(other, Settings) and self._values == other._values

    __hash__ = None

    def __repr__(self):
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def as_dict(self) -> dict[str, Any]:
        """The values by setting name (mappings stay read-only, lists are tuples)."""
        return dict(self._values)

    def replace(self, **changes) -> "Settings":
        """A copy with some values changed; the values are taken as given, not converted."""
        unknown = [name for name in changes if name not in self._values]
        if unknown:
            name = unknown[0]
            raise AttributeError(f"no setting {name!r}{_suggestion(name, self._values)}")
        return Settings({**self._values, **changes})


def _suggestion(name: str, names: Iterable[str], spell: Callable[[str], str] = repr) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {spell(close[0])}?)" if close else ""


# --- loading ---

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing a key written twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = key_node.value
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


def _read_yaml(path: os.PathLike | str, errors: list[str]) -> dict | None:
    """The file's top-level mapping, or None after appending why it cannot be read to ``errors``."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_StrictLoader)
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror}")
        return None
    except UnicodeDecodeError as exc:
        errors.append(f"{path}: not UTF-8 text ({exc.reason})")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        errors.append(f"{path}:{line} invalid YAML: {_yaml_problem(exc)}")
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(f"{path}: expected a mapping of settings, found {type(data).__name__}")
        return None
    return data


def _assign(schema, loaded, errors, name, raw, prefix, *, text=False, spell=repr):
    """Convert ``raw`` into ``loaded[name]``, or add to ``errors`` why not.

    ``prefix(where)`` names the source, and with ``where`` the place of a bad value: the key
    itself (``""``) or a place inside a structured value (".farm[1]").
    """
    if name not in schema:
        errors.append(f"{prefix('')}: unknown setting{_suggestion(name, schema, spell)}")
        return
    try:
        loaded[name] = schema[name].convert(raw, text=text)
    except ValueError as exc:
        errors.append(f"{prefix(getattr(exc, 'where', ''))}: {getattr(exc, 'reason', exc)}")


def _apply_file(schema, path, loaded, errors) -> dict | None:
    data = _read_yaml(path, errors)
    for name, raw in (data or {}).items():
        name = str(name)
        _assign(schema, loaded, errors, name, raw,
                lambda where, name=name: f"{path}: key {name + where!r}")
    return data


def _inline_prefix(label: str, name: str) -> Callable[[str], str]:
    return lambda where: f"{label}: {name}{where}" if where else label


def load(schema: MappingABC[str, Setting], defaults_path: os.PathLike | str,
         config_file: os.PathLike | str | None = None, overrides: Iterable[str] = (),
         environ: MappingABC[str, str] | None = None, env_prefix: str = "PULI_DISPATCHER_",
         *, system_file: os.PathLike | str | None = None,
         values: MappingABC[str, Any] | None = None) -> Settings:
    """Load settings from each source in turn, each overriding the ones before it.

    The sources: the defaults file, which must set every setting; ``config_file``, or else
    ``system_file`` if it exists; the environment variables ``env_prefix + NAME.upper()``
    (``environ`` defaults to os.environ); ``overrides``, "key=value" strings whose value is read
    as YAML; and ``values``, Python values by setting name. Every unknown key and bad value is
    collected, then raised as one ConfigError naming for each the source, key and reason.
    """
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    loaded: dict[str, Any] = {}

    defaults = _apply_file(schema, defaults_path, loaded, errors)
    if defaults is not None:
        errors.extend(f"{defaults_path}: key {name!r}: missing (every setting needs a default)"
                      for name in schema if name not in defaults)

    if config_file is None and system_file is not None and os.path.exists(system_file):
        config_file = system_file
    if config_file is not None:
        _apply_file(schema, config_file, loaded, errors)

    for variable, text in sorted(environ.items()):
        if variable.startswith(env_prefix):
            name = variable[len(env_prefix):].lower()
            _assign(schema, loaded, errors, name, text,
                    _inline_prefix(f"{variable}={text}", name), text=True,
                    spell=lambda known: env_prefix + known.upper())

    for override in overrides:
        name, equals, text = override.partition("=")
        if not equals:
            errors.append(f"--set {override}: expected KEY=VALUE")
            continue
        name = name.strip()
        _assign(schema, loaded, errors, name, text, _inline_prefix(f"--set {override}", name),
                text=True)

    for name, value in (values or {}).items():
        _assign(schema, loaded, errors, name, value, _inline_prefix(f"{name}={value!r}", name))

    if errors:
        raise ConfigError(errors)
    return Settings({name: loaded[name] for name in schema})


def check(schema: MappingABC[str, Setting], defaults_path: os.PathLike | str,
          path: os.PathLike | str) -> list[str]:
    """The errors in the config file at ``path``, none if it is valid: for --check-config."""
    try:
        load(schema, defaults_path, config_file=path, environ={})
    except ConfigError as exc:
        return exc.errors
    return []


def add_arguments(parser) -> None:
    """Add ``--config FILE`` and the repeatable ``--set KEY=VALUE`` to an argparse parser."""
    parser.add_argument("--config", metavar="FILE",
                        help="YAML settings file (default: the system file, if it exists)")
    parser.add_argument("--set", metavar="KEY=VALUE", dest="overrides", action="append", default=[],
                        help="override one setting; VALUE is read as YAML (repeatable)")
    parser.add_argument("--check-config", metavar="FILE",
                        help="check a settings file and exit (non-zero when it is invalid)")


def check_command(schema: MappingABC[str, Setting], defaults_path: os.PathLike | str, args) -> int | None:
    """With --check-config FILE: print its errors and return the exit status; else None."""
    if not getattr(args, "check_config", None):
        return None
    errors = check(schema, defaults_path, args.check_config)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


def from_args(schema: MappingABC[str, Setting], defaults_path: os.PathLike | str, args,
              **kwargs) -> Settings:
    """Load settings given ``args`` parsed by a parser set up by add_arguments; see load()."""
    return load(schema, defaults_path, config_file=args.config, overrides=args.overrides, **kwargs)
