"""The worker for real: a `puli-dispatcher` and a `puli-worker` on loopback running real commands
under the real commandwatcher; restarts of either side in the middle of a command."""

import psutil

from processes import wait_for
from puli.model.status import CommandStatus as CS
from test_worker_support import (command, farm, job, python_command, reaches, ready_worker,  # noqa: F401
                                 submit, the_command, watchers_of)


def until(gate):
    """Shell that waits until the test creates the file `gate`: the command runs as long as
    the test needs it to, however slow the machine."""
    return f"while [ ! -e {gate} ]; do sleep 0.1; done"


def test_a_command_reports_running_its_progress_then_done(farm, tmp_path):
    worker = ready_worker(farm)
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    job_id = submit(farm, job("progress", f"echo PULI_PROGRESS 0.3; {until(gate1)}; "
                                          f"echo PULI_PROGRESS 0.6; {until(gate2)}; echo PULI_PROGRESS 0.8"))
    cmd_id = the_command(farm, job_id)
    seen = []

    def reaches_state(status, completion=None):
        def check():
            cmd = command(farm, cmd_id)
            seen.append((cmd["status"], cmd["completion"]))
            return cmd["status"] == status and completion in (None, cmd["completion"])
        return check

    # Each step of progress is seen while the command runs; only then does it go on.
    wait_for(reaches_state(CS.RUNNING, 0.3), 30, what="RUNNING at 0.3")
    gate1.touch()
    wait_for(reaches_state(CS.RUNNING, 0.6), 30, what="RUNNING at 0.6")
    gate2.touch()
    wait_for(reaches_state(CS.DONE), 30, what="DONE")
    progress = [completion for status, completion in seen if status == CS.RUNNING]
    assert any(0 < c < 1 for c in progress), seen
    assert progress == sorted(progress), "progress went backwards"
    assert command(farm, cmd_id)["completion"] == 1.0
    assert command(farm, cmd_id)["renderNode"] == worker.name
    # Once the dispatcher has the end, the run's directory goes; its log stays, served by id.
    wait_for(lambda: not (worker.data_dir / "commands" / str(cmd_id)).exists(), what="the run's directory to go")
    status, _, log = worker.text(f"/commands/{cmd_id}/log")
    assert status == 200 and "PULI_PROGRESS 0.8" in log


def test_a_failing_command_is_an_error_with_its_exit_code(farm):
    ready_worker(farm)
    job_id = submit(farm, job("fails", "echo about to fail; exit 3", maxAttempt=1))
    cmd_id = the_command(farm, job_id)
    cmd = reaches(farm, cmd_id, CS.ERROR, 30)
    assert "exit code 3" in cmd["message"]


def test_cancel_kills_the_command_and_every_process_it_started(farm, tmp_path):
    worker = ready_worker(farm)
    pids = tmp_path / "pids"
    job_id = submit(farm, job("cancel", f"sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; "
                                        f"echo $$ >> {pids}; wait"))
    cmd_id = the_command(farm, job_id)
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, what="the command's processes")
    reaches(farm, cmd_id, CS.RUNNING)
    started = [int(pid) for pid in pids.read_text().split()]

    assert farm.call("PUT", f"/nodes/{job_id}/status", {"status": 5})[0] == 200

    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(pid) for pid in started), 15, what="every process of the command to die")
    assert command(farm, cmd_id)["status"] == CS.CANCELED
    wait_for(lambda: not watchers_of(worker.data_dir), what="the watcher to exit")
    wait_for(lambda: worker.runs() == [], what="the worker to forget the run")


def test_a_restarted_worker_takes_its_running_command_back_and_reports_it_done_once(farm, tmp_path):
    worker = ready_worker(farm)
    runs = tmp_path / "runs"
    gate = tmp_path / "gate"
    job_id = submit(farm, job("survives", f"echo run >> {runs}; echo PULI_PROGRESS 0.5; {until(gate)}"))
    cmd_id = the_command(farm, job_id)
    wait_for(lambda: command(farm, cmd_id)["completion"] == 0.5, what="progress")

    assert worker.terminate() == 0
    assert watchers_of(worker.data_dir), "stopping the worker killed the render"
    again = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    listed = wait_for(again.runs, what="the runs it found again")
    assert [(c["id"], c["status"]) for c in listed] == [(cmd_id, CS.RUNNING)]

    gate.touch()                            # the command ends under the new worker
    cmd = reaches(farm, cmd_id, CS.DONE, 30)
    assert runs.read_text() == "run\n", "the command ran twice"
    assert cmd["attempt"] == 1 and cmd["renderNode"] == worker.name


def flushed(dispatcher):
    status, body = dispatcher.get("/system")
    return status == 200 and not body["db"]["pendingWrites"]


def test_a_restarted_dispatcher_gets_the_command_back_without_a_second_run(farm, tmp_path):
    worker = ready_worker(farm)
    runs = tmp_path / "runs"
    gate = tmp_path / "gate"
    job_id = submit(farm, job("outlives", f"echo run >> {runs}; {until(gate)}; echo PULI_PROGRESS 1"))
    cmd_id = the_command(farm, job_id)
    reaches(farm, cmd_id, CS.RUNNING)
    wait_for(lambda: flushed(farm), what="the write-behind flush")

    farm.kill()
    gate.touch()
    # The command ends while the dispatcher is away: its end waits in the worker.
    wait_for(lambda: [c["status"] for c in worker.runs() or ()] == [CS.DONE], 20,
             what="the command to end on the worker")
    farm.start()

    cmd = reaches(farm, cmd_id, CS.DONE, 40)
    assert runs.read_text() == "run\n", "the command ran twice"
    assert cmd["attempt"] == 1
    wait_for(lambda: worker.runs() == [], what="the worker to forget the run")


def test_the_command_gets_its_environment_and_a_log_served_with_offset_and_tail(farm, tmp_path):
    worker = ready_worker(farm)
    code = ("import os; [print(f'line {i}') for i in range(1, 6)]; "
            "print('env', os.environ['PULI_COMMAND_ID'], os.environ['PULI_TASK_NAME'], os.environ['FROM_TASK'])")
    job_id = submit(farm, job("env", python_command(code), environment={"FROM_TASK": "yes"}))
    cmd_id = the_command(farm, job_id)
    reaches(farm, cmd_id, CS.DONE, 30)

    status, headers, text = worker.text(f"/commands/{cmd_id}/log")
    assert status == 200 and f"env {cmd_id} env yes" in text
    assert headers["Content-Type"].startswith("text/plain")
    size = int(headers["X-Log-Size"])
    assert size == len(text.encode())
    _, _, tail = worker.text(f"/commands/{cmd_id}/log?tail=2")
    assert tail.splitlines() == text.splitlines()[-2:] and tail.endswith("\n")
    assert worker.text(f"/commands/{cmd_id}/log?offset={size - len(tail)}")[2] == tail
    _, headers, rest = worker.text(f"/commands/{cmd_id}/log?offset={size + 10}")
    assert rest == "" and headers["X-Log-Size"] == str(size)
    assert worker.text(f"/commands/{cmd_id}/log?tail=1000")[2] == text
    status, body = worker.get("/commands/999999/log")
    assert status == 404 and "999999" in body["description"]


def test_a_command_cancelled_while_the_worker_was_down_is_stopped_when_it_comes_back(farm, tmp_path):
    worker = ready_worker(farm)
    job_id = submit(farm, job("orphan", "echo PULI_PROGRESS 0.1; sleep 300"))
    cmd_id = the_command(farm, job_id)
    reaches(farm, cmd_id, CS.RUNNING)
    assert worker.terminate() == 0
    (watcher,) = watchers_of(worker.data_dir)
    # The stop order finds nobody to take it.
    assert farm.call("PUT", f"/nodes/{job_id}/status", {"status": 5})[0] == 200

    again = farm.worker(data_dir=worker.data_dir, port=worker.port).start()
    # Registering, it lists the run; the dispatcher answers that it is not its any more.
    wait_for(lambda: again.runs() == [], 20, what="the run to be stopped")
    assert not watcher.is_running() or watcher.status() == psutil.STATUS_ZOMBIE
    assert command(farm, cmd_id)["status"] == CS.CANCELED


def test_a_watcher_that_dies_is_reported_and_its_command_killed(farm, tmp_path):
    worker = ready_worker(farm)
    pid_file = tmp_path / "pid"
    job_id = submit(farm, job("orphaned", f"echo $$ > {pid_file}; exec sleep 300", maxAttempt=1))
    cmd_id = the_command(farm, job_id)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
    reaches(farm, cmd_id, CS.RUNNING)
    (watcher,) = watchers_of(worker.data_dir)
    watcher.kill()

    cmd = reaches(farm, cmd_id, CS.ERROR, 20)
    assert "commandwatcher" in cmd["message"] and "without a final state" in cmd["message"]
    sleeper = int(pid_file.read_text())
    wait_for(lambda: not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == psutil.STATUS_ZOMBIE,
             what="the command to be killed")


def test_a_watcher_that_does_not_stop_its_command_in_time_is_killed_with_it(farm, tmp_path):
    worker = ready_worker(farm)
    pid_file = tmp_path / "pid"
    job_id = submit(farm, job("stuck", f"echo $$ > {pid_file}; exec sleep 300"))
    cmd_id = the_command(farm, job_id)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
    reaches(farm, cmd_id, CS.RUNNING)
    (watcher,) = watchers_of(worker.data_dir)
    watcher.suspend()                     # SIGSTOP: it will never act on the stop order

    assert farm.call("PUT", f"/nodes/{job_id}/status", {"status": 5})[0] == 200
    sleeper = int(pid_file.read_text())
    # kill_grace is 2 s in these tests, and the worker waits 5 s more before it acts itself.
    wait_for(lambda: not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == psutil.STATUS_ZOMBIE,
             20, what="the command to be killed")
    wait_for(lambda: worker.runs() == [], what="the worker to forget the run")
    assert not watcher.is_running() or watcher.status() == psutil.STATUS_ZOMBIE
