import pytest

from puli.model.outbox import Stop
from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_commands_are_paged_with_a_default_limit(api):
    api.submit(task("t", frames=(1, 1500)))
    first = api.get("/commands/").json
    assert len(first["commands"]) == 1000 and first["total"] == 1500 and first["limit"] == 1000
    rest = api.get("/commands", offset=1000).json
    assert len(rest["commands"]) == 500 and rest["commands"][0]["id"] == first["commands"][-1]["id"] + 1
    assert_error(api.get("/commands", limit=-1), 400, "limit")


def test_commands_filter_by_status(api):
    job = api.submit(task("t", frames=(1, 3)))
    api.put(f"/nodes/{job}/status", {"status": 3})
    api.submit(task("u", frames=(1, 2)))
    done = api.get("/commands", status="5").json
    assert done["total"] == 3 and {c["statusName"] for c in done["commands"]} == {"DONE"}
    assert api.get("/commands", status="1,5").json["total"] == 5


def test_single_command_shows_its_arguments(api):
    api.submit(task("t", frames=(4, 4)))
    cmd_id = next(iter(api.farm.commands))
    cmd = api.command(cmd_id)
    assert cmd["arguments"]["start"] == 4 and cmd["description"] == "t_4_4" and cmd["nbFrames"] == 1
    assert "arguments" not in api.get("/commands").json["commands"][0]


def test_command_status_restart_done_and_cancel(api):
    api.submit(task("t", frames=(1, 3)))
    a, b, c = list(api.farm.commands)
    assert api.put(f"/commands/{a}", {"status": 5}).json["statusName"] == "DONE"
    assert api.put(f"/commands/{b}", {"status": 8}).json["statusName"] == "CANCELED"
    assert api.put(f"/commands/{a}", {"status": 1}).json["statusName"] == "READY"
    assert_error(api.put(f"/commands/{c}", {"status": 3}), 400, "status")
    assert_error(api.put("/commands/999", {"status": 1}), 404, "999")


def test_cancel_of_a_running_command_tells_its_worker(api):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.report(rn, cmd_id, assignment, CS.RUNNING)
    api.put(f"/commands/{cmd_id}", {"status": 8})
    stops = [m for m in api.farm.take_outbox() if isinstance(m, Stop)]
    assert [(m.render_node.name, m.command_id, m.assignment) for m in stops] == [(rn, cmd_id, assignment)]
