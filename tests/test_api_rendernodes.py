import pytest

from puli.model.outbox import Stop
from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_render_nodes_are_listed_like_puli(api):
    api.register("a:8000", cores=8, ram=32000)
    rns = api.get("/rendernodes/").json["rendernodes"]
    assert len(rns) == 1
    rn = rns[0]
    assert rn["name"] == "a:8000" and rn["host"] == "a" and rn["port"] == 8000
    assert rn["coresNumber"] == 8 and rn["freeCoresNumber"] == 8 and rn["ramSize"] == 32000
    assert rn["statusName"] == "IDLE" and rn["status"] == 3 and rn["pools"] == ["default"]
    assert rn["caracteristics"] == {"os": "linux"} and rn["puliversion"] == "2.0"
    assert rn["excluded"] is False and rn["quarantined"] is False and rn["commands"] == []
    assert api.get("/rendernodes/A:8000/").json["name"] == "a:8000"
    assert_error(api.get("/rendernodes/b:8000"), 404, "b:8000")


def test_delete_forgets_the_node_and_requeues_its_commands(api):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, _), = api.dispatch().items()
    assert api.delete("/rendernodes/a:8000").json == {"name": "a:8000", "removed": True}
    assert api.command(cmd_id)["statusName"] == "READY"
    assert_error(api.get("/rendernodes/a:8000"), 404)


def test_pause_with_killproc_requeues_and_resume_lifts_quarantine(api):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, _), = api.dispatch().items()
    rn = api.put("/rendernodes/a:8000/paused", {"paused": True, "killproc": True}).json
    assert rn["statusName"] == "PAUSED" and rn["commands"] == []
    assert api.command(cmd_id)["statusName"] == "READY"
    api.put("/rendernodes/quarantine", {"quarantine": True, "rns": ["a:8000"]})
    rn = api.put("/rendernodes/a:8000/paused", {"paused": False}).json
    assert rn["statusName"] == "IDLE" and rn["quarantined"] is False


def test_reset_requeues_what_the_node_runs(api):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.report(rn, cmd_id, assignment, CS.RUNNING)
    assert api.put("/rendernodes/a:8000/reset").json == {"name": "a:8000", "requeued": [cmd_id]}
    assert api.command(cmd_id)["statusName"] == "READY"
    assert [type(m) for m in api.farm.take_outbox()] == [Stop]


def test_quarantine_keeps_work_away_until_released(api):
    api.submit(task("t"))
    api.register("a:8000")
    result = api.put("/rendernodes/quarantine/", {"quarantine": True, "rns": ["a:8000"]})
    assert result.json == {"quarantine": True, "rns": ["a:8000"]}
    assert api.get("/rendernodes/a:8000").json["excluded"] is True
    assert api.dispatch() == {}
    api.put("/rendernodes/quarantine", {"quarantine": False, "rns": ["a:8000"]})
    assert len(api.dispatch()) == 1


def test_quarantine_of_unknown_node_changes_nothing(api):
    api.register("a:8000")
    assert_error(api.put("/rendernodes/quarantine", {"quarantine": True, "rns": ["a:8000", "zz:1"]}), 404, "zz:1")
    assert api.get("/rendernodes/a:8000").json["quarantined"] is False


def test_performance_decides_which_node_works_first(api):
    api.submit(task("t"))
    api.register("a:8000")
    api.register("b:8000")
    result = api.put("/rendernodes/performance/", {"b:8000": 2.5})
    assert result.json == {"b:8000": 2.5}
    sent = api.dispatch()
    assert [rn for rn, _ in sent.values()] == ["b:8000"]
    assert_error(api.put("/rendernodes/performance", {"b:8000": "fast"}), 400, "b:8000")
