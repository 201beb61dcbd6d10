"""Pausing a render node from the worker's side: POST /pause/ and Puli's killfile semantics."""
import time

from processes import wait_for
from puli.model.status import CommandStatus as CS
from test_worker_support import (command, commands, farm, job, reaches, ready_worker, submit,  # noqa: F401
                                 the_command, watchers_of)


def node(dispatcher, worker):
    return dispatcher.get(f"/rendernodes/{worker.name}")[1]


def started(dispatcher, job_id):
    """The id of the job's one command, once it runs."""
    return reaches(dispatcher, the_command(dispatcher, job_id), CS.RUNNING)["id"]


def until(gate):
    """Shell that waits until the test creates the file `gate`: the command runs as long as
    the test needs it to, however slow the machine."""
    return f"while [ ! -e {gate} ]; do sleep 0.1; done"


def passes_after(dispatcher, moment, count=2):
    """Wait until the dispatcher has run `count` dispatch passes (0.5 s apart) after `moment`."""
    wait_for(lambda: dispatcher.get("/system")[1]["dispatch"]["at"] > moment + 0.5 * count,
             what="dispatch passes")


def test_a_paused_node_finishes_its_command_takes_no_new_work_and_stays_paused(farm, tmp_path):
    worker = ready_worker(farm)
    gate = tmp_path / "gate"
    first = started(farm, submit(farm, job("first", until(gate))))

    status, body = worker.call("POST", "/pause/", {"content": ""})
    assert status == 202 and body["paused"] is True
    wait_for(lambda: node(farm, worker)["paused"], what="the dispatcher to hold the node paused")
    assert command(farm, first)["status"] == CS.RUNNING, "pausing stopped the running command"
    gate.touch()
    reaches(farm, first, CS.DONE, 20)

    submitted = time.time()
    second = submit(farm, job("second", "true"))
    passes_after(farm, submitted)
    assert [c["status"] for c in commands(farm, second)] == [CS.READY]
    assert node(farm, worker)["paused"], "a paused node must stay paused after its command ended"

    assert worker.call("POST", "/pause/", {"content": "0"}) == (202, {"content": "0", "paused": False})
    wait_for(lambda: [c["status"] for c in commands(farm, second)] == [CS.DONE], 20,
             what="the second job to run once resumed")


def test_an_assignment_sent_to_a_paused_worker_is_refused_with_json(farm):
    worker = ready_worker(farm)
    worker.call("POST", "/pause/", {"content": "maintenance"})
    status, body = worker.call("POST", "/commands/", {"id": 99, "assignment": 1, "taskId": 1,
                                                      "arguments": {"cmd": "true"}})
    assert status == 409 and "paused" in body["description"]
    assert (worker.data_dir / "killfile").read_text() == "maintenance"


def test_killfile_minus_1_kills_the_running_command_and_pauses(farm):
    worker = ready_worker(farm)
    cmd_id = started(farm, submit(farm, job("killed", "sleep 300")))

    assert worker.call("POST", "/pause/", {"content": "-1"})[0] == 202
    # Killed on the node: the dispatcher puts it back in the queue, and keeps the node paused.
    reaches(farm, cmd_id, CS.READY, 20)
    wait_for(lambda: not watchers_of(worker.data_dir), what="the watcher to exit")
    wait_for(lambda: worker.runs() == [], what="the worker to forget the run")
    assert node(farm, worker)["paused"]
    assert (worker.data_dir / "killfile").read_text() == "", "the node must stay paused, not kill again"


def test_killfile_minus_2_restarts_the_worker_once_its_command_has_ended(farm, tmp_path):
    worker = ready_worker(farm)
    gate = tmp_path / "gate"
    cmd_id = started(farm, submit(farm, job("graceful", until(gate))))

    assert worker.call("POST", "/pause/", {"content": "-2"})[0] == 202
    wait_for(lambda: node(farm, worker)["paused"], what="the node to be paused")
    # Its loop goes round (two heartbeats) with the restart pending: it waits for its command.
    paused_at = time.time()
    wait_for(lambda: worker.proc.poll() is not None or node(farm, worker)["lastAliveTime"] > paused_at + 2,
             what="two heartbeats")
    assert worker.proc.poll() is None, "the worker must wait for its command"
    assert command(farm, cmd_id)["status"] == CS.RUNNING
    gate.touch()
    wait_for(lambda: worker.proc.poll() is not None, 20, what="the worker to exit")
    assert worker.proc.returncode == 0
    assert command(farm, cmd_id)["status"] == CS.DONE
    assert not (worker.data_dir / "killfile").exists()

    # Started again (by systemd), it resumes the node it had paused itself.
    again = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    wait_for(lambda: not node(farm, again)["paused"], what="the node to be resumed")


def test_killfile_minus_3_kills_the_running_command_and_restarts_the_worker(farm):
    worker = ready_worker(farm)
    cmd_id = started(farm, submit(farm, job("killed", "sleep 300")))

    assert worker.call("POST", "/pause/", {"content": "-3"})[0] == 202
    wait_for(lambda: worker.proc.poll() is not None, 20, what="the worker to exit")
    assert worker.proc.returncode == 0
    assert not watchers_of(worker.data_dir)
    assert command(farm, cmd_id)["status"] == CS.READY
    assert not (worker.data_dir / "killfile").exists()


def test_a_worker_restart_never_lifts_an_operators_pause_but_lifts_its_own(farm):
    worker = ready_worker(farm)
    assert farm.call("PUT", f"/rendernodes/{worker.name}/paused", {"paused": True})[0] == 200
    assert worker.terminate() == 0
    worker = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    registered_at = time.time()
    wait_for(lambda: node(farm, worker)["lastAliveTime"] > registered_at + 2, what="two heartbeats")
    assert node(farm, worker)["paused"], "the operator's pause was lifted"
    assert farm.call("PUT", f"/rendernodes/{worker.name}/paused", {"paused": False})[0] == 200

    # Paused by its killfile, which is removed while the worker is down: it resumes at start.
    worker.call("POST", "/pause/", {"content": ""})
    wait_for(lambda: node(farm, worker)["paused"], what="the node to be paused")
    assert worker.terminate() == 0
    (worker.data_dir / "killfile").unlink()
    again = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    wait_for(lambda: not node(farm, again)["paused"], what="the node to be resumed")


def test_a_resume_posted_while_a_kill_is_carried_out_stands(tmp_path):
    from puli.worker.killfile import KILL, RESUME, Killfile
    killfile = Killfile(tmp_path / "killfile")
    killfile.write(KILL)
    killfile.settle(KILL, "")               # killed: stays paused, and kills no more
    assert killfile.read().paused and not killfile.read().kill
    killfile.write(KILL)
    killfile.write(RESUME)                  # the operator resumed before the loop settled it
    killfile.settle(KILL, "")
    assert not killfile.read().paused
