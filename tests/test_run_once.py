"""A frame runs once: restarts leave what runs alone, and a lost node's run is over once it timed
out, whatever its worker says when it comes back. Real dispatcher, real workers, real commands
that leave their runs on disk."""
import subprocess
import sys

import psutil
import pytest

from processes import wait_for
from puli.model.status import CommandStatus as CS
from test_worker_support import (command, commands, farm, reaches, ready_worker,  # noqa: F401
                                 submit, watchers_of)


def gated(runs, gate):
    """A command that records its run, then waits until the test opens the gate."""
    return f"echo run >> {runs}; while [ ! -e {gate} ]; do sleep 0.1; done; echo past the gate"


def two_tasks(t1_cmd, t2_cmd, **task):
    """A job of two independent one-command tasks."""
    def leaf(name, cmd):
        return dict({"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
                     "arguments": {"cmd": cmd, "start": 1, "end": 1}}, **task)
    return {"name": "two", "root": 0, "user": "ann", "tasks": [
        {"type": "TaskGroup", "name": "two", "tasks": [1, 2]}, leaf("t1", t1_cmd), leaf("t2", t2_cmd)]}


def puliquery(farm, *args):
    return subprocess.run([sys.executable, "-m", "puli.cli.puliquery", "--server", farm.url,
                           "--token", farm.token, *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_a_restart_leaves_a_running_command_alone_on_every_route(farm, tmp_path):
    worker = ready_worker(farm)
    runs1, runs2, gate = tmp_path / "runs1", tmp_path / "runs2", tmp_path / "gate"
    job_id = submit(farm, two_tasks(gated(runs1, gate), f"echo run >> {runs2}"))
    t1, t2 = wait_for(lambda: [c["id"] for c in commands(farm, job_id)] or None, what="the commands")
    running = reaches(farm, t1, CS.RUNNING, 30)
    reaches(farm, t2, CS.DONE, 30)

    def restarted(route):
        if route == "nodes":
            status, body = farm.call("PUT", f"/nodes/{job_id}/status", {"status": 1})
            assert status == 200 and body["changed"] == 1, body
            return body
        if route == "edit":
            status, body = farm.call("PUT", f"/edit/status?constraint_id={job_id}&update_status=1")
            assert status == 200 and body["editedJobs"] == [job_id], body
            return body["summary"]
        result = puliquery(farm, "restart", job_id)
        assert result.returncode == 0, result.stderr
        assert f"1 running command left alone ({t1})" in result.stdout, result.stdout
        return {"leftAlone": 1, "leftAloneCommands": [{"id": t1, "status": CS.RUNNING}]}

    for done_runs, route in enumerate(("nodes", "edit", "puliquery"), start=2):
        answer = restarted(route)
        assert answer["leftAlone"] == 1 and answer["leftAloneCommands"][0]["id"] == t1, answer
        assert answer["leftAloneCommands"][0]["status"] == CS.RUNNING
        # What was not running runs again...
        wait_for(lambda n=done_runs: runs2.exists() and len(runs2.read_text().split()) == n,
                 30, what=f"t2 to run again after the restart through {route}")
        reaches(farm, t2, CS.DONE, 30)
        # ...and what runs goes on, untouched, under the same assignment.
        now = command(farm, t1)
        assert (now["status"], now["assignment"], now["attempt"], now["renderNode"]) == \
            (CS.RUNNING, running["assignment"], 0, worker.name), route

    gate.touch()
    done = reaches(farm, t1, CS.DONE, 30)
    assert runs1.read_text() == "run\n", "the running command was run a second time"
    assert done["attempt"] == 1 and done["assignment"] == running["assignment"]
    _, _, log = worker.text(f"/commands/{t1}/log")
    assert "past the gate" in log and "killed" not in log and "CANCELED" not in log, log
    assert "stopping it" not in worker.tail()


def test_a_single_running_command_cannot_be_restarted(farm, tmp_path):
    ready_worker(farm)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id = submit(farm, two_tasks(gated(runs, gate), "true"))
    t1, _ = wait_for(lambda: [c["id"] for c in commands(farm, job_id)] or None, what="the commands")
    reaches(farm, t1, CS.RUNNING, 30)
    status, body = farm.call("PUT", f"/commands/{t1}", {"status": 1})
    assert status == 409 and "running" in body["description"], body
    gate.touch()
    reaches(farm, t1, CS.DONE, 30)
    assert runs.read_text() == "run\n"


def host_dies(worker):
    """kill -9 of the worker, its watchers and their commands: what a power cut leaves. The
    worker's data directory stays."""
    victims = [psutil.Process(worker.proc.pid)]
    for watcher in watchers_of(worker.data_dir):
        victims += [watcher, *watcher.children(recursive=True)]
    for process in victims:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    worker.proc.wait(10)
    psutil.wait_procs(victims, timeout=10)


def dispatcher_time(farm):
    status, body = farm.get("/system")
    return body["dispatch"]["at"] if status == 200 else 0


@pytest.mark.dispatcher_settings("rn_timeout=2", "retry_delay=0.5")
def test_a_lost_node_s_command_stays_timeout_after_one_run_until_an_operator_restarts_it(farm, tmp_path):
    worker = ready_worker(farm)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id = submit(farm, two_tasks(gated(runs, gate), "true", maxAttempt=3))
    t1, t2 = wait_for(lambda: [c["id"] for c in commands(farm, job_id)] or None, what="the commands")
    first = reaches(farm, t1, CS.RUNNING, 30)
    reaches(farm, t2, CS.DONE, 30)          # the node dies with one command running, the gated one
    host_dies(worker)

    lost = reaches(farm, t1, CS.TIMEOUT, 30)
    assert lost["attempt"] == 1
    assert farm.get(f"/nodes/{job_id}")[1]["statusName"] == "ERROR"
    # A report on the timed-out assignment is refused: that run is over.
    status, body = farm.call("PUT", f"/rendernodes/{worker.name}/commands/{t1}",
                             {"assignment": first["assignment"], "status": int(CS.ERROR)})
    assert status == 409 and body["stop"] is True, body

    # The node comes back: it finds its watcher gone without a final state and reports an
    # ERROR for that run; the dispatcher refuses it and the worker forgets the run.
    back = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    wait_for(lambda: back.runs() == [], 30, what="the worker to forget the lost run")
    # Past the retry delay (maxAttempt 3 leaves attempts): a TIMEOUT is not retried by itself.
    end = command(farm, t1)["endTime"]
    wait_for(lambda: dispatcher_time(farm) > end + 2.0, 10, what="the dispatcher's retry check to pass")
    still = command(farm, t1)
    assert (still["status"], still["attempt"], still["assignment"]) == (CS.TIMEOUT, 1, 0), still
    assert runs.read_text() == "run\n"

    # The operator restarts the timed-out command: it runs once more, to the end.
    status, body = farm.call("PUT", f"/nodes/{job_id}/status?cmdStatus=6", {"status": 1})
    assert status == 200 and body["changed"] == 1, body
    gate.touch()
    done = reaches(farm, t1, CS.DONE, 30)
    assert done["attempt"] == 1 and done["assignment"] != first["assignment"]
    assert runs.read_text() == "run\nrun\n"


@pytest.mark.dispatcher_settings("flush_interval=1h")
def test_a_command_s_end_taken_just_before_a_crash_is_not_lost(farm, tmp_path):
    """The end is acknowledged before it is written: the worker keeps it until the
    dispatcher says that flush is committed, and hands it to the dispatcher that restarts."""
    worker = ready_worker(farm)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id = submit(farm, two_tasks(gated(runs, gate), "true"))
    t1, _ = wait_for(lambda: [c["id"] for c in commands(farm, job_id)] or None, what="the commands")
    reaches(farm, t1, CS.RUNNING, 30)
    gate.touch()
    reaches(farm, t1, CS.DONE, 30)          # taken, in memory; the next flush is an hour away
    farm.kill()
    farm.start()
    done = reaches(farm, t1, CS.DONE, 30)
    assert done["attempt"] == 1 and runs.read_text() == "run\n"
    assert [c["status"] for c in worker.get("/commands/")[1]["commands"] if c["id"] == t1] == [CS.DONE], \
        "the worker let the run go before its end was committed"
    # Another job's assignment is committed before it goes out, and the end with it.
    submit(farm, two_tasks("true", "true"))
    wait_for(lambda: (listed := worker.runs()) is not None and all(c["id"] != t1 for c in listed), 30,
             what="the worker to let the run go once its end is committed")


@pytest.mark.dispatcher_settings("flush_interval=1h")
def test_an_assignment_is_committed_before_its_worker_gets_it(farm, tmp_path):
    """After a crash the dispatcher knows every run a worker holds: none goes to a second node."""
    first = ready_worker(farm)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id = submit(farm, two_tasks(gated(runs, gate), "true"))
    t1, _ = wait_for(lambda: [c["id"] for c in commands(farm, job_id)] or None, what="the commands")
    running = reaches(farm, t1, CS.RUNNING, 30)
    farm.kill()                             # nothing flushed since the assignments
    farm.start()
    second = farm.worker().start()          # an idle node the frame could go to, were it lost
    wait_for(lambda: farm.get(f"/rendernodes/{second.name}")[0] == 200, 30, what="the second node")
    again = reaches(farm, t1, CS.RUNNING, 30)
    assert again["assignment"] == running["assignment"] and again["renderNode"] == first.name
    gate.touch()
    done = reaches(farm, t1, CS.DONE, 30)
    assert done["attempt"] == 1 and runs.read_text() == "run\n", "the frame ran twice"
