import pytest

from puli.dispatcher.settings import load_settings
from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_worker_registers_gets_work_and_reports_it_done(api):
    job = api.submit(task("t", frames=(1, 2), maxNbCores=1))
    reply = api.register("Render01:8000", cores=2)
    assert reply["name"] == "render01:8000" and reply["stop"] == []
    sent = api.dispatch()
    assert len(sent) == 2
    for cmd_id, (rn, assignment) in sent.items():
        assert rn == "render01:8000"
        result = api.report(rn, cmd_id, assignment, CS.RUNNING, completion=0.5, message="frame 1")
        assert result.status_code == 200 and result.json == {"id": cmd_id, "status": int(CS.RUNNING), "flush": 0,
                                                      "epoch": api.service.epoch}
    assert api.node(job)["statusName"] == "RUNNING"
    cmd = api.command(next(iter(sent)))
    assert cmd["completion"] == 0.5 and cmd["message"] == "frame 1" and cmd["renderNode"] == "render01:8000"
    for cmd_id, (rn, assignment) in sent.items():
        assert api.report(rn, cmd_id, assignment, CS.DONE, stats={"peak": 12}).status_code == 200
    node = api.node(job)
    assert node["statusName"] == "DONE" and node["completion"] == 1.0 and node["doneCommandCount"] == 2
    assert api.command(next(iter(sent)))["stats"] == {"peak": 12}


def test_registration_of_a_known_node_answers_200(api):
    api.register("a:8000")
    result = api.post("/rendernodes/a:8000/", {"cores": 8, "ram": 1000})
    assert result.status_code == 200
    assert api.get("/rendernodes/a:8000").json["cores"] == 8


def test_cancel_of_assigned_command_sticks_against_late_report(api):
    job = api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    assert api.command(cmd_id)["statusName"] == "ASSIGNED"
    assert api.put(f"/nodes/{job}/status", {"status": 5}).status_code == 200
    result = api.report(rn, cmd_id, assignment, CS.RUNNING, completion=0.3)
    body = assert_error(result, 409, "assignment")
    assert body["stop"] is True
    cmd = api.command(cmd_id)
    assert cmd["statusName"] == "CANCELED" and cmd["completion"] == 0.0
    assert api.node(job)["statusName"] == "CANCELED"


def test_report_under_an_old_assignment_after_restart_is_stale(api):
    job = api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, first)), = api.dispatch().items()
    api.report(rn, cmd_id, first, CS.ERROR)
    api.put(f"/nodes/{job}/status", {"status": 1})
    (_, (_, second)), = api.dispatch().items()
    assert second != first
    assert assert_error(api.report(rn, cmd_id, first, CS.DONE), 409)["stop"] is True
    assert api.report(rn, cmd_id, second, CS.DONE).status_code == 200
    assert api.node(job)["statusName"] == "DONE"


def test_heartbeat_of_unknown_node_is_404_so_it_registers_again(api):
    assert_error(api.put("/rendernodes/ghost:8000/sysinfos", {"systemFreeRam": 100}), 404, "ghost")


def test_heartbeat_updates_system_information(api):
    api.register("a:8000")
    result = api.put("/rendernodes/a:8000/sysinfos/", {"systemFreeRam": 1234, "systemSwapPercentage": 2.5})
    assert result.status_code == 200 and result.json["name"] == "a:8000"
    rn = api.get("/rendernodes/a:8000").json
    assert rn["systemFreeRam"] == 1234 and rn["systemSwapPercentage"] == 2.5


def test_heartbeat_with_bad_types_is_a_400(api):
    api.register("a:8000")
    assert_error(api.put("/rendernodes/a:8000/sysinfos", {"systemFreeRam": "lots"}), 400, "systemFreeRam")


def test_report_for_unknown_command_or_node_is_404(api):
    api.register("a:8000")
    assert_error(api.report("a:8000", 999, 1, CS.RUNNING), 404, "999")
    assert_error(api.report("ghost:8000", 1, 1, CS.RUNNING), 404, "ghost")


@pytest.mark.parametrize("body, word", [
    ({}, "assignment"),
    ({"assignment": "1"}, "assignment"),
    ({"assignment": 1, "status": 42}, "status"),
    ({"assignment": 1, "completion": "half"}, "completion"),
    ({"assignment": 1, "stats": [1]}, "stats"),
])
def test_malformed_command_report_is_a_400(api, body, word):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, _), = api.dispatch().items()
    assert_error(api.put(f"/rendernodes/a:8000/commands/{cmd_id}", body), 400, word)
    assert api.command(cmd_id)["statusName"] == "ASSIGNED"


def test_reregistration_keeps_what_the_worker_still_runs_and_stops_the_rest(api):
    api.submit(task("t", frames=(1, 2), maxNbCores=1))
    api.register("a:8000", cores=2)
    sent = api.dispatch()
    (keep, (_, keep_assignment)), (lost, _) = sent.items()
    api.report("a:8000", keep, keep_assignment, CS.RUNNING)
    reply = api.register("a:8000", cores=2, commands=[
        {"id": keep, "assignment": keep_assignment, "status": int(CS.RUNNING), "completion": 0.4},
        {"id": 999, "assignment": 5, "status": int(CS.RUNNING)},
    ])
    assert reply["stop"] == [999]
    assert api.command(keep)["statusName"] == "RUNNING" and api.command(keep)["completion"] == 0.4
    assert api.command(lost)["statusName"] == "READY"


@pytest.mark.parametrize("body, word", [
    ({"ram": 100}, "cores"),
    ({"cores": 0, "ram": 100}, "cores"),
    ({"cores": 2, "ram": "big"}, "ram"),
    ({"cores": 2, "ram": 1, "pools": "a"}, "pools"),
    ({"cores": 2, "ram": 1, "caracteristics": [1]}, "caracteristics"),
    ({"cores": 2, "ram": 1, "port": 70000}, "port"),
    ({"cores": 2, "ram": 1, "commands": [{"id": 1}]}, "assignment"),
    ({"cores": 2, "ram": 1, "name": "other:8000"}, "name"),
])
def test_malformed_registration_is_a_400_and_creates_nothing(api, body, word):
    assert_error(api.post("/rendernodes/a:8000/", body), 400, word)
    assert api.get("/rendernodes/").json == {"rendernodes": []}


def test_registration_takes_pools_from_the_config_file_with_the_file_backend():
    settings = load_settings(pools_backend="file", pools={"lighting": ["a:8000"], "comp": ["b"]})
    api = Api(settings=settings)
    api.register("a:8000", pools=["ignored"])
    api.register("b:9000")
    assert api.get("/rendernodes/a:8000").json["pools"] == ["default", "lighting"]
    assert api.get("/rendernodes/b:9000").json["pools"] == ["default", "comp"]
    assert "ignored" not in api.get("/pools/").json["pools"]


def test_worker_pauses_itself_and_gets_no_work(api):
    api.submit(task("t"))
    api.register("a:8000")
    result = api.put("/rendernodes/a:8000/paused/", {"paused": True, "killproc": False})
    assert result.status_code == 200 and result.json["statusName"] == "PAUSED"
    assert api.dispatch() == {}
    api.put("/rendernodes/a:8000/paused", {"paused": False})
    assert len(api.dispatch()) == 1


def test_progress_report_does_not_wake_the_dispatch_loop(api):
    api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.report(rn, cmd_id, assignment, CS.RUNNING)
    api.service._wake.clear()
    api.farm.wake = False
    api.report(rn, cmd_id, assignment, completion=0.7)
    assert not api.service._wake.is_set()
    api.report(rn, cmd_id, assignment, CS.DONE)
    assert api.service._wake.is_set()
