"""puli-dispatcher for real: gunicorn, sd_notify on a real socket, SIGTERM, kill -9 and restart."""
import pytest

from processes import Dispatcher, NotifySocket, StandInWorker, wait_for
from puli.model.status import CommandStatus as CS, NodeStatus as NS


def graph(name, frames=3, **task):
    return {"name": name, "root": 0, "user": "ann", "tasks": [dict(
        {"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
         "arguments": {"cmd": "echo %%MI_FRAME%%", "start": 1, "end": frames}}, **task)]}


def flushed(dispatcher):
    status, body = dispatcher.get("/system")
    return status == 200 and not body["db"]["pendingWrites"]


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_ready_comes_from_the_app_after_restore_and_sigterm_flushes(tmp_path, notify_socket):
    dispatcher = Dispatcher(tmp_path / "d", notify=notify_socket)
    try:
        dispatcher.start()
        ready = notify_socket.wait("READY=1")
        arbiter = dispatcher.proc.pid
        assert all(pid != arbiter for pid, _ in ready), "gunicorn's arbiter must not claim readiness"
        assert any("STATUS=" in msg for _, msg in ready)
        notify_socket.wait("WATCHDOG=1")
        status, body = dispatcher.call("POST", "/graphs/", graph("kept"))
        assert status == 201
        # The status line follows the farm, not only the one READY said.
        notify_socket.wait("STATUS=1 jobs, 0 running, 3 ready")
        job = body["id"]
        assert dispatcher.call("PUT", f"/nodes/{job}/paused", {"paused": True})[0] == 200
        assert dispatcher.terminate() == 0
        notify_socket.wait("STOPPING=1")
        dispatcher.start()
        status, node = dispatcher.get(f"/nodes/{job}")
        assert status == 200 and node["paused"] and node["status"] == NS.PAUSED
    finally:
        dispatcher.close()


def test_bad_settings_stop_the_dispatcher_at_start_with_the_key_and_reason(tmp_path):
    dispatcher = Dispatcher(tmp_path / "d", extra=["--set", "rn_timeout=soon", "--set", "prot=1"])
    import subprocess
    out = subprocess.run(dispatcher.args, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "rn_timeout" in out.stderr and "prot" in out.stderr and "did you mean 'port'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/farm.sqlite"
    return request.getfixturevalue("mariadb_url")


def test_kill_9_and_restart_keeps_every_state_and_reattaches_running_commands(tmp_path, db_url):
    dispatcher = Dispatcher(tmp_path / "d", db_url=db_url)
    worker, spare = StandInWorker(), StandInWorker()
    try:
        dispatcher.start()
        assert worker.register(dispatcher, cores=2)[0] in (200, 201)
        assert spare.register(dispatcher, cores=1, pools=["spare"])[0] in (200, 201)
        assert dispatcher.call("PUT", "/rendernodes/quarantine/", {"quarantine": True, "rns": [spare.name]})[0] == 200
        assert dispatcher.call("PUT", "/licenses/nuke", {"maxlic": 7})[0] == 200
        status, body = dispatcher.call("POST", "/graphs/", graph("render", frames=4, lic="nuke", maxRN=2))
        render = body["id"]
        _, body = dispatcher.call("POST", "/graphs/", graph("comp", frames=2, timer=4_000_000_000.0))
        comp = body["id"]
        dispatcher.call("PUT", f"/nodes/{comp}/dispatchKey", {"dispatchKey": 7})
        dispatcher.call("PUT", f"/nodes/{comp}/paused", {"paused": True})
        wait_for(lambda: len(worker.assignments) == 2, what="two assignments")
        first, second = worker.assignments
        path = f"/rendernodes/{worker.name}/commands"
        assert dispatcher.call("PUT", f"{path}/{first['id']}/", {
            "assignment": first["assignment"], "status": int(CS.RUNNING), "completion": 0.5})[0] == 200
        assert dispatcher.call("PUT", f"{path}/{second['id']}/", {
            "assignment": second["assignment"], "status": int(CS.DONE)})[0] == 200
        wait_for(lambda: len(worker.assignments) == 3, what="the freed slot to be used")
        wait_for(lambda: flushed(dispatcher), what="the write-behind flush")
        before_job = dispatcher.get(f"/nodes/{render}")[1]
        before_comp = dispatcher.get(f"/nodes/{comp}")[1]

        dispatcher.kill()
        dispatcher.start()

        after_job = dispatcher.get(f"/nodes/{render}")[1]
        after_comp = dispatcher.get(f"/nodes/{comp}")[1]
        for key in ("status", "completion", "maxRN", "commandCount", "doneCommandCount", "poolName"):
            assert after_job[key] == before_job[key], key
        for key in ("paused", "dispatchKey", "status"):
            assert after_comp[key] == before_comp[key], key
        tasks = dispatcher.get(f"/tasks/{comp}")[1]["tasks"][0]
        assert tasks["timer"] == 4_000_000_000.0
        lic = dispatcher.get("/licenses/nuke")[1]
        assert lic["max"] == 7 and lic["used"] == 2
        spare_rn = dispatcher.get(f"/rendernodes/{spare.name}")[1]
        assert spare_rn["quarantined"] and "spare" in spare_rn["pools"]
        cmd = dispatcher.get(f"/commands/{first['id']}")[1]
        assert cmd["status"] == CS.RUNNING and cmd["completion"] == 0.5 and cmd["renderNode"] == worker.name

        # The worker comes back and says what it still runs: that command stays where it is;
        # the one it lost meanwhile is dispatched again.
        third = worker.assignments[2]
        status, body = worker.register(dispatcher, cores=2, running=[
            {"id": first["id"], "assignment": first["assignment"], "status": int(CS.RUNNING), "completion": 0.6}])
        assert status in (200, 201) and body["stop"] == []
        wait_for(lambda: len(worker.assignments) == 4, what="the free slot to be used")
        fourth = worker.assignments[3]
        dispatcher.call("PUT", f"{path}/{fourth['id']}/", {"assignment": fourth["assignment"], "status": int(CS.DONE)})
        wait_for(lambda: len(worker.assignments) == 5, what="the lost command to be dispatched again")
        again = worker.assignments[4]
        assert again["id"] == third["id"] and again["assignment"] != third["assignment"]
        assert [a["id"] for a in worker.assignments].count(first["id"]) == 1, "a command ran twice"
        cmd = dispatcher.get(f"/commands/{first['id']}")[1]
        assert cmd["status"] == CS.RUNNING and cmd["completion"] == 0.6
        # A report on a stale assignment is refused: the worker is told to stop it.
        status, body = dispatcher.call("PUT", f"{path}/{second['id']}/", {"assignment": 12345, "status": int(CS.RUNNING)})
        assert status == 409 and body["stop"] is True
    finally:
        worker.close()
        spare.close()
        dispatcher.close()


def test_render_nodes_that_do_not_come_back_after_a_restart_time_out(tmp_path):
    dispatcher = Dispatcher(tmp_path / "d", extra=["--set", "rn_timeout=1"])
    worker = StandInWorker()
    try:
        dispatcher.start()
        worker.register(dispatcher, cores=1)
        dispatcher.call("POST", "/graphs/", graph("lost", frames=1, maxAttempt=1))
        wait_for(lambda: worker.assignments, what="an assignment")
        cmd_id = worker.assignments[0]["id"]
        wait_for(lambda: flushed(dispatcher), what="the write-behind flush")
        dispatcher.kill()
        dispatcher.start()
        wait_for(lambda: dispatcher.get(f"/commands/{cmd_id}")[1]["status"] == CS.TIMEOUT,
                 what="the command of the silent node to time out")
        assert dispatcher.get(f"/rendernodes/{worker.name}")[1]["status"] == 0   # UNKNOWN
    finally:
        worker.close()
        dispatcher.close()


def test_hup_ttin_and_usr2_neither_stop_nor_double_the_farm(tmp_path, notify_socket):
    """What logrotate hooks, `kill -HUP` and `systemctl kill -s HUP` send: the one worker process
    that owns the farm keeps serving it, and systemd is never told the service stops."""
    import os
    import signal

    import psutil

    dispatcher = Dispatcher(tmp_path / "d", notify=notify_socket)
    try:
        dispatcher.start()
        notify_socket.wait("READY=1")
        arbiter = psutil.Process(dispatcher.proc.pid)
        (worker,) = arbiter.children()
        status, body = dispatcher.call("POST", "/graphs/", graph("kept"))
        assert status == 201
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGUSR2):
            os.kill(arbiter.pid, signum)
        os.kill(worker.pid, signal.SIGHUP)          # systemctl kill reaches every process
        wait_for(lambda: all(f"{name} ignored" in dispatcher.tail() or f"{name}: nothing to reload"
                             in dispatcher.tail() for name in ("SIGHUP", "SIGTTIN", "SIGUSR2")),
                 what="the arbiter to log each signal")
        assert dispatcher.get(f"/nodes/{body['id']}")[0] == 200
        assert arbiter.children() == [worker] and worker.is_running()
        assert not [msg for _, msg in notify_socket.poll() if "STOPPING=1" in msg]
        assert dispatcher.terminate() == 0
    finally:
        dispatcher.close()
