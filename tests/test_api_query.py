import time

import pytest

from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    api = Api()
    api.jobs = {
        "bob_a": api.submit(task("bob_a", frames=(1, 2), tags={"prod": "p1", "shot": "s1"}), user="bob"),
        "bob_b": api.submit(task("x"), task("y"), name="bob_b", user="bob"),
        "ann_a": api.submit(task("ann_a", tags={"prod": "p2"}), user="ann"),
    }
    return api


def q(api, path="/query", qs=""):
    result = api.client.simulate_get(path, query_string=qs)
    assert result.status_code == 200, result.json
    return result.json


def test_query_lists_jobs_with_puli_default_columns(api):
    result = q(api)
    assert result["summary"]["count"] == 3 and result["summary"]["totalInDispatcher"] == 3
    assert {"requestTime", "requestDate"} <= set(result["summary"])
    row = result["items"][0]
    assert row["id"] == api.jobs["bob_a"] and row["user"] == "bob"
    assert row["prod"] == "p1" and row["shot"] == "s1" and row["commandCount"] == 2
    assert "maxRN" in row and "allocatedRN" in row


def test_query_constraints_or_within_a_key_and_across_keys(api):
    ids = lambda qs: [i["id"] for i in q(api, qs=qs)["items"]]
    assert ids("constraint_user=bob") == [api.jobs["bob_a"], api.jobs["bob_b"]]
    assert ids("constraint_user=bob&constraint_user=ann") == list(api.jobs.values())
    assert ids("constraint_user=bob&constraint_prod=p1") == [api.jobs["bob_a"]]
    assert ids("constraint_name=bob_*") == [api.jobs["bob_a"], api.jobs["bob_b"]]
    assert ids("constraint_name=bob_a") == [api.jobs["bob_a"]]
    assert ids("constraint_name=*_b&constraint_name=ann_?") == [api.jobs["bob_b"], api.jobs["ann_a"]]
    assert ids(f"constraint_id={api.jobs['ann_a']}") == [api.jobs["ann_a"]]
    assert ids("constraint_status=1") == [api.jobs["bob_a"], api.jobs["bob_b"], api.jobs["ann_a"]]
    assert ids("constraint_status=3") == []
    assert ids("constraint_pool=default") == list(api.jobs.values())
    past = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(api.clock - 60))
    future = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(api.clock + 60))
    assert len(ids(f"constraint_creationtime={past}")) == 3
    assert ids(f"constraint_creationtime={future}") == []


def test_query_attr_picks_fields_and_tree_nests_nodes(api):
    rows = q(api, qs=f"attr=id&attr=name&attr=tags:prod&attr=pool&constraint_id={api.jobs['bob_b']}")["items"]
    assert rows == [{"id": api.jobs["bob_b"], "name": "bob_b", "prod": "", "pool": "default"}]
    tree = q(api, qs=f"attr=name&tree=1&constraint_id={api.jobs['bob_b']}")["items"][0]
    assert tree == {"name": "bob_b", "items": [{"name": "x"}, {"name": "y"}]}
    flat = q(api, qs=f"attr=name&tree=0&constraint_id={api.jobs['bob_b']}")["items"][0]
    assert flat == {"name": "bob_b"}


@pytest.mark.parametrize("qs, word", [
    ("constraint_name=bob_.*", "bob_*"),
    ("constraint_name=^bob", "glob"),
    ("constraint_name=" + "x" * 300, "at most 256"),
    ("constraint_creationtime=yesterday", "constraint_creationtime"),
    ("constraint_status=x", "constraint_status"),
    ("constraint_status=9", "constraint_status"),
    ("constraint_usr=bob", "constraint_usr"),
    ("attr=nonsense", "nonsense"),
])
def test_bad_query_is_a_400(api, qs, word):
    assert_error(api.client.simulate_get("/query", query_string=qs), 400, word)


def test_command_query_lists_commands_of_the_given_jobs(api):
    rows = q(api, "/query/command", f"constraint_id={api.jobs['bob_a']}")["items"]
    assert [r["description"] for r in rows] == ["bob_a_1_1", "bob_a_2_2"]
    assert set(rows[0]) == {"id", "task", "description", "renderNode", "nbFrames", "avgTimeByFrame",
                            "status", "startTime", "endTime", "updateTime", "creationTime",
                            "completion", "attempt", "message"}
    api.put(f"/commands/{rows[0]['id']}", {"status": 5})
    done = q(api, "/query/command", "constraint_status=5&attr=id")["items"]
    assert done == [{"id": rows[0]["id"]}]
    assert len(q(api, "/query/command")["items"]) == 5
    assert_error(api.client.simulate_get("/query/command", query_string="constraint_starttime=<bad"), 400)


def test_render_node_query_filters_like_puli(api):
    api.register("a:8000", cores=8, ram=32000)
    api.register("b:8000", cores=4, ram=8000)
    rows = q(api, "/query/rn", "constraint_coresnumber=+4&attr=name&attr=caracteristics:os")["items"]
    assert rows == [{"name": "a:8000", "os": "linux"}]
    assert [r["name"] for r in q(api, "/query/rn", "constraint_coresnumber=%2B4")["items"]] == ["a:8000"]
    assert [r["name"] for r in q(api, "/query/rn", "constraint_ramsize=-10000")["items"]] == ["b:8000"]
    assert [r["name"] for r in q(api, "/query/rn", "constraint_name=b")["items"]] == ["b:8000"]
    default = q(api, "/query/rn")["items"][0]
    assert {"name", "coresNumber", "ramSize", "pools", "lastAliveTime"} <= set(default)
    assert_error(api.client.simulate_get("/query/rn", query_string="constraint_speed=+fast"), 400, "constraint_speed")


def test_post_query_job_returns_jobs_with_their_tree(api):
    result = api.post("/query/job", {"user": ["bob"], "name": ["bob_b"]}).json
    assert result["summary"]["count"] == 1
    job = result["items"][0]
    assert job["name"] == "bob_b" and [c["name"] for c in job["children"]] == ["x", "y"]
    assert len(job["children"][0]["task"]["commands"]) == 1
    flat = api.post("/query/job", {"tags": {"prod": ["p2"]}, "recursive": False}).json["items"]
    assert [j["name"] for j in flat] == ["ann_a"] and flat[0]["children"] == []
    assert_error(api.post("/query/job", {"name": ["bob_.*"]}), 400, "name", "glob")
    assert api.post("/query/job", {"name": ["("]}).json["items"] == []       # a name like any other


def test_post_query_rendernode(api):
    api.register("a:8000")
    api.register("b:9000")
    result = api.post("/query/rendernode", {"name": ["a"]}).json
    assert [r["name"] for r in result["items"]] == ["a:8000"] and result["summary"]["totalInDispatcher"] == 2
    assert len(api.post("/query/rendernode").json["items"]) == 2


@pytest.mark.parametrize("path", ["/edit/status?update_status=5", "/edit/maxrn?value=2",
                                  "/edit/prio?value=3", "/pause", "/resume"])
def test_edit_refuses_to_run_without_a_constraint(api, path):
    route, _, qs = path.partition("?")
    assert_error(api.client.simulate_put(route, query_string=qs), 400, "constraint")
    assert_error(api.client.simulate_put(route, query_string=qs + "&constraint_user="), 400, "constraint")
    assert all(api.node(j)["statusName"] == "READY" and not api.node(j)["paused"] for j in api.jobs.values())


def test_edit_with_a_misspelled_constraint_is_refused(api):
    assert_error(api.client.simulate_put("/pause", query_string="constraint_usr=bob"), 400, "constraint_usr")
    assert not any(api.node(j)["paused"] for j in api.jobs.values())


def test_edit_status_cancels_the_filtered_jobs(api):
    result = api.client.simulate_put("/edit/status", query_string="update_status=5&constraint_user=bob").json
    assert result["summary"] == {**result["summary"], "editedCount": 2, "filteredCount": 2}
    assert result["editedJobs"] == [api.jobs["bob_a"], api.jobs["bob_b"]]
    assert api.node(api.jobs["bob_a"])["statusName"] == "CANCELED"
    assert api.node(api.jobs["ann_a"])["statusName"] == "READY"


def test_edit_status_restart_resets_completion(api):
    job = api.jobs["bob_a"]
    api.register("a:8000", cores=1)
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.report(rn, cmd_id, assignment, CS.RUNNING, completion=0.5)
    api.report(rn, cmd_id, assignment, CS.ERROR)
    assert api.node(job)["statusName"] == "ERROR"
    api.client.simulate_put("/edit/status", query_string=f"update_status=1&constraint_id={job}")
    assert api.node(job)["completion"] == 0.0 and api.command(cmd_id)["completion"] == 0.0


def test_edit_status_refuses_statuses_it_cannot_set(api):
    assert_error(api.client.simulate_put("/edit/status", query_string="update_status=2&constraint_user=bob"),
                 400, "update_status")


def test_edit_maxrn_and_prio_change_dispatch_settings(api):
    job = api.jobs["bob_a"]
    result = api.client.simulate_put("/edit/maxrn", query_string=f"value=1&constraint_id={job}").json
    assert result["editedJobs"] == [job] and api.node(job)["maxRN"] == 1
    api.register("a:8000", cores=4)
    assert len([c for c, _ in api.dispatch().items() if api.farm.commands[c].task.job.id == job]) == 1
    api.client.simulate_put("/edit/prio", query_string="value=7&constraint_user=ann")
    assert api.node(api.jobs["ann_a"])["dispatchKey"] == 7.0
    assert_error(api.client.simulate_put("/edit/maxrn", query_string=f"value=-3&constraint_id={job}"), 400, "value")


def test_pause_and_resume_filtered_jobs(api):
    result = api.client.simulate_put("/pause", query_string="constraint_prod=p1").json
    assert result["editedJobs"] == [api.jobs["bob_a"]]
    assert api.node(api.jobs["bob_a"])["paused"] is True
    again = api.client.simulate_put("/pause", query_string="constraint_prod=p1").json
    assert again["summary"]["editedCount"] == 0 and again["summary"]["filteredCount"] == 1
    api.client.simulate_put("/resume", query_string="constraint_prod=p1")
    assert api.node(api.jobs["bob_a"])["paused"] is False


@pytest.mark.parametrize("pattern, name, matches", [
    ("sh010", "sh010", True), ("sh010", "sh0100", False), ("sh01?", "sh010", True),
    ("sh01?", "sh01", False), ("*light*", "sq_light_v2", True), ("*light", "light", True),
    ("a*a", "a", False), ("a*b*c", "aXbYc", True), ("a*b*c", "aXcYb", False), ("*", "", True),
    ("[v2]*", "[v2] comp", True), ("a.b", "aXb", False), ("?*?", "ab", True), ("?*?", "a", False),
])
def test_a_name_pattern_is_a_glob_over_the_whole_name(pattern, name, matches):
    from puli.dispatcher.resources.patterns import matcher
    assert matcher("constraint_name", [pattern])(name) is matches


def test_a_pattern_that_backtracked_for_hours_as_a_regex_is_cheap_as_a_glob():
    from puli.dispatcher.resources.patterns import matcher
    test = matcher("constraint_name", ["*a" * 100 + "b"])
    assert test("a" * 255) is False     # leftmost placement: one pass per piece, no backtracking
    assert test("a" * 100 + "b") is True
