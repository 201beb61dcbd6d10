import pytest

from puli.model.outbox import Stop
from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def _running_job(api, frames=(1, 4), cores=4):
    job = api.submit(task("t", frames=frames, maxNbCores=1))
    api.register("a:8000", cores=cores)
    sent = api.dispatch()
    for cmd_id, (rn, assignment) in sent.items():
        api.report(rn, cmd_id, assignment, CS.RUNNING)
    return job, sent


def test_root_node_lists_the_jobs(api):
    first = api.submit(task("a"))
    second = api.submit(task("b"))
    root = api.get("/nodes/").json
    assert root["id"] == 1 and root["children"] == [first, second]
    assert root["commandCount"] == 2 and root["statusName"] == "READY"


def test_task_node_shows_its_details(api):
    job = api.submit(task("t", frames=(1, 3), ramUse=500, lic="nuke", maxAttempt=3, tags={"prod": "p1"}))
    node = api.node(job)
    assert node["type"] == "Task" and node["parent"] == 1
    assert node["ramUse"] == 500 and node["lic"] == "nuke" and node["maxAttempt"] == 3
    assert node["tags"] == {"prod": "p1"} and node["readyCommandCount"] == 3 and node["status"] == 1
    assert len(api.get(f"/tasks/{job}").json["tasks"][0]["commands"]) == 3


def test_unknown_node_is_404(api):
    assert_error(api.get("/nodes/4242"), 404, "4242")


def test_archived_job_is_read_back_from_a_real_sqlite_store(tmp_sqlite_url):
    from puli.store import open_store

    store = open_store(tmp_sqlite_url)
    try:
        api = Api(store=store)
        job = api.submit(task("a", frames=(1, 2)), task("b"), user="bob")
        api.put(f"/nodes/{job}/status", {"status": 3})
        assert api.post("/tasks/delete", {"taskids": [job]}).status_code == 200
        assert api.service.flush()
        node = api.node(job)
        assert node["archived"] is True and node["name"] == "job" and node["user"] == "bob"
        assert node["statusName"] == "DONE" and node["commandCount"] == 3 and node["doneCommandCount"] == 3
        assert node["parent"] == 1 and node["poolName"] == "default" and node["children"] == [job + 1, job + 2]
        task_a = api.node(job + 1)
        assert task_a["type"] == "Task" and task_a["job"] == job and task_a["maxAttempt"] == 1
        assert job not in api.job_ids()
    finally:
        store.close()


def test_children_are_filtered_sorted_and_paged(api):
    for i, user in enumerate(["bob", "ann", "bob", "cid"]):
        api.submit(task(f"job{i}", tags={"prod": "x" if i % 2 else "y"}), user=user)
    children = lambda **p: api.get("/nodes/1/children", **p).json
    assert [c["user"] for c in children(user="bob")["children"]] == ["bob", "bob"]
    assert [c["name"] for c in children(sortField="-name")["children"]] == ["job3", "job2", "job1", "job0"]
    assert [c["name"] for c in children(**{"tags:prod": "x"})["children"]] == ["job1", "job3"]
    page = children(limit=2, offset=1)
    assert [c["name"] for c in page["children"]] == ["job1", "job2"] and page["total"] == 4
    assert [c["name"] for c in children(limit=3, offset="last")["children"]] == ["job1", "job2", "job3"]
    assert children(days=1)["total"] == 4
    api.clock += 3 * 86400
    assert children(days=1)["total"] == 0
    assert_error(api.get("/nodes/1/children", sortField="nope"), 400, "sortField")
    assert_error(api.get("/nodes/1/children", offset="first"), 400, "offset")


def test_cancel_through_status_cancels_every_unfinished_command(api):
    job, sent = _running_job(api)
    result = api.put(f"/nodes/{job}/status", {"status": 5})
    assert result.status_code == 200
    assert result.json["changed"] == 4 and result.json["statusName"] == "CANCELED"
    stops = [m for m in api.farm.take_outbox() if isinstance(m, Stop)]
    assert sorted(m.command_id for m in stops) == sorted(sent)


def test_restart_requeues_every_command_and_resets_completion(api):
    job, sent = _running_job(api, frames=(1, 2))
    for cmd_id, (rn, assignment) in sent.items():
        api.report(rn, cmd_id, assignment, CS.DONE)
    assert api.node(job)["statusName"] == "DONE"
    result = api.put(f"/nodes/{job}/status/", {"status": 1})
    assert result.json["changed"] == 2
    node = api.node(job)
    assert node["statusName"] == "READY" and node["completion"] == 0.0 and node["readyCommandCount"] == 2


def test_retry_of_errors_only_requeues_the_failed_commands(api):
    job, sent = _running_job(api, frames=(1, 2))
    (ok, (rn, a1)), (bad, (_, a2)) = sent.items()
    api.report(rn, ok, a1, CS.DONE)
    api.report(rn, bad, a2, CS.ERROR)
    result = api.client.simulate_put(f"/nodes/{job}/status", json={"status": 1}, params={"cmdStatus": "7"})
    assert result.json["changed"] == 1
    assert api.command(ok)["statusName"] == "DONE" and api.command(bad)["statusName"] == "READY"


def test_force_done_finishes_the_job(api):
    job = api.submit(task("t", frames=(1, 3)))
    assert api.put(f"/nodes/{job}/status", {"status": 3}).json["statusName"] == "DONE"


@pytest.mark.parametrize("body, status, word", [
    ({"status": 4}, 400, "status"),
    ({"status": "5"}, 400, "status"),
    ({}, 400, "status"),
    ({"status": 1, "cascade": "yes"}, 400, "cascade"),
])
def test_bad_status_edit_is_refused(api, body, status, word):
    job = api.submit(task("t"))
    assert_error(api.put(f"/nodes/{job}/status", body), status, word)
    assert api.node(job)["statusName"] == "READY"


def test_bad_cmd_status_filter_is_refused(api):
    job = api.submit(task("t"))
    result = api.client.simulate_put(f"/nodes/{job}/status", json={"status": 1}, params={"cmdStatus": "12"})
    assert_error(result, 400, "cmdStatus")


def test_pause_holds_new_work_and_resume_releases_it(api):
    job = api.submit(task("t", frames=(1, 2), maxNbCores=1))
    api.register("a:8000", cores=2)
    result = api.put(f"/nodes/{job}/paused", {"paused": True})
    assert result.json["paused"] is True and result.json["statusName"] == "PAUSED"
    assert api.dispatch() == {}
    api.put(f"/nodes/{job}/paused", {"paused": False})
    assert len(api.dispatch()) == 2


def test_pause_kill_requeues_running_commands_and_pauses(api):
    job, sent = _running_job(api, frames=(1, 2))
    result = api.put(f"/nodes/{job}/pauseKill")
    assert result.status_code == 200 and result.json["paused"] is True
    for cmd_id in sent:
        assert api.command(cmd_id)["statusName"] == "READY"
    assert {m.command_id for m in api.farm.take_outbox() if isinstance(m, Stop)} == set(sent)
    assert api.dispatch() == {}


def test_cancel_route_cancels_the_subtree(api):
    job, sent = _running_job(api, frames=(1, 2))
    result = api.put(f"/nodes/{job}/cancel")
    assert result.json["changed"] == 2 and result.json["statusName"] == "CANCELED"


def test_operations_on_the_root_are_refused(api):
    api.submit(task("t"))
    assert_error(api.put("/nodes/1/paused", {"paused": True}), 400, "root")
    assert_error(api.put("/nodes/1/status", {"status": 5}), 400, "root")
    assert api.node(1)["statusName"] == "READY"


@pytest.mark.parametrize("name, value, check", [
    ("name", "renamed", lambda n: n["name"] == "renamed"),
    ("priority", 7, lambda n: n["priority"] == 7),
    ("dispatchKey", 3, lambda n: n["dispatchKey"] == 3.0),
    ("maxRN", 2, lambda n: n["maxRN"] == 2 and n["userDefinedMaxRN"]),
    ("user", "ann", lambda n: n["user"] == "ann"),
    ("prod", "feature", lambda n: n["tags"]["prod"] == "feature"),
    ("maxAttempt", 4, lambda n: n["maxAttempt"] is None),
    ("timer", 2_000_000_000, lambda n: n["timer"] == 2_000_000_000),
    ("strategy", "puli.strategies.Fifo", lambda n: n["strategy"] == "puli.strategies.Fifo"),
])
def test_attribute_edit_answers_the_updated_node(api, name, value, check):
    job = api.submit(task("a"), task("b"))
    result = api.put(f"/nodes/{job}/{name}", {name: value})
    assert result.status_code == 200, result.json
    assert check(result.json)
    assert check(api.node(job))


def test_max_attempt_edit_reaches_every_task(api):
    job = api.submit(task("a"), task("b"))
    api.put(f"/nodes/{job}/maxAttempt", {"maxAttempt": 4})
    assert [api.node(c)["maxAttempt"] for c in api.node(job)["children"]] == [4, 4]


def test_group_timer_holds_its_tasks(api):
    job = api.submit(task("a"), task("b"))
    api.register("a:8000")
    api.put(f"/nodes/{job}/timer", {"timer": api.clock + 3600})
    assert api.dispatch() == {}
    api.put(f"/nodes/{job}/timer", {"timer": None})
    assert len(api.dispatch()) == 1


def test_max_rn_edit_really_caps_dispatch(api):
    job = api.submit(task("t", frames=(1, 10), maxNbCores=1))
    api.register("a:8000", cores=8)
    api.put(f"/nodes/{job}/maxRN", {"maxRN": 3})
    assert len(api.dispatch()) == 3


@pytest.mark.parametrize("name, value", [
    ("name", ""), ("name", 3), ("priority", 1.5), ("dispatchKey", "high"), ("maxRN", -2),
    ("maxAttempt", 0), ("timer", "soon"), ("user", None), ("prod", 1),
])
def test_bad_attribute_value_is_a_400_naming_the_field(api, name, value):
    job = api.submit(task("t"))
    before = api.node(job)
    assert_error(api.put(f"/nodes/{job}/{name}", {name: value}), 400)
    assert api.node(job) == before


def test_pool_edit_moves_the_job(api):
    job = api.submit(task("t"))
    api.post("/pools/lighting")
    result = api.put(f"/nodes/{job}/pool", {"poolName": "lighting", "maxRN": 5})
    assert result.json["poolName"] == "lighting" and result.json["maxRN"] == 5
    assert_error(api.put(f"/nodes/{job}/pool", {"poolName": "nowhere"}), 404, "nowhere")
