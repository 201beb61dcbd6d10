"""Query filters, described once: read from GET parameters (``constraint_<key>``) or from a POST
body (``<key>``), turned into predicates over jobs, commands or render nodes, and listed in the
OpenAPI document from the same table.

Values are OR-ed within one key and keys AND-ed. An unknown ``constraint_*`` parameter is an
error rather than ignored: a misspelled filter must never widen an edit to the whole farm.
"""
from ...model.status import RenderNodeStatus
from ..errors import BadField
from . import patterns
from .common import command_statuses, node_statuses, parse_date

PARAM_PREFIX = "constraint_"


class Filter:
    """One filter: the values it reads (`kind`), the predicate they make, and its documentation."""

    __slots__ = ("key", "kind", "predicate", "doc", "repeat")

    def __init__(self, key, kind, predicate, doc, repeat=True):
        self.key = key
        self.kind = kind                # see KINDS
        self.predicate = predicate      # parsed values -> item -> bool
        self.doc = doc
        self.repeat = repeat            # several values (OR-ed), or the first one only


def _ints(name, values):
    out = []
    for value in values:
        parts = value.split(",") if isinstance(value, str) else [value]
        for part in parts:
            if isinstance(part, str):
                part = part.strip()
                if not part:
                    continue
            try:
                if isinstance(part, bool) or not isinstance(part, (int, str)):
                    raise ValueError
                out.append(int(part))
            except ValueError:
                raise BadField(name, f"'{name}' must be integers, not {part!r}") from None
    return out


def _strs(name, values):
    for value in values:
        if not isinstance(value, str):
            raise BadField(name, f"'{name}' must be strings, not {value!r}")
    return values


def _rn_statuses(name, values):
    statuses = set(_ints(name, values))
    known = {int(s) for s in RenderNodeStatus}
    for status in statuses:
        if status not in known:
            raise BadField(name, f"{status} is not a render node status (0..6)")
    return statuses


def _comparison(kind):
    def parse(name, values):
        """Puli's +x (greater than), -x (less than), x (equal); an unencoded "+" arrives as a
        space and means greater than too. Every comparison must hold."""
        tests = []
        for spec in _strs(name, values):
            try:
                if spec[:1] in ("+", " "):
                    tests.append((1, kind(spec[1:])))
                elif spec[:1] == "-":
                    tests.append((-1, kind(spec[1:])))
                else:
                    tests.append((0, kind(spec)))
            except ValueError:
                raise BadField(name, f"{spec!r}: use +N (more than), -N (less than) or N (equal)") from None
        return tests
    return parse


def _window(name, values):
    """'[<|>]date': after (the default, '>') or before that time."""
    text = _strs(name, values)[0]
    if text[:1] in "<>":
        return text[0], parse_date(name, text[1:])
    return ">", parse_date(name, text)


def _tags(name, values):
    (tags,) = values
    if not isinstance(tags, dict):
        raise BadField(name, f"'{name}' must be an object of tag -> list of values")
    for key, wanted in tags.items():
        if not isinstance(wanted, list):
            raise BadField(f"{name}.{key}", f"'{name}.{key}' must be a list of values")
    return {k: {str(v) for v in vs} for k, vs in tags.items()}


KINDS = {
    "ints": lambda name, values: set(_ints(name, values)),
    "strs": lambda name, values: set(_strs(name, values)),
    "patterns": lambda name, values: patterns.matcher(name, _strs(name, values)),
    "node_statuses": lambda name, values: node_statuses(name, _ints(name, values)),
    "command_statuses": lambda name, values: command_statuses(name, _ints(name, values)),
    "rn_statuses": _rn_statuses,
    "date": lambda name, values: parse_date(name, _strs(name, values)[0]),
    "window": _window,
    "int_comparisons": _comparison(int),
    "float_comparisons": _comparison(float),
    "tags": _tags,
}


def _holds(tests, value):
    return value is not None and all(
        value > x if sign > 0 else value < x if sign < 0 else value == x for sign, x in tests)


def _in_window(window, when):
    side, time = window
    return when is not None and (when >= time if side == ">" else when <= time)


class NameMatch:
    """A pattern filter on names: `off_lock` matches it on a snapshot of the names, so that
    matching never holds the farm lock; called on an item, it matches that item's names.
    `names_of(item)`: the names an item answers to, any of them may match."""

    __slots__ = ("names_of", "test")

    def __init__(self, names_of, test):
        self.names_of = names_of
        self.test = test

    def __call__(self, item):
        return self.matches(self.names_of(item))

    def matches(self, names):
        return any(self.test(n) for n in names)


def off_lock(service, items_of, preds):
    """`preds` with their name patterns matched outside the farm lock: the names of
    `items_of(farm)` are copied under it (cheap), matched after, and the patterns replaced
    by the set of ids that matched."""
    patterns = [p for p in preds if isinstance(p, NameMatch)]
    if not patterns:
        return preds
    with service.lock:
        snapshot = [(item.id, [p.names_of(item) for p in patterns]) for item in items_of(service.farm)]
    matched = {ident for ident, names in snapshot if all(p.matches(n) for p, n in zip(patterns, names))}
    return [p for p in preds if not isinstance(p, NameMatch)] + [lambda item: item.id in matched]


def _job_name(job):
    return (job.name,)


def _rn_names(rn):
    """A render node answers to host:port and to its host alone ('render07' is render07:8000)."""
    return (rn.name, rn.name.rpartition(":")[0])


def _rn_host(rn):
    return (rn.host,)


def _pool_of(job):
    return job.share.pool.name if job.share is not None else None


JOB = {f.key: f for f in (
    Filter("id", "ints", lambda ids: lambda j: j.id in ids, "job ids"),
    Filter("status", "node_statuses", lambda s: lambda j: j.status in s, "job statuses"),
    Filter("user", "strs", lambda users: lambda j: j.user in users, "users"),
    Filter("prod", "strs", lambda prods: lambda j: str(j.tags.get("prod", "")) in prods, "tags.prod values"),
    Filter("shot", "strs", lambda shots: lambda j: str(j.tags.get("shot", "")) in shots, "tags.shot values"),
    Filter("name", "patterns", lambda test: NameMatch(_job_name, test), patterns.DOC),
    Filter("pool", "strs", lambda pools: lambda j: _pool_of(j) in pools, "pool names"),
    Filter("creationtime", "date", lambda t: lambda j: j.creation_time >= t,
           "created at or after ('YYYY-mm-dd HH:MM:SS' or epoch)", repeat=False),
    Filter("starttime", "date", lambda t: lambda j: j.start_time is not None and j.start_time >= t,
           "started at or after", repeat=False),
    Filter("endtime", "date", lambda t: lambda j: j.end_time is not None and j.end_time >= t,
           "ended at or after", repeat=False),
    Filter("tags", "tags", lambda wanted: lambda j: any(str(j.tags.get(k)) in vs for k, vs in wanted.items()
                                                        if k in j.tags),
           "tag -> accepted values", repeat=False),
)}

COMMAND = {f.key: f for f in (
    Filter("command", "ints", lambda ids: lambda c: c.id in ids, "command ids"),
    Filter("status", "command_statuses", lambda s: lambda c: c.status in s, "command statuses"),
    Filter("starttime", "window", lambda w: lambda c: _in_window(w, c.start_time),
           "'[<|>]YYYY-mm-dd HH:MM:SS': started after (default) or before", repeat=False),
)}

RENDER_NODE = {f.key: f for f in (
    Filter("id", "ints", lambda ids: lambda rn: rn.id in ids, "render node ids"),
    Filter("status", "rn_statuses", lambda s: lambda rn: int(rn.status) in s, "statuses"),
    Filter("name", "patterns", lambda test: NameMatch(_rn_names, test),
           patterns.DOC + "; a host alone names it on any port"),
    Filter("host", "patterns", lambda test: NameMatch(_rn_host, test), patterns.DOC),
    Filter("pool", "strs", lambda pools: lambda rn: any(p.name in pools for p in rn.pools), "pool names"),
    Filter("version", "strs", lambda versions: lambda rn: rn.puliversion in versions, "puliversion values"),
    Filter("speed", "float_comparisons", lambda t: lambda rn: _holds(t, rn.speed), "+N more than, -N less than, N equal"),
    Filter("ramsize", "int_comparisons", lambda t: lambda rn: _holds(t, rn.ram), "+N, -N or N (MB)"),
    Filter("coresnumber", "int_comparisons", lambda t: lambda rn: _holds(t, rn.cores), "+N, -N or N"),
)}


def pick(table, *keys):
    """The filters of `table` a route accepts, in that order."""
    return {key: table[key] for key in keys}


# What each route accepts.
JOB_QUERY = pick(JOB, "id", "status", "user", "prod", "shot", "name", "pool", "creationtime", "starttime",
                 "endtime")
JOB_UI = pick(JOB, "id", "status", "user", "prod", "shot", "name", "pool")      # the monitor's jobs page
RN_UI = pick(RENDER_NODE, "status", "name", "pool")                            # its render nodes page
JOB_SEARCH = pick(JOB, "id", "name", "pool", "status", "user", "tags")
COMMAND_QUERY = pick(COMMAND, "command", "status", "starttime")
RN_QUERY = pick(RENDER_NODE, "status", "name", "host", "pool", "speed", "ramsize", "coresnumber")
RN_SEARCH = pick(RENDER_NODE, "id", "name", "status", "host", "version", "pool")


def from_params(req, filters, extra=()):
    """Predicates from the request's ``constraint_<key>`` parameters (`extra`: other
    constraint keys the route reads itself)."""
    known = {PARAM_PREFIX + key for key in (*filters, *extra)}
    for name in req.params:
        if name.startswith(PARAM_PREFIX) and name not in known:
            raise BadField(name, f"unknown constraint {name!r}; known: {', '.join(sorted(known))}")
    return _predicates(filters, lambda key: req.get_param_as_list(PARAM_PREFIX + key) or [], PARAM_PREFIX)


def from_body(body, filters):
    """Predicates from a POST body's keys (a value may be a list, one value, or Puli's "a,b,c")."""
    def values(key):
        value = body.get(key)
        if value is None or value == {} or value == []:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value if isinstance(value, list) else [value]
    return _predicates(filters, values, "")


def _predicates(filters, values_of, prefix):
    preds = []
    for key, f in filters.items():
        values = [v for v in values_of(key) if v != ""]
        if not values:
            continue
        if not f.repeat:
            values = values[:1]
        preds.append(f.predicate(KINDS[f.kind](prefix + key, values)))
    return preds
