"""Hypothesis against the graph parser behind POST /graphs/: well-formed graphs, the same graphs
mutated (wrong types, missing keys, huge numbers, cycles, bad references, deep nesting, unicode),
and arbitrary JSON. Any body is either a job holding exactly the nodes and commands the graph
describes, or refused whole with a 4xx and nothing created."""
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from puli.dispatcher.settings import load_settings
from test_api_support import Api, task

EXISTING = 2                    # the job every farm here starts with (the root is node 1)
# Small graph limits, so that well-formed graphs pass them too (413) and the count is checked.
MAX_COMMANDS, MAX_TASKS = 60, 8
UNICODE = st.characters(codec="utf-8")
NAMES = st.text(UNICODE, min_size=1, max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(-1e6, 1e6), st.text(UNICODE, max_size=8))
JSON_OBJECTS = st.dictionaries(st.text(UNICODE, max_size=6), SCALARS, max_size=3)


# -- well-formed graphs -------------------------------------------------------------------------------
FRAME_PART = st.integers(0, 30).flatmap(lambda a: st.sampled_from([f"{a}", f"{a}-{a + 3}", f" {a}-{a + 9} "]))


@st.composite
def arguments(draw):
    args = {"cmd": draw(st.sampled_from(["echo %%MI_FRAME%%", "true", "render -f %%MI_START%%-%%MI_END%%"]))}
    kind = draw(st.sampled_from(["one", "range", "list"]))
    if kind == "range":
        start = draw(st.integers(-5, 20))
        args.update(start=start, end=start + draw(st.integers(0, 25)))
    elif kind == "list":
        args["framesList"] = ",".join(draw(st.lists(FRAME_PART, min_size=1, max_size=4)))
    if kind != "one" and draw(st.booleans()):
        args["packetSize"] = draw(st.integers(1, 7))
    args.update(draw(st.dictionaries(st.sampled_from(["scene", "camera", "ü"]), SCALARS, max_size=2)))
    return args


OPTIONAL = {
    "priority": st.integers(-100, 100), "dispatchKey": st.floats(-10, 10), "maxRN": st.integers(-1, 10),
    "environment": st.dictionaries(st.text(UNICODE, min_size=1, max_size=6), st.text(UNICODE, max_size=8), max_size=3),
    "tags": JSON_OBJECTS, "requirements": JSON_OBJECTS, "user": NAMES,
    "timer": st.one_of(st.none(), st.floats(0, 4e9)),
}
TASK_OPTIONAL = {
    **OPTIONAL,
    "lic": st.sampled_from(["", "nuke", "nuke&maya"]), "minNbCores": st.integers(0, 4),
    "ramUse": st.integers(0, 4096), "maxAttempt": st.integers(1, 5), "maxRunTime": st.floats(0, 1000),
    "runner": st.sampled_from(["puli.commandwatcher.runners.DefaultCommandRunner", "mine.Runner"]),
    "commands": st.lists(st.fixed_dictionaries({}, optional={"description": NAMES, "arguments": JSON_OBJECTS}),
                         max_size=3),
}


def _some(draw, options):
    keys = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4))
    return {k: draw(options[k]) for k in keys}


@st.composite
def well_formed(draw):
    """A valid graph: a random tree in a shuffled `tasks` array, unreachable tasks too, and
    dependencies on earlier siblings (which can never wait in a cycle) or on another job."""
    count = draw(st.integers(1, 8))
    parent = {k: draw(st.integers(0, k - 1)) for k in range(1, count)}
    children = {k: [c for c in range(count) if parent.get(c) == k] for k in range(count)}
    orphans = draw(st.integers(0, 2))
    place = draw(st.permutations(range(count + orphans)))     # tree node k lives at tasks[place[k]]
    tasks = [None] * (count + orphans)
    for k in range(count + orphans):
        name = draw(NAMES)
        if children.get(k):
            node = {"type": "TaskGroup", "name": name, "tasks": [place[c] for c in children[k]],
                    **_some(draw, {**OPTIONAL, "strategy": st.sampled_from(["", "ordered"])})}
        else:
            node = {"type": "Task", "name": name, "arguments": draw(arguments()), **_some(draw, TASK_OPTIONAL)}
            if draw(st.booleans()):
                del node["type"]                                # Task is the default
        tasks[place[k]] = node
    for k in range(1, count):
        earlier = [s for s in children[parent[k]] if s < k]
        deps = []
        for s in draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else ():
            statuses = draw(st.one_of(st.none(), st.lists(st.integers(0, 6), min_size=1, max_size=3)))
            deps.append([place[s]] if statuses is None else [place[s], statuses])
        if draw(st.integers(0, 5)) == 0:
            deps.append([{"nodeId": EXISTING}, [3]])
        if deps:
            tasks[place[k]]["dependencies"] = deps
    body = {"tasks": tasks, "root": place[0]}
    body.update(_some(draw, {"name": NAMES, "user": NAMES, "maxRN": st.integers(-1, 10), "meta": JSON_OBJECTS}))
    # A pool the farm does not have yet: the job makes it, a refused graph must not (a mutation
    # may drop it: the default pool).
    body["poolName"] = draw(NAMES)
    return body


# -- mutations -----------------------------------------------------------------------------------------
def _nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


HOSTILE = st.one_of(
    SCALARS,
    st.sampled_from([2**31, -2**31 - 1, 2**63, -2**63 - 1, 2**64, 10**30, 1e308, -0.0, float("nan"),
                     float("inf"), "", "\x00", "\u202e", "é" * 20_000, "\U0001F600", "\ud800", "1-100000000",
                     [], {}, [None], _nested(40), "7", True, 0, -1]),
    st.lists(SCALARS, max_size=3), JSON_OBJECTS,
)
KEYS = ["type", "name", "tasks", "arguments", "commands", "dependencies", "environment", "tags",
        "requirements", "priority", "dispatchKey", "maxRN", "timer", "lic", "minNbCores", "maxNbCores",
        "ramUse", "maxAttempt", "maxRunTime", "runner", "strategy", "user", "runnerPackages",
        "validationExpression"]
GRAPH_KEYS = ["tasks", "root", "name", "user", "poolName", "maxRN", "meta"]
ARGUMENT_KEYS = ["start", "end", "framesList", "packetSize", "cmd"]
# The kinds of mutation, the likelier ones twice: those that reach deepest into the submission.
MUTATIONS = ["set", "set", "drop", "graph", "frames", "frames", "argument", "child", "child", "dependency",
             "foreign", "foreign", "cycle", "cycle", "extra"]


@st.composite
def mutation(draw, body):
    """One change to `body` (in place), drawn among the ways a graph goes wrong."""
    tasks = body["tasks"]
    objects = [i for i, t in enumerate(tasks) if isinstance(t, dict)]
    i = draw(st.sampled_from(objects))
    node = tasks[i]
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "set":
        node[draw(st.sampled_from(KEYS))] = draw(HOSTILE)
    elif kind == "drop" and node:
        del node[draw(st.sampled_from(sorted(node)))]
    elif kind == "graph":
        key = draw(st.sampled_from(GRAPH_KEYS))
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(HOSTILE)
    elif kind == "frames":
        node["arguments"] = dict(node["arguments"]) if isinstance(node.get("arguments"), dict) else {}
        node["arguments"].update(draw(st.sampled_from([
            {"framesList": "0-999999999"}, {"framesList": "2147483647-2147483648"}, {"framesList": "5-1"},
            {"framesList": "1,,2"}, {"framesList": "-3"}, {"framesList": "a-b"}, {"framesList": 7},
            {"start": -2**31, "end": 2**31 - 1}, {"start": 0, "end": 2**31}, {"start": 3, "end": 1},
            {"start": 1, "end": 3, "packetSize": 0}, {"start": 1, "end": 3, "packetSize": 2**31},
            {"start": 1, "end": 3, "packetSize": True}, {"start": 1.5, "end": 3}, {"start": "1", "end": 3}])))
    elif kind == "argument":
        node.setdefault("arguments", {})
        if isinstance(node["arguments"], dict):
            node["arguments"][draw(st.sampled_from(ARGUMENT_KEYS))] = draw(st.one_of(
                HOSTILE, st.integers(-2**40, 2**40), st.sampled_from(["0-999999999", "5-1", "a-b", "1,,2", "-3"])))
    elif kind == "child":
        node["type"] = "TaskGroup"
        bad = draw(st.one_of(st.integers(-3, len(tasks) + 2), st.sampled_from([i, body.get("root", 0), True, "1", None])))
        kids = node.get("tasks")
        node["tasks"] = (kids if isinstance(kids, list) else []) + [bad]
    elif kind == "dependency":          # a malformed one
        target = draw(st.one_of(st.integers(-2, len(tasks) + 2), st.sampled_from([{"nodeId": EXISTING}, "0", None])))
        dep = draw(st.sampled_from([[target], [target, [3]], [target, []], [target, [9]], [target, [True]],
                                    [target, 3], target, [target, [3], "x"], []]))
        deps = node.get("dependencies")
        node["dependencies"] = (deps if isinstance(deps, list) else []) + [dep]
    elif kind == "foreign":             # well-formed, on a node that is not there or not a job's
        target = draw(st.sampled_from([99_999, 1, EXISTING + 1, 2**70, 0, -1, "2", None, True]))
        deps = node.get("dependencies")
        node["dependencies"] = (deps if isinstance(deps, list) else []) + [[{"nodeId": target}, [3]]]
    elif kind == "cycle":
        j = draw(st.sampled_from(objects))
        for a, b in ((i, j), (j, i)):
            deps = tasks[a].get("dependencies")
            tasks[a]["dependencies"] = (deps if isinstance(deps, list) else []) + [[b]]
    else:
        tasks.append(draw(st.one_of(HOSTILE, st.fixed_dictionaries({"name": NAMES}, optional={"type": HOSTILE}))))
    return body


@st.composite
def mutated(draw):
    body = copy.deepcopy(draw(well_formed()))
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        body = draw(mutation(body))
        if not isinstance(body.get("tasks"), list) or not any(isinstance(t, dict) for t in body["tasks"]):
            break
    return body


ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=5), inner, max_size=4), max_leaves=12)
ARBITRARY = st.one_of(ANY_JSON, st.fixed_dictionaries({"tasks": ANY_JSON}, optional={"root": ANY_JSON}))


def within_limits(body):
    """201 for a well-formed graph within the limits, else 413. The command budget counts every
    task of the array, reachable or not: it is spent as tasks are read, before the tree is known."""
    tasks = body["tasks"]
    made = sum(len(expected_descriptions(t)) for t in tasks if t.get("type", "Task") == "Task")
    return 201 if len(tasks) <= MAX_TASKS and made <= MAX_COMMANDS else 413


MUTATED = mutated().map(lambda b: (b, None))
BODIES = st.one_of(well_formed().map(lambda b: (b, within_limits(b))), MUTATED, MUTATED, MUTATED,
                   ARBITRARY.map(lambda b: (b, None)))


# -- what a submission must do -----------------------------------------------------------------------
def farm_snapshot(api):
    farm = api.farm
    return {
        "nodes": sorted(farm.nodes), "commands": sorted(farm.commands), "jobs": [j.id for j in farm.root.children],
        "counts": list(farm.root.counts), "shares": sorted(farm.shares),
        "pools": sorted((p.name, p.archived, sorted(p.shares)) for p in farm.pools.values()),
        "licenses": sorted((lic.name, lic.maximum, lic.used) for lic in farm.licenses.values()),
    }


def expected_descriptions(raw):
    """The commands a task makes, by description: Puli's decomposition, written again here."""
    name = raw["name"]
    commands = raw.get("commands") or []
    if commands:
        return [c.get("description") or name for c in commands]
    args = raw.get("arguments") or {}
    size = args.get("packetSize", 1)
    if "framesList" in args:
        ranges = []
        for part in str(args["framesList"]).split(","):
            first, _, last = part.strip().partition("-")
            ranges.append((int(first), int(last or first)))
    elif "start" in args and "end" in args:
        ranges = [(args["start"], args["end"])]
    else:
        return [name]
    return [f"{name}_{s}_{min(s + size - 1, last)}" for first, last in ranges for s in range(first, last + 1, size)]


def check_job(api, body, answer, before):
    """The farm gained exactly the job `body` describes, laid out as the graph says."""
    tasks, root = body["tasks"], body.get("root") or 0
    job = api.farm.nodes[answer["id"]]
    ids = {}

    def check(node, index):
        raw = tasks[index]
        ids[index] = node.id
        assert node.name == raw["name"]
        assert type(node).__name__ == (raw.get("type") or "Task")
        if node.is_task:
            assert [c.description for c in node.commands] == expected_descriptions(raw)
        else:
            kids = raw.get("tasks") or []
            assert len(node.children) == len(kids)
            for child, kid in zip(node.children, kids):
                assert child.parent is node
                check(child, kid)

    check(job, root)
    for index, node_id in ids.items():
        wanted = []
        for dep in tasks[index].get("dependencies") or []:
            target = dep[0]["nodeId"] if isinstance(dep[0], dict) else ids[dep[0]]
            if target != node_id:
                wanted.append((target, frozenset(dep[1] if len(dep) == 2 else [3])))
        got = [(d.target_id, d.statuses) for d in api.farm.nodes[node_id].dependencies]
        assert got == wanted, (index, got, wanted)
    commands = sum(len(n.commands) for n in job.walk() if n.is_task)
    assert answer["nodes"] == [n.id for n in job.walk()] and sorted(answer["nodes"]) == sorted(ids.values())
    assert answer["commands"] == commands
    after = farm_snapshot(api)
    assert after["jobs"] == before["jobs"] + [job.id]
    assert len(after["nodes"]) == len(before["nodes"]) + len(ids)
    assert len(after["commands"]) == len(before["commands"]) + commands
    assert job.share.pool.name == (body.get("poolName") or "default")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    return load_settings(data_dir=tmp_path_factory.mktemp("graphs"), max_graph_commands=MAX_COMMANDS,
                         max_graph_tasks=MAX_TASKS)


@settings(max_examples=600, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=BODIES)
def test_a_graph_is_the_job_it_describes_or_refused_whole_with_nothing_created(limited, case):
    body, expected = case               # the status of a well-formed graph; None: either
    api = Api(settings=limited)
    assert api.submit(task("before", frames=(1, 2))) == EXISTING
    before = farm_snapshot(api)
    # As text: a lone surrogate goes escaped, as a client's JSON encoder sends it.
    answer = api.raw("POST", "/graphs/", json.dumps(body))
    assert expected in (None, answer.status_code), answer.text
    if answer.status_code == 201:
        check_job(api, body, answer.json, before)
        return
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    error = answer.json
    assert answer.headers["content-type"].startswith("application/json")
    assert error["title"] and error["description"], error
    assert farm_snapshot(api) == before, "a refused graph changed the farm"


def test_the_check_sees_a_job_that_differs_from_its_graph():
    api = Api()
    before = farm_snapshot(api)
    body = {"root": 0, "tasks": [{"type": "Task", "name": "a", "arguments": {"start": 1, "end": 3}}]}
    answer = api.post("/graphs/", body).json
    api.farm.nodes[answer["id"]].commands.pop()
    with pytest.raises(AssertionError):
        check_job(api, body, answer, before)
