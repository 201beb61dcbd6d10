"""Setting kinds: how a raw value (YAML, or environment or --set text) becomes a setting's value."""

import math
import os
import pathlib
import re
import types
import urllib.parse
from typing import Any, Callable, Iterable, Mapping as MappingABC

import yaml



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
            raise ValueError(f"{text!r} is not a valid YAML value ({yaml_problem(exc)})") from None
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


class Umask(Kind):
    """A umask as octal digits, quoted ("0022"): unquoted, YAML reads 0022 as octal and 22 as
    decimal, and only the quotes say which was meant."""

    textual = True

    def convert(self, value):
        if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError(f"{value!r} is not a umask: three octal digits with an optional leading 0, "
                             "quoted, e.g. '0022'")
        return int(value, 8)


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


_RENDER_NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::(\d{1,5}))?")


class RenderNodeName(Str):
    """A render node's name: "host:port", or a bare "host"."""

    def convert(self, value):
        name = super().convert(value)
        match = _RENDER_NODE_NAME.fullmatch(name)
        if not match or (match[1] is not None and not 1 <= int(match[1]) <= 65535):
            raise ValueError(f"{name!r} is not a render node name (host:port or host)")
        return name


def yaml_problem(exc: yaml.YAMLError) -> str:
    """The short reason of a YAML error, for a one-line message."""
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]
