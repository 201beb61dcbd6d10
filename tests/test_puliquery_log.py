"""puliquery log for real: a real puli-worker runs real commands and serves their logs to its
dispatcher; puliquery reads (or follows) them through the dispatcher, never from the node."""
import pytest

from processes import wait_for
from puli.model.status import CommandStatus as CS
from test_puliquery_support import Farm, fails, ok
from test_worker_support import WorkerProcess, job, reaches, registered, submit, sweep, the_command


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A dispatcher with one real worker (the stand-in of Farm is paused: it takes no work)."""
    farm = Farm(tmp_path_factory.mktemp("logfarm"))
    worker = None
    try:
        status, _ = farm.call("PUT", f"/rendernodes/{farm.standin.name}/paused", {"paused": True})
        assert status == 200
        worker = WorkerProcess(farm.url, tmp_path_factory.mktemp("worker"),
                               token=farm.dispatcher.worker_token()).start()
        wait_for(lambda: registered(farm.dispatcher, worker.name), what="the worker's registration")
        farm.worker = worker
        yield farm
    finally:
        if worker is not None:
            worker.close()
            sweep(worker.data_dir)
        farm.close()


def test_log_prints_the_log_its_worker_serves(farm):
    job_id = submit(farm.dispatcher, job("hello", "echo hello from frame; echo second line; echo last line"))
    cmd = the_command(farm.dispatcher, job_id)
    reaches(farm.dispatcher, cmd, CS.DONE, 30)
    text = ok(farm.pq("log", cmd))
    assert text.index("hello from frame") < text.index("second line") < text.index("last line")
    lines = text.rstrip("\n").splitlines()
    assert ok(farm.pq("log", cmd, "--tail", 1)).splitlines() == lines[-1:]
    assert ok(farm.pq("log", cmd, "-n", 3)).splitlines() == lines[-3:]


def test_log_follow_prints_everything_once_until_the_command_ends(farm):
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done"
    job_id = submit(farm.dispatcher, job("follow", script))
    cmd = the_command(farm.dispatcher, job_id)
    reaches(farm.dispatcher, cmd, CS.RUNNING, 30)
    text = ok(farm.pq("log", "--follow", cmd))
    lines = [line for line in text.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, 7)]
    assert farm.command(cmd)["status"] == CS.DONE


def test_log_of_a_command_that_has_not_run_is_refused(farm):
    status, body = farm.call("POST", "/graphs/", dict(job("waiting", "echo never"), poolName="nowhere"))
    assert status == 201
    (cmd,) = farm.commands(body["id"])
    fails(farm.pq("log", cmd["id"]), 1, "has not run yet")
    fails(farm.pq("log", 987654), 1, "no command 987654")


def test_log_from_a_worker_that_is_gone_is_exit_3(farm, tmp_path):
    # A worker of its own, in a pool of its own: the module's worker serves the other tests.
    gone = WorkerProcess(farm.url, tmp_path / "gone", token=farm.dispatcher.worker_token(),
                         extra=("--set", "pools=[orphans]"))
    try:
        gone.start()
        wait_for(lambda: registered(farm.dispatcher, gone.name), what="the worker's registration")
        job_id = submit(farm.dispatcher, dict(job("orphan", "echo soon unreachable"), poolName="orphans"))
        cmd = the_command(farm.dispatcher, job_id)
        reaches(farm.dispatcher, cmd, CS.DONE, 30)
        assert farm.command(cmd)["renderNode"] == gone.name
    finally:
        gone.close()
        sweep(gone.data_dir)
    fails(farm.pq("log", cmd), 3, "cannot reach the worker", gone.name)
