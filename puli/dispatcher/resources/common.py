"""What every resource shares: reading a JSON body, checking its fields, paging, request limits."""
import functools
import json
import math
import time
from itertools import islice

import falcon
import falcon.media

from ...model import lookup
from ...model.errors import InvalidValue
from ...model.status import CommandStatus, NodeStatus
from .. import views
from ..errors import BadBody, BadField, ReadOnlyPools

MISSING = object()

_KINDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "an object",
    list: "a list",
}


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number any database keeps")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a number")
    return value


def _loads(text):
    """JSON as the dispatcher accepts it: no NaN nor Infinity (standard JSON has neither, and
    no column holds them), no number that overflows a double, no endless nesting."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    if "\\ud" in text or "\\uD" in text:
        # An escaped surrogate must come in a pair: a lone one is no character, and nothing
        # (the database, the logs, a worker) can encode it.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is no character") from None
    return value


def json_handler():
    """The media handler of every body: strict JSON in, standard JSON out."""
    return falcon.media.JSONHandler(
        loads=_loads, dumps=functools.partial(json.dumps, ensure_ascii=False, allow_nan=False))


def read_body(req, required=True):
    """The request's JSON object body; {} when empty and not required."""
    media = req.get_media(default_when_empty=None)
    if media is None:
        if required:
            raise BadBody("this request needs a JSON object body")
        return {}
    if not isinstance(media, dict):
        raise BadBody(f"the body must be a JSON object, not {_json_kind(media)}")
    return media


def _json_kind(value):
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def field(body, name, kind, default=MISSING, *, minimum=None, maximum=None, nullable=False):
    """body[name] checked to be of `kind` (int, float, bool, str, dict or list) and in range.

    A missing field gives `default`, or a 400 naming it when there is none. int never accepts
    a bool; float accepts ints and returns a float; bool accepts 0 and 1.
    """
    value = body.get(name, MISSING)
    if value is MISSING:
        if default is MISSING:
            raise BadField(name, f"'{name}' is required ({_KINDS[kind]})")
        return default
    if value is None and nullable:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1) and isinstance(value, int):
            return bool(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _in_range(name, value, minimum, maximum)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _in_range(name, float(value), minimum, maximum)
    elif isinstance(value, kind):
        return value
    raise BadField(name, f"'{name}' must be {_KINDS[kind]}, not {value!r}"[:300])


def _in_range(name, value, minimum, maximum):
    if minimum is not None and value < minimum:
        raise BadField(name, f"'{name}' must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise BadField(name, f"'{name}' must be at most {maximum}, not {value}")
    return value


def str_list(body, name, default=MISSING):
    """A list of strings; a comma-separated string is accepted too (Puli's "1,2,3" forms)."""
    value = body.get(name, MISSING)
    if value is MISSING:
        if default is MISSING:
            raise BadField(name, f"'{name}' is required (a list of strings)")
        return default
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadField(name, f"'{name}' must be a list of strings")


def int_list(body, name, default=MISSING):
    """A list of integers; "1,2,3" is accepted too."""
    value = body.get(name, MISSING)
    if value is MISSING:
        if default is MISSING:
            raise BadField(name, f"'{name}' is required (a list of integers)")
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise BadField(name, f"'{name}' must be integers separated by commas, not {value!r}") from None
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    raise BadField(name, f"'{name}' must be a list of integers")


def str_dict(body, name):
    """An object of strings (an environment); numbers are turned into strings."""
    value = field(body, name, dict)
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise BadField(name, f"'{name}.{key}' must be a string")
    return {k: str(v) for k, v in value.items()}


# -- query parameters ----------------------------------------------------------------------------
def param_ints(req, name):
    """A repeatable integer query parameter (?s=1&s=2 or ?s=1,2); [] when absent."""
    values = req.get_param_as_list(name) or []
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise BadField(name, f"query parameter '{name}' must be integers, not {part!r}") from None
    return out


def param_strs(req, name):
    return [v for v in (req.get_param_as_list(name) or []) if v != ""]


def command_statuses(name, values):
    for value in values:
        if value not in CommandStatus._value2member_map_:
            raise BadField(name, f"{value} is not a command status (0..8)")
    return frozenset(values)


def node_statuses(name, values):
    for value in values:
        if value not in NodeStatus._value2member_map_:
            raise BadField(name, f"{value} is not a node status (0..6)")
    return frozenset(values)


DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def parse_date(name, value):
    """Puli's "YYYY-mm-dd HH:MM:SS" (local time), "YYYY-mm-dd", or seconds since the epoch."""
    value = value.strip()
    for fmt in (DATE_FORMAT, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(value, fmt))
        except ValueError:
            pass
    try:
        return float(value)
    except ValueError:
        raise BadField(name, f"{value!r} is not a date: use 'YYYY-mm-dd HH:MM:SS' "
                             "or seconds since the epoch") from None


MAX_OFFSET = 2**62          # past any list; within what islice and the database take


def page(req, default_limit=1000, max_limit=100_000):
    offset = req.get_param_as_int("offset", min_value=0, max_value=MAX_OFFSET, default=0)
    limit = req.get_param_as_int("limit", min_value=0, max_value=max_limit, default=default_limit)
    return offset, limit


def sliced(iterable, offset, limit):
    return islice(iterable, offset, offset + limit)


def command_page(commands, counts, statuses, offset, limit):
    """Under the lock: a page of `commands` (the farm's, or a node's) in `statuses` (any when
    empty), with how many match in all from the node's counters, without a scan."""
    if statuses:
        commands = (c for c in commands if c.status in statuses)
    items = [views.command(c) for c in sliced(commands, offset, limit)]
    total = sum(counts[s] for s in statuses) if statuses else sum(counts)
    return {"commands": items, "total": total, "offset": offset, "limit": limit}


# -- model access ----------------------------------------------------------------------------------
def job_node(farm, node_id):
    """A node that user operations may act on: any node but the farm's root."""
    node = lookup.get_node(farm, node_id)
    if node is farm.root:
        raise InvalidValue(f"node {node_id} is the farm's root; act on its jobs instead")
    return node


def pools_from_file(service):
    return service.settings.pools_backend == "file"


def refuse_if_pools_from_file(service):
    if pools_from_file(service):
        raise ReadOnlyPools()


class RequestLimits:
    """Refuse a body larger than the limit before reading it (413), or of unknown length (411)."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes

    def process_request(self, req, resp):
        length = req.content_length
        if length is None:
            if "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
                raise falcon.HTTPLengthRequired(
                    title="Length required",
                    description="send the body with a Content-Length header, not chunked")
            return
        if length > self.max_bytes:
            raise falcon.HTTPContentTooLarge(
                title="Request body too large",
                description=f"the body is {length} bytes; the dispatcher accepts at most "
                            f"{self.max_bytes} (setting max_request_bytes)")


class JsonOnly:
    """A state-changing request's body is JSON, labelled so, or there is none (415 otherwise):
    a web page can make a browser send a form or text/plain to any address, never a JSON body
    (that needs CORS, which the dispatcher never grants). `yaml_paths`: routes that also take
    YAML (a YAML media type is no more a "simple" request than JSON is)."""

    def __init__(self, yaml_paths=None):
        self.yaml_paths = yaml_paths or {}

    def process_request(self, req, resp):
        if req.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return
        if not req.content_type and not req.content_length:
            return
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type == falcon.MEDIA_URLENCODED and req.path.startswith("/ui/"):
            return                      # the monitor's sign-in forms: they check their own CSRF secret
        if media_type != falcon.MEDIA_JSON and media_type not in self.yaml_paths.get(req.path.rstrip("/"), ()):
            raise falcon.HTTPUnsupportedMediaType(
                title="Unsupported media type",
                description=f"send the body as JSON with 'Content-Type: application/json', "
                            f"not {req.content_type or 'without a Content-Type'}")
