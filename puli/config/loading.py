"""Loading settings, layered: defaults file < config file < environment < ``--set`` overrides, every
problem reported with its source, key and reason."""

import difflib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping as MappingABC

import yaml

from ..redaction import is_secret, redact
from .kinds import Kind, yaml_problem



class ConfigError(Exception):
    """Settings that cannot be loaded; ``errors`` holds one line per problem found."""

    def __init__(self, errors: Iterable[str]):
        self.errors = [redact(e) for e in errors]     # a bad db_url must not print its password
        super().__init__("\n".join(self.errors))


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

class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader refusing a key written twice in one mapping (PyYAML silently keeps the last);
    libyaml's parser where PyYAML has it (ten times faster)."""

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
        errors.append(f"{path}:{line} invalid YAML: {yaml_problem(exc)}")
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


def _shown(name: str, text: str) -> str:
    return "***" if is_secret(name) else text


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
                    _inline_prefix(f"{variable}={_shown(name, text)}", name), text=True,
                    spell=lambda known: env_prefix + known.upper())

    for override in overrides:
        name, equals, text = override.partition("=")
        if not equals:
            errors.append(f"--set {override}: expected KEY=VALUE")
            continue
        name = name.strip()
        _assign(schema, loaded, errors, name, text, _inline_prefix(f"--set {name}={_shown(name, text)}", name),
                text=True)

    for name, value in (values or {}).items():
        _assign(schema, loaded, errors, name, value, _inline_prefix(f"{name}={_shown(name, repr(value))}", name))

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
