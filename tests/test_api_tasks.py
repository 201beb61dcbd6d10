import pytest

from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_tasks_list_every_node_but_the_root_a_page_at_a_time(api):
    job = api.submit(task("a"), task("b"))
    listing = api.get("/tasks/").json
    assert [t["id"] for t in listing["tasks"]] == [job, job + 1, job + 2] and listing["total"] == 3
    assert [t["id"] for t in api.get("/tasks", offset=1, limit=1).json["tasks"]] == [job + 1]
    assert api.get(f"/tasks/{job + 1}").json["tasks"][0]["name"] == "a"


def test_delete_archives_finished_jobs(api):
    done = api.submit(task("done"))
    api.put(f"/nodes/{done}/status", {"status": 3})
    canceled = api.submit(task("canceled"))
    api.put(f"/nodes/{canceled}/status", {"status": 5})
    kept = api.submit(task("kept"))
    result = api.post("/tasks/delete/", {"taskids": f"{done},{canceled}"})
    assert result.status_code == 200 and result.json == {"archived": [done, canceled], "count": 2}
    assert api.job_ids() == [kept]
    assert_error(api.get(f"/nodes/{done}"), 404)


def test_delete_refuses_unfinished_jobs_and_archives_nothing(api):
    done = api.submit(task("done"))
    api.put(f"/nodes/{done}/status", {"status": 3})
    ready = api.submit(task("ready"))
    body = assert_error(api.post("/tasks/delete", {"taskids": [done, ready]}), 409, str(ready), "READY")
    assert str(done) not in body["description"].split("not ")[1]
    assert api.job_ids() == [done, ready]


def test_delete_of_unknown_ids_is_404(api):
    assert_error(api.post("/tasks/delete", {"taskids": [999]}), 404, "999")


def test_delete_with_bad_ids_is_400(api):
    assert_error(api.post("/tasks/delete", {"taskids": "a,b"}), 400, "taskids")


def test_environment_is_replaced(api):
    job = api.submit(task("t", environment={"A": "1"}))
    result = api.put(f"/tasks/{job}/env", {"environment": {"B": 2}})
    assert result.json["environment"] == {"B": "2"}
    assert_error(api.put(f"/tasks/{job}/env", {"environment": {"C": [1]}}), 400, "environment")


def test_arguments_put_replaces_and_post_merges_without_environment(api):
    job = api.submit(task("t", arguments={"a": 1, "b": 2}))
    assert api.post(f"/tasks/{job}/arguments", {"arguments": {"b": 3}}).json["arguments"] == {"a": 1, "b": 3}
    assert api.put(f"/tasks/{job}/arguments/", {"arguments": {"c": 4}}).json["arguments"] == {"c": 4}


def test_task_commands_are_filtered_by_query_parameters(api):
    job = api.submit(task("t", frames=(1, 3), maxNbCores=1))
    api.register("a:8000", cores=1)
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.report(rn, cmd_id, assignment, CS.DONE)
    listing = api.get(f"/tasks/{job}/commands").json
    assert listing["rootTask"] == job and len(listing["commands"]) == 3 and listing["total"] == 3
    done = api.get(f"/tasks/{job}/commands", status="5").json
    assert [c["id"] for c in done["commands"]] == [cmd_id] and done["total"] == 1
    ready = api.client.simulate_get(f"/tasks/{job}/commands", query_string="status=1&status=0").json
    assert len(ready["commands"]) == 2
    assert_error(api.get(f"/tasks/{job}/commands", status="x"), 400, "status")


def test_tree_lists_nodes_and_commands(api):
    job = api.submit(task("a", frames=(1, 2)), task("b"))
    tree = api.get(f"/tasks/{job}/tree").json
    assert [t["name"] for t in tree["tasks"]] == ["job", "a", "b"]
    assert len(tree["commands"]) == 3


def test_comment_user_ram_and_timer_are_set(api):
    job = api.submit(task("a"), task("b"))
    assert api.put(f"/tasks/{job}/comment", {"comment": "check frame 12"}).json["tags"]["comment"] == "check frame 12"
    assert api.put(f"/tasks/{job}/user", {"user": "ann"}).json["user"] == "ann"
    api.put(f"/tasks/{job}/ram", {"ramUse": 2048})
    assert {api.node(c)["ramUse"] for c in api.node(job)["children"]} == {2048}
    api.put(f"/tasks/{job}/timer", {"timer": 2_000_000_000})
    assert api.node(job)["timer"] == 2_000_000_000     # it holds every task below the job
    assert_error(api.put(f"/tasks/{job}/ram", {"ramUse": -1}), 400, "ramUse")


def test_ram_edit_changes_where_commands_fit(api):
    job = api.submit(task("t"))
    api.register("a:8000", ram=1000)
    api.put(f"/tasks/{job}/ram", {"ramUse": 4000})
    assert api.dispatch() == {}
    api.put(f"/tasks/{job}/ram", {"ramUse": 500})
    assert len(api.dispatch()) == 1
