"""Validation of a submitted graph in Puli's wire format, into a spec the farm can build.

Everything is checked before anything is created: a malformed graph is refused whole.
Dependencies name either an index in the graph's `tasks` array (Puli's form) or an existing
node of the farm as `{"nodeId": 42}` (a dependency on another job).
"""
import json

from . import limits
from .cycles import waiting_cycle
from .errors import InvalidGraph, TooLarge
from .status import NodeStatus

MAX_COMMANDS = 1_000_000            # the defaults of max_graph_commands and max_graph_tasks
MAX_TASKS = 100_000
_NODE_STATUSES = {int(s) for s in NodeStatus}


class NodeSpec:
    __slots__ = ("index", "kind", "fields", "children", "dependencies", "commands", "parent")

    def __init__(self, index, kind, fields):
        self.index = index
        self.kind = kind                # "TaskGroup" or "Task"
        self.fields = fields            # keyword arguments for the model class
        self.children = []              # indices
        self.dependencies = []          # (index or ("node", id), [statuses])
        self.commands = []              # (description, args_json, nb_frames)
        self.parent = None


class GraphSpec:
    def __init__(self, name, user, pool, max_rn, root, nodes, meta):
        self.name = name
        self.user = user
        self.pool = pool
        self.max_rn = max_rn
        self.root = root                # index of the job's node
        self.nodes = nodes              # NodeSpec by index; only those reachable from root
        self.meta = meta

    @property
    def command_count(self):
        return sum(len(n.commands) for n in self.nodes.values())

    def external_targets(self):
        return {d[1] for n in self.nodes.values() for d, _ in n.dependencies if isinstance(d, tuple)}


class _Budget:
    """Commands a graph may still make, counted as its nodes come, before frames expand."""

    def __init__(self, limit):
        self.limit = limit
        self.left = limit

    def take(self, count, where):
        if count > self.left:
            raise TooLarge(f"{where} make {self.limit - self.left + count} commands; a graph may make "
                           f"at most {self.limit} (max_graph_commands)")
        self.left -= count


def parse_graph(payload, max_commands=MAX_COMMANDS, max_tasks=MAX_TASKS):
    """Check a `POST /graphs/` body and return a GraphSpec; raise InvalidGraph naming the fault
    (TooLarge past max_commands or max_tasks)."""
    if not isinstance(payload, dict):
        raise InvalidGraph("the graph must be a JSON object")
    tasks = payload.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise InvalidGraph("'tasks' must be a non-empty list")
    if len(tasks) > max_tasks:
        raise TooLarge(f"the graph holds {len(tasks)} tasks and task groups; a graph may hold at most "
                       f"{max_tasks} (max_graph_tasks)")
    root = _get(payload, "root", int, 0, "graph")
    if not 0 <= root < len(tasks):
        raise InvalidGraph(f"'root' is {root}, not an index of 'tasks' (0..{len(tasks) - 1})")
    user = _get(payload, "user", str, "", "graph")
    pool = _get(payload, "poolName", str, "default", "graph", limits.NAME_CHARS) or "default"
    max_rn = _get(payload, "maxRN", int, -1, "graph")
    name = _get(payload, "name", str, "", "graph")
    meta = _get(payload, "meta", dict, {}, "graph")

    specs = {}
    budget = _Budget(max_commands)
    for index, raw in enumerate(tasks):
        specs[index] = _parse_node(index, raw, user, len(tasks), budget)

    # Parent links: every node listed by at most one TaskGroup, no node its own ancestor.
    for spec in specs.values():
        for child in spec.children:
            if specs[child].parent is not None:
                raise InvalidGraph(f"tasks[{child}] is listed as a child of both tasks[{specs[child].parent}] and tasks[{spec.index}]")
            specs[child].parent = spec.index
    if specs[root].parent is not None:
        raise InvalidGraph(f"the root tasks[{root}] is a child of tasks[{specs[root].parent}]")
    reachable = {}
    stack = [root]
    while stack:
        index = stack.pop()
        if index in reachable:
            raise InvalidGraph(f"tasks[{index}] is its own ancestor")
        reachable[index] = specs[index]
        stack.extend(specs[index].children)
    for spec in reachable.values():
        for target, _ in spec.dependencies:
            if not isinstance(target, tuple) and target not in reachable:
                raise InvalidGraph(f"tasks[{spec.index}] depends on tasks[{target}], which is not part of the graph under its root")
    _refuse_cycles(reachable)
    if not name:
        name = reachable[root].fields["name"]
    return GraphSpec(name, user, pool, max_rn, root, reachable, meta)


def _parse_node(index, raw, default_user, count, budget):
    where = f"tasks[{index}]"
    if not isinstance(raw, dict):
        raise InvalidGraph(f"{where} must be an object")
    kind = raw.get("type", "Task")
    if kind not in ("Task", "TaskGroup"):
        raise InvalidGraph(f"{where}.type must be 'Task' or 'TaskGroup', not {kind!r}")
    name = _get(raw, "name", str, "", where)
    if not name:
        raise InvalidGraph(f"{where}.name is required")
    fields = dict(
        name=name,
        user=_get(raw, "user", str, "", where) or default_user,
        priority=_get(raw, "priority", int, 0, where),
        dispatch_key=_get(raw, "dispatchKey", float, 0.0, where),
        max_rn=_get(raw, "maxRN", int, -1, where),
        tags=_json_dict(raw, "tags", where),
        environment=_str_dict(raw, "environment", where),
        arguments=_json_dict(raw, "arguments", where),
        requirements=_json_dict(raw, "requirements", where),
        timer=_timer(raw, where),
    )
    if fields["max_rn"] == 0:
        fields["max_rn"] = -1          # Puli's client sends 0 for "no limit"
    spec = NodeSpec(index, kind, fields)
    spec.dependencies = _dependencies(raw, where, count)
    if kind == "TaskGroup":
        fields["strategy"] = _get(raw, "strategy", str, "", where)
        children = _get(raw, "tasks", list, [], where)
        for child in children:
            if not isinstance(child, int) or isinstance(child, bool) or not 0 <= child < count:
                raise InvalidGraph(f"{where}.tasks holds {child!r}, not an index of 'tasks'")
            if child == index:
                raise InvalidGraph(f"{where} lists itself as a child")
        spec.children = children
        return spec

    lic = _get(raw, "lic", str, "", where) or _get(raw, "licence", str, "", where)
    fields.update(
        runner=_get(raw, "runner", str, "puli.commandwatcher.runners.DefaultCommandRunner", where),
        min_cores=_get(raw, "minNbCores", int, 1, where),
        max_cores=_get(raw, "maxNbCores", int, 0, where),
        ram_use=_get(raw, "ramUse", int, 0, where),
        licenses=tuple(x for x in lic.split("&") if x),
        max_attempt=_get(raw, "maxAttempt", int, 1, where),
        max_run_time=_get(raw, "maxRunTime", float, 0.0, where),
        validation_expression=_get(raw, "validationExpression", str, "", where),
        runner_packages=_packages(raw, "runnerPackages", where),
        watcher_packages=_packages(raw, "watcherPackages", where),
    )
    for key in ("min_cores", "max_cores", "ram_use"):
        if fields[key] < 0:
            raise InvalidGraph(f"{where}: {key} must not be negative")
    # A worker refuses a negative or endless one (0: no limit), and a refused assignment would
    # go back to the queue for ever.
    if not 0 <= fields["max_run_time"] < float("inf"):
        raise InvalidGraph(f"{where}: maxRunTime must be a number of seconds >= 0 (0: no limit), "
                           f"not {fields['max_run_time']!r}")
    if fields["max_cores"] and fields["max_cores"] < fields["min_cores"]:
        raise InvalidGraph(f"{where}: maxNbCores ({fields['max_cores']}) is below minNbCores ({fields['min_cores']})")
    if fields["max_attempt"] < 1:
        raise InvalidGraph(f"{where}.maxAttempt must be at least 1")
    commands = _get(raw, "commands", list, [], where)
    if commands:
        budget.take(len(commands), f"{where}.commands")
        for i, cmd in enumerate(commands):
            spec.commands.append(_command(cmd, f"{where}.commands[{i}]", name))
    else:
        spec.commands = decompose(name, fields["arguments"], where, budget)
    return spec


def _command(raw, where, task_name):
    if not isinstance(raw, dict):
        raise InvalidGraph(f"{where} must be an object")
    description = _get(raw, "description", str, "", where) or task_name
    args = _json_dict(raw, "arguments", where)
    frames = raw.get("nbFrames")
    nb_frames = (limits.integer(f"{where}.nbFrames", frames, 1, error=InvalidGraph) if frames is not None
                 else _nb_frames(args, where))
    return description, limits.json_text(f"{where}.arguments", args, InvalidGraph), nb_frames


def decompose(task_name, arguments, where="task", budget=None):
    """Puli's DefaultTaskDecomposer: `start`/`end`/`packetSize` or `framesList` into commands.

    The commands are counted before any is made: a short frame list may name a billion frames.
    """
    size = arguments.get("packetSize", 1)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= limits.INT_MAX:
        raise InvalidGraph(f"{where}.arguments.packetSize must be a positive integer")
    if "framesList" in arguments:
        ranges = []
        for part in str(arguments["framesList"]).split(","):
            part = part.strip()
            try:
                a, _, b = part.partition("-")
                first, last = int(a), int(b or a)
            except ValueError:
                raise InvalidGraph(f"{where}.arguments.framesList: {part!r} is not a frame or a range") from None
            if last < first:
                raise InvalidGraph(f"{where}.arguments.framesList: range {part!r} ends before it starts")
            ranges.append(_frame_range(first, last, f"{where}.arguments.framesList"))
    elif "start" in arguments and "end" in arguments:
        first, last = arguments["start"], arguments["end"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (first, last)):
            raise InvalidGraph(f"{where}.arguments: start and end must be integers")
        if last < first:
            raise InvalidGraph(f"{where}.arguments: end ({last}) is before start ({first})")
        ranges = [_frame_range(first, last, f"{where}.arguments")]
    else:
        ranges = None
    budget = budget or _Budget(MAX_COMMANDS)
    if ranges is None:
        budget.take(1, f"{where}.arguments")
        return [(task_name, limits.json_text(f"{where}.arguments", arguments, InvalidGraph), 1)]
    budget.take(sum(-(-(last - first + 1) // size) for first, last in ranges), f"{where}.arguments")
    out = []
    for first, last in ranges:
        for start in range(first, last + 1, size):
            end = min(start + size - 1, last)
            args = dict(arguments, start=start, end=end)
            out.append((f"{task_name}_{start}_{end}", json.dumps(args, separators=(",", ":")), end - start + 1))
    if out:
        # Every packet holds the same arguments but its frames: the first tells the size.
        limits.check_json_size(f"{where}.arguments", out[0][1], InvalidGraph)
    return out


def _frame_range(first, last, where):
    for frame in (first, last):
        limits.integer(f"{where}: frame {frame}", frame, error=InvalidGraph)
    return first, last


def _nb_frames(args, where):
    start, end = args.get("start"), args.get("end")
    if isinstance(start, int) and isinstance(end, int) and end >= start:
        return limits.integer(f"{where}: the frames from start to end", end - start + 1, error=InvalidGraph)
    return 1


def _dependencies(raw, where, count):
    deps = _get(raw, "dependencies", list, [], where)
    out = []
    for i, dep in enumerate(deps):
        if not (isinstance(dep, list) and len(dep) in (1, 2)):
            raise InvalidGraph(f"{where}.dependencies[{i}] must be [target, [statuses]]")
        target = dep[0]
        statuses = dep[1] if len(dep) == 2 else [int(NodeStatus.DONE)]
        if isinstance(target, dict) and isinstance(target.get("nodeId"), int):
            target = ("node", limits.integer(f"{where}.dependencies[{i}].nodeId", target["nodeId"], 1,
                                             limits.BIGINT_MAX, InvalidGraph))
        elif not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < count:
            raise InvalidGraph(f"{where}.dependencies[{i}]: {dep[0]!r} is neither an index of 'tasks' nor {{\"nodeId\": id}}")
        if not isinstance(statuses, list) or not statuses or not all(s in _NODE_STATUSES and not isinstance(s, bool) for s in statuses):
            raise InvalidGraph(f"{where}.dependencies[{i}]: statuses must be a non-empty list of node statuses 0..6")
        out.append((target, statuses))
    return out


def _refuse_cycles(specs):
    """A graph that could never finish is refused, naming the nodes on its cycle."""
    cycle = waiting_cycle(
        {i: spec.parent for i, spec in specs.items()},
        {i: [t for t, _ in spec.dependencies if not isinstance(t, tuple)] for i, spec in specs.items()},
        {i: spec.children for i, spec in specs.items()})
    if cycle:
        names = " -> ".join(f"tasks[{i}] ({specs[i].fields['name']})" for i in cycle)
        raise InvalidGraph(f"dependency cycle: {names}")


def _get(raw, key, kind, default, where, max_chars=limits.TEXT_CHARS):
    """raw[key] checked to be of `kind` and to fit its column; `default` when absent or null."""
    value = raw.get(key, default)
    if value is None:
        return default
    name = f"{where}.{key}"
    if kind is int:
        return limits.integer(name, value, error=InvalidGraph)
    if kind is float:
        return limits.number(name, value, error=InvalidGraph)
    if kind is str:
        return limits.text(name, value, max_chars, error=InvalidGraph)
    if not isinstance(value, kind):
        wanted = {list: "a list", dict: "an object"}[kind]
        raise InvalidGraph(f"{name} must be {wanted}, not {type(value).__name__}")
    return value


def _json_dict(raw, key, where):
    value = _get(raw, key, dict, {}, where)
    limits.json_text(f"{where}.{key}", value, InvalidGraph)
    return value


def _str_dict(raw, key, where):
    value = _json_dict(raw, key, where)
    for k, v in value.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise InvalidGraph(f"{where}.{key}.{k} must be a string")
    return {k: str(v) for k, v in value.items()}


def _packages(raw, key, where):
    value = raw.get(key) or ""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    if not isinstance(value, str):
        raise InvalidGraph(f"{where}.{key} must be a string or a list of strings")
    return limits.text(f"{where}.{key}", value, error=InvalidGraph)


def _timer(raw, where):
    value = raw.get("timer")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidGraph(f"{where}.timer must be a time in seconds since the epoch")
    return limits.number(f"{where}.timer", value, error=InvalidGraph)
