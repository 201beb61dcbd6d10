"""An accepted change is never lost: values the database cannot hold are refused before they
are accepted, and a row the database refuses anyway never holds the other changes back."""
import json
import math
import urllib.request

import pytest

from processes import Dispatcher, StandInWorker, wait_for
from puli.store import open_store
from test_api_support import Api, assert_error, graph, task

BIG = 2**63
INT_OVER = 3_000_000_000          # beyond a 32-bit INT column (priority, maxRN, cores, ...)


def strict_json(text):
    """JSON as the standard has it: no NaN nor Infinity."""
    def refuse(name):
        raise ValueError(f"{name} in an answer")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def api():
    return Api()


@pytest.mark.parametrize("field, value", [
    ("priority", INT_OVER), ("priority", BIG), ("priority", math.nan),
    ("maxRN", INT_OVER), ("maxRN", BIG), ("dispatchKey", math.nan), ("dispatchKey", math.inf),
    ("dispatchKey", -math.inf), ("timer", math.inf), ("name", "n" * 20_000),
    ("maxAttempt", INT_OVER),
])
def test_an_edit_beyond_what_the_store_holds_is_refused_naming_the_field(api, field, value):
    job = api.submit(task("t"))
    before = api.node(job)
    result = api.raw("PUT", f"/nodes/{job}/{field}", json.dumps({field: value}))
    body = assert_error(result, 400)
    assert field.lower() in (body["description"] + body["title"]).lower() or \
        "number" in body["description"], body
    assert api.node(job) == before


@pytest.mark.parametrize("path", [
    "/edit/prio?value=nan", "/edit/prio?value=inf", "/edit/prio?value=1e400",
    f"/edit/maxrn?value={INT_OVER}",
])
def test_a_batch_edit_beyond_what_the_store_holds_is_refused(api, path):
    job = api.submit(task("t"))
    before = api.node(job)
    assert_error(api.put(f"{path}&constraint_id={job}"), 400)
    assert api.node(job) == before


@pytest.mark.parametrize("where, value", [
    ("priority", INT_OVER), ("dispatchKey", 1e400), ("maxRN", BIG), ("ramUse", INT_OVER),
    ("name", "n" * 20_000), ("maxNbCores", BIG), ("timer", math.nan),
])
def test_a_graph_beyond_what_the_store_holds_is_refused_whole(api, where, value):
    text = json.dumps(graph(dict(task("t"), **{where: value})))
    result = api.raw("POST", "/graphs/", text)
    assert_error(result, 400)
    assert api.job_ids() == []


def test_worker_values_beyond_what_the_store_holds_are_refused(api):
    api.submit(task("t"))
    base = {"cores": 4, "ram": 16000, "speed": 3.0}
    for bad in ({"cores": INT_OVER}, {"ram": BIG}, {"speed": math.inf}, {"puliversion": "v" * 300},
                {"host": "h" * 300}):
        result = api.raw("POST", "/rendernodes/a:8000/", json.dumps(dict(base, **bad)))
        assert_error(result, 400)
    assert api.get("/rendernodes/a:8000").status_code == 404
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    for bad in ({"completion": math.nan}, {"completion": math.inf}, {"systemFreeRam": BIG}):
        path = f"/rendernodes/{rn}/commands/{cmd_id}" if "completion" in bad else f"/rendernodes/{rn}/sysinfos"
        result = api.raw("PUT", path, json.dumps(dict(bad, assignment=assignment)))
        assert_error(result, 400)
    assert api.command(cmd_id)["completion"] == 0.0


def test_licenses_and_pools_beyond_what_the_store_holds_are_refused(api):
    assert_error(api.put("/licenses/nuke", {"maxlic": INT_OVER}), 400)
    assert_error(api.put("/licenses/" + "l" * 300, {"maxlic": 3}), 400)
    assert_error(api.post("/pools/" + "p" * 300), 400)
    assert api.get("/licenses").json["licenses"] == []


# -- real processes, on both stores ------------------------------------------------------------

@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'puli.sqlite'}"
    return request.getfixturevalue("mariadb_url")


def flushed(dispatcher):
    status, body = dispatcher.get("/system")
    return status == 200 and not body["db"]["pendingWrites"]


def test_refused_values_change_nothing_and_later_edits_survive_a_restart(tmp_path, db_url):
    dispatcher = Dispatcher(tmp_path / "d", db_url=db_url)
    worker = StandInWorker()
    try:
        dispatcher.start()
        worker.register(dispatcher, cores=1)
        status, body = dispatcher.call("POST", "/graphs/", {"name": "j", "root": 0, "tasks": [
            {"type": "Task", "name": "t", "arguments": {"cmd": "true", "start": 1, "end": 2}}]})
        job = body["id"]
        wait_for(lambda: worker.assignments, what="an assignment")
        first = worker.assignments[0]

        for field, value in (("priority", INT_OVER), ("priority", BIG), ("priority", math.nan),
                             ("maxRN", math.inf), ("dispatchKey", math.nan)):
            status, body = dispatcher.call("PUT", f"/nodes/{job}/{field}", {field: value})
            assert status == 400, (field, value, body)
        status, body = dispatcher.call("PUT", f"/rendernodes/{worker.name}/commands/{first['id']}",
                                       {"assignment": first["assignment"], "completion": math.nan})
        assert status == 400, body

        # Everything after them is accepted and committed.
        assert dispatcher.call("PUT", f"/nodes/{job}/priority", {"priority": 7})[0] == 200
        assert dispatcher.call("PUT", f"/nodes/{job}/dispatchKey", {"dispatchKey": 2.5})[0] == 200
        path = f"/rendernodes/{worker.name}/commands/{first['id']}"
        assert dispatcher.call("PUT", path, {"assignment": first["assignment"], "status": 5})[0] == 200
        wait_for(lambda: flushed(dispatcher), what="the flush")
        health = dispatcher.get("/health")[1]
        assert health["status"] == "ok" and health["problems"] == [], health
        dispatcher.kill()
        dispatcher.start()
        node = dispatcher.get(f"/nodes/{job}")[1]
        assert (node["priority"], node["dispatchKey"], node["doneCommandCount"]) == (7, 2.5, 1), node
        # Every answer is standard JSON.
        for route in (f"/nodes/{job}", f"/tasks/{job}/tree", "/commands", "/rendernodes", "/system"):
            request = urllib.request.Request(dispatcher.url + route,
                                             headers={"Authorization": f"Bearer {dispatcher.token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                strict_json(answer.read().decode())
    finally:
        worker.close()
        dispatcher.close()


# -- the flusher: one row the database refuses never holds the others back ------------------------

# A value no entry point lets in, set behind the API's back: what a gap in the checks would do.
UNSTORABLE = {"sqlite": BIG, "mariadb": INT_OVER}


def test_a_row_the_database_refuses_is_kept_aside_and_the_rest_is_written(tmp_path, db_url):
    kind = "sqlite" if db_url.startswith("sqlite") else "mariadb"
    store = open_store(db_url)
    api = Api(store=store)
    try:
        bad_job = api.submit(task("bad"))
        good_job = api.submit(task("good", frames=(1, 3)))
        api.register("a:8000", cores=1)
        api.service.flush()
        bad = api.farm.nodes[bad_job]
        bad.priority = UNSTORABLE[kind]
        api.farm.dirty.nodes.add(bad)
        assert api.put(f"/nodes/{good_job}/priority", {"priority": 5}).status_code == 200
        assert api.put(f"/nodes/{good_job}/paused", {"paused": True}).status_code == 200

        assert api.service.flush() is False
        system = api.get("/system").json
        (row,) = system["db"]["refusedRows"]
        assert (row["table"], row["key"]) == ("nodes", bad_job) and row["reason"], row
        assert system["degraded"] and system["db"]["ok"]
        health = api.get("/health").json
        assert health["status"] == "degraded" and "refused" in health["problems"][0], health

        # Later changes are written too, without the refused row in their way.
        assert api.put(f"/nodes/{good_job}/dispatchKey", {"dispatchKey": 3}).status_code == 200
        assert api.service.flush() is False
        restored = Api(store=open_store(db_url))
        restored.service.restore()
        node = restored.node(good_job)
        assert (node["priority"], node["paused"], node["dispatchKey"]) == (5, True, 3.0), node
        assert restored.node(bad_job)["priority"] == 0       # its last value the database took
        restored.service.store.close()

        # The value is mended: the held row is written with it, and the farm is whole again.
        assert api.put(f"/nodes/{bad_job}/priority", {"priority": 4}).status_code == 200
        assert api.service.flush() is True
        assert api.get("/health").json["status"] == "ok"
        assert api.get("/system").json["db"]["refusedRows"] == []
        again = Api(store=open_store(db_url))
        again.service.restore()
        assert again.node(bad_job)["priority"] == 4
        again.service.store.close()
    finally:
        store.close()
