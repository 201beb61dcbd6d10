"""A submission body (`{"template": ..., "parameters": {...}}`) read from JSON or YAML text,
checked for shape before the library sees it."""
import json

import yaml

from .errors import OpenJDError

MAX_PARAMETERS = 1000
MAX_DEPTH = 32


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: an alias is a reference, and a few bytes of them
    expand to gigabytes once the document is copied or written out as JSON."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise OpenJDError("YAML aliases (*name) are not accepted in an OpenJD submission")
        return super().compose_node(parent, index)


def load_yaml(text):
    """A YAML document (a template file, or a whole body) as plain data; OpenJDError if it is not one."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)       # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise OpenJDError(f"not a YAML document: {exc}") from None
    except RecursionError:
        raise OpenJDError("the YAML document is nested too deeply") from None


def parse_body(text, media_type):
    """The body's `template` (an object) and `parameters` ({name: value}), from JSON or YAML."""
    if media_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        body = load_yaml(text)
    else:
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise OpenJDError(f"the body is not JSON: {exc}") from None
    return check_body(body)


def check_body(body):
    if not isinstance(body, dict):
        raise OpenJDError("the body must be an object: {\"template\": {...}, \"parameters\": {...}}")
    unknown = sorted(set(body) - {"template", "parameters", "pool", "priority"})
    if unknown:
        raise OpenJDError(f"unknown field(s) {', '.join(map(repr, unknown))}; the body holds "
                          "'template', 'parameters' and optionally 'pool' and 'priority'")
    template = body.get("template")
    if not isinstance(template, dict):
        raise OpenJDError("'template' must be an OpenJD job template (an object)")
    if _depth(template) > MAX_DEPTH:
        raise OpenJDError(f"'template' is nested deeper than {MAX_DEPTH} levels")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict) or len(parameters) > MAX_PARAMETERS:
        raise OpenJDError(f"'parameters' must be an object of at most {MAX_PARAMETERS} name: value pairs")
    for name, value in parameters.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise OpenJDError(f"parameters.{name} must be a string or a number, not {type(value).__name__}")
    pool = body.get("pool", "default")
    if not isinstance(pool, str) or not pool:
        raise OpenJDError("'pool' must be a pool's name")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise OpenJDError("'priority' must be an integer")
    return {"template": template, "parameters": {str(k): str(v) for k, v in parameters.items()},
            "pool": pool, "priority": priority}


def _depth(value, level=0):
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
