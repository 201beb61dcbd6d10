"""Commands in real cgroups, through the worker: a memory limit from the task's ramUse, and a
cancel that reaches processes which left the command's process group.

This machine has cgroup v1 hierarchies (docs: shared/reference/environment.md §4); a host where
this process cannot create cgroups skips these tests (the watcher's own tests cover the v2 files).
"""
import pytest

from processes import wait_for
from puli.commandwatcher import isolation
from puli.model.status import CommandStatus as CS
from test_worker_support import (farm, job, python_command, reaches, ready_worker, registered,  # noqa: F401
                                 submit, the_command)

MODE = isolation.detect().mode
pytestmark = pytest.mark.skipif(MODE == "pgroup", reason="no writable cgroup hierarchy here")

HOG = ("chunks = []\n"
       "for _ in range(100):\n"
       "    chunks.append(bytearray(16 * 1024 * 1024))\n")


def cgroup_worker(farm):
    worker = ready_worker(farm, extra=("--set", "isolation=auto"))
    assert registered(farm, worker.name)["caracteristics"]["isolation"] == MODE
    return worker


def test_a_command_over_its_memory_limit_is_killed_and_reported_out_of_memory(farm):
    cgroup_worker(farm)
    job_id = submit(farm, job("hog", python_command(HOG), ramUse=64, maxAttempt=1))
    result = reaches(farm, the_command(farm, job_id), CS.ERROR, 30)
    assert "out of memory" in result["message"] and "64 MB" in result["message"]


def test_cancel_kills_processes_that_left_the_process_group(farm, tmp_path):
    worker = cgroup_worker(farm)
    pid_file = tmp_path / "escaped"
    job_id = submit(farm, job("escape", f"setsid sleep 300 & echo $! > {pid_file}; sleep 300"))
    reaches(farm, the_command(farm, job_id), CS.RUNNING)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the escaped process")
    escaped = int(pid_file.read_text())

    assert farm.call("PUT", f"/nodes/{job_id}/status", {"status": 5})[0] == 200

    import psutil

    def gone():
        try:
            return psutil.Process(escaped).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 15, what="the process that left the group to die")
    wait_for(lambda: worker.runs() == [], what="the worker to forget the run")
