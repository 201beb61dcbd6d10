"""The commandwatcher run for real: `python -m puli.commandwatcher <dir>` on a hand-written
assignment.json, its state.json polled until a deadline, its commands real processes."""
import json
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from puli.commandwatcher import isolation
from puli.commandwatcher.state import CANCELED, DONE, ERROR, RUN_ENDS, RUNNING, read
from processes import wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "commandwatcher"


class Watched:
    """A commandwatcher started like the worker starts it: a new session, no terminal."""

    def __init__(self, tmp_path, arguments, command_id=7, **fields):
        self.dir = tmp_path / "commands" / str(command_id)
        self.dir.mkdir(parents=True)
        self.log_path = tmp_path / "logs" / f"{command_id}.log"
        self.assignment = {
            "id": command_id, "assignment": 1, "description": "test command",
            "runner": "puli.commandwatcher.runners.DefaultCommandRunner", "arguments": arguments,
            "environment": {}, "taskName": "render", "taskId": 3, "jobId": 2, "cores": 1, "ramUse": 0,
            "maxRunTime": 0, "licenses": [], "attempt": 1, "logPath": str(self.log_path),
            "logMaxBytes": 1024 * 1024, "cgroup": None, "killGrace": 5, "workerUrl": "http://127.0.0.1:1/",
        }
        self.assignment.update(fields)
        (self.dir / "assignment.json").write_text(json.dumps(self.assignment))
        self.stderr = open(self.dir / "watcher.stderr", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "puli.commandwatcher", str(self.dir)],
                                        start_new_session=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self.stderr)

    def state(self):
        return read(self.dir / "state.json")

    def wait_state(self, predicate, timeout=15.0, what="state"):
        def check():
            state = self.state()
            return state if state is not None and predicate(state) else None
        return wait_for(check, timeout, what=what)

    def final(self, timeout=20.0):
        state = self.wait_state(lambda s: s["status"] in RUN_ENDS, timeout, "a final state")
        assert self.process.wait(timeout=10) == 0
        assert (self.dir / "watcher.stderr").read_bytes() == b""     # nothing went unreported
        return state

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_lines(self, prefix):
        return wait_for(lambda: [line for line in self.log().splitlines() if line.startswith(prefix)],
                        what=f"log lines starting {prefix!r}")

    def cleanup(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.stderr.close()


@pytest.fixture
def watch(tmp_path):
    started = []

    def start(arguments, **fields):
        watched = Watched(tmp_path, arguments, command_id=len(started) + 7, **fields)
        started.append(watched)
        return watched
    yield start
    for watched in started:
        watched.cleanup()


def gate(tmp_path):
    """A file the command waits for, so that the test decides when it goes on."""
    return tmp_path / f"go-{uuid.uuid4().hex}"


def test_progress_lines_show_running_then_done(watch, tmp_path):
    go = gate(tmp_path)
    cmd = (f"echo starting; echo PULI_PROGRESS 0.25; echo 'PULI_MESSAGE quarter way'; "
           f"echo 'PULI_STATS {{\"samples\": 64}}'; "
           f"while [ ! -e {go} ]; do sleep 0.02; done; echo PULI_PROGRESS 80%; echo finished")
    watched = watch({"cmd": cmd})
    running = watched.wait_state(lambda s: s["completion"] == 0.25 and s["message"] == "quarter way",
                                 what="RUNNING at 25 %")
    assert running["status"] == RUNNING
    assert running["stats"] == {"samples": 64}
    assert running["watcherPid"] == watched.process.pid
    assert running["commandPgid"] and running["endTime"] is None
    assert (watched.dir / "watcher.pid").read_text().strip() == str(watched.process.pid)
    go.touch()
    state = watched.final()
    assert state["status"] == DONE and state["completion"] == 1.0
    assert state["exitCode"] == 0 and state["signal"] is None and not state["oom"] and not state["timedOut"]
    assert state["seq"] > running["seq"] and state["endTime"] >= state["startTime"]
    log = watched.log()
    assert "starting\nPULI_PROGRESS 0.25\n" in log and "finished\n" in log
    assert re.search(r"^\[puli\] .* started frame 1, pid \d+: /bin/sh -c ", log, re.M)
    assert log.splitlines()[-1].endswith("DONE: quarter way")


def test_frames_are_substituted_and_run_one_by_one(watch, tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    watched = watch({"cmd": f"echo %%MI_START%%-%%MI_END%% > {out}/f%%MI_FRAME%%.txt; echo PULI_PROGRESS 0.5",
                     "start": 3, "end": 6, "packetSize": 4},
                    runner="puliclient.jobs.DefaultCommandRunner")
    state = watched.final()
    assert state["status"] == DONE and state["completion"] == 1.0
    assert sorted(p.name for p in out.iterdir()) == ["f3.txt", "f4.txt", "f5.txt", "f6.txt"]
    assert (out / "f5.txt").read_text() == "3-6\n"
    assert [line.split("started ")[1].split(",")[0] for line in watched.log_lines("[puli]") if "started" in line] \
        == ["frame 3", "frame 4", "frame 5", "frame 6"]


def test_argv_command_is_run_without_a_shell(watch, tmp_path):
    target = tmp_path / "argv-out"
    watched = watch({"cmd": [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                             str(target), "frame %%MI_FRAME%%; $(not expanded)"], "start": 2, "end": 2})
    assert watched.final()["status"] == DONE
    assert target.read_text() == "frame 2; $(not expanded)"


def test_failing_frame_stops_the_packet_with_its_exit_code(watch, tmp_path):
    watched = watch({"cmd": "echo frame %%MI_FRAME%%; [ %%MI_FRAME%% -lt 2 ] || exit 3", "start": 1, "end": 4})
    state = watched.final()
    assert state["status"] == ERROR
    assert state["message"] == "frame 2: exit code 3" and state["exitCode"] == 3 and state["signal"] is None
    assert "started frame 3" not in watched.log() and state["completion"] == 0.25


def test_single_failing_command_reports_its_exit_code(watch):
    watched = watch({"args": "echo oops >&2; exit 42"},
                    runner="puliclient.contrib.commandlinerunner.CommandLineRunner")
    state = watched.final()
    assert state["status"] == ERROR and state["message"] == "exit code 42" and state["exitCode"] == 42
    assert "oops\n" in watched.log()                    # stderr is in the log too
    assert "[puli]" in watched.log().splitlines()[-1] and "ERROR: exit code 42" in watched.log()


def test_command_killed_by_a_signal_is_an_error(watch):
    state = watch({"cmd": "kill -KILL $$"}).final()
    assert state["status"] == ERROR and state["message"] == "killed by signal SIGKILL"
    assert state["signal"] == 9 and state["exitCode"] is None


BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end:\n    pass\n"


def test_final_stats_have_the_run_figures(watch):
    # The CPU is burnt by a grandchild the shell forks: it is counted too.
    watched = watch({"cmd": f"{shlex.quote(sys.executable)} -c {shlex.quote(BURN)}; sleep 0.3; exit 4"})
    state = watched.final()
    stats = state["stats"]
    assert state["status"] == ERROR and stats["exitCode"] == 4 and stats["signal"] is None
    assert stats["oom"] is False and stats["timedOut"] is False
    assert 0.9 <= stats["wallSeconds"] <= state["endTime"] - state["startTime"] + 0.01
    assert 0.55 <= stats["cpuSeconds"] <= stats["wallSeconds"] + 0.5


def test_final_stats_of_a_signal_and_a_timeout(watch):
    killed = watch({"cmd": "kill -KILL $$"}).final()["stats"]
    assert killed["signal"] == 9 and killed["exitCode"] is None and killed["timedOut"] is False
    slow = watch({"cmd": "sleep 1000"}, maxRunTime=1).final()["stats"]
    assert slow["timedOut"] is True and slow["signal"] == signal.SIGTERM and slow["wallSeconds"] >= 1.0
    assert slow["cpuSeconds"] < 0.5


def test_command_environment(watch):
    watched = watch({"cmd": "env | grep -E '^(PULI_|RENDERER=)' | grep -v '^PULI_TEST_' | sort"},
                    environment={"RENDERER": "cycles", "PULI_TASK_NAME": "overridden by the watcher",
                                 "PULI_USER": "overridden too"},
                    cores=4, ramUse=2048, attempt=2, user="bob")
    assert watched.final()["status"] == DONE
    env = dict(line.split("=", 1) for line in watched.log().splitlines() if not line.startswith("[puli]"))
    assert env == {"PULI_ALLOCATED_CORES": "4", "PULI_ALLOCATED_MEMORY": "2048", "PULI_ATTEMPT": "2",
                   "PULI_COMMAND_ID": "7", "PULI_JOB_ID": "2", "PULI_LOG": str(watched.log_path),
                   "PULI_TASK_ID": "3", "PULI_TASK_NAME": "render", "PULI_USER": "bob", "RENDERER": "cycles"}


def test_command_environment_without_a_user(watch):
    # An assignment from before the "user" field: the variable is there, empty.
    watched = watch({"cmd": "echo \"PULI_USER=[$PULI_USER]\""})
    assert watched.final()["status"] == DONE
    assert "PULI_USER=[]\n" in watched.log()


def _spawned_pids(watched, count):
    lines = wait_for(lambda: (lambda found: found if len(found) >= count else None)(
        [line for line in watched.log().splitlines() if line.startswith("CHILD ")]), what="the children's pids")
    return [int(line.split()[1]) for line in lines]


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A shell starting grandchildren, one of which leaves the process group (setsid).
TREE = ("sleep 1000 & echo CHILD $!; sh -c 'sleep 1000 & echo CHILD $!; wait' & echo CHILD $!; "
        "setsid sleep 1000 & echo CHILD $!; wait")


def test_sigterm_kills_the_whole_tree_and_cancels(watch):
    watched = watch({"cmd": TREE})
    pids = _spawned_pids(watched, 4)
    assert all(psutil.pid_exists(pid) for pid in pids)
    watched.process.send_signal(signal.SIGTERM)
    state = watched.final()
    assert state["status"] == CANCELED and state["message"] == "killed on request"
    assert state["signal"] == signal.SIGTERM
    assert all(_gone(pid) for pid in pids), [p for p in pids if not _gone(p)]
    assert "stop requested" in watched.log()


def test_tree_ignoring_sigterm_is_killed_after_the_grace(watch):
    watched = watch({"cmd": "trap '' TERM; sleep 1000 & echo CHILD $!; wait; wait"}, killGrace=0.5)
    pids = _spawned_pids(watched, 1)
    watched.process.send_signal(signal.SIGTERM)
    state = watched.final()
    assert state["status"] == CANCELED and state["signal"] == signal.SIGKILL
    assert _gone(pids[0])
    log = watched.log()
    assert log.index("stop requested: killing the command") < log.index("sending SIGKILL")


# Prints its pid once it ignores SIGTERM, then a line for each SIGTERM it ignores.
STUBBORN = ("import os, signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print('TERM ignored', flush=True))\n"
            "print('CHILD', os.getpid(), flush=True)\n"
            "while True:\n    time.sleep(1000)\n")


def test_sigkill_waits_for_the_grace_or_a_second_stop(watch):
    # A grace no test outlives: what happens in it does not depend on how fast this machine is.
    watched = watch({"cmd": [sys.executable, "-c", STUBBORN]}, killGrace=600)
    pid = _spawned_pids(watched, 1)[0]
    watched.process.send_signal(signal.SIGTERM)
    watched.log_lines("TERM ignored")
    # The command had its SIGTERM and survived it: the watcher waits out the grace.
    assert psutil.pid_exists(pid) and not _gone(pid)
    assert watched.state()["status"] == RUNNING and "sending SIGKILL" not in watched.log()
    watched.process.send_signal(signal.SIGTERM)
    state = watched.final()
    assert state["status"] == CANCELED and state["signal"] == signal.SIGKILL
    assert _gone(pid) and "sending SIGKILL" in watched.log()


def test_max_run_time_kills_and_reports_timeout(watch):
    watched = watch({"cmd": "sleep 1000 & echo CHILD $!; wait"}, maxRunTime=1)
    pids = _spawned_pids(watched, 1)
    state = watched.final()
    assert state["status"] == ERROR and state["timedOut"] is True
    assert state["message"] == "exceeded max run time of 1 s"
    assert state["endTime"] - state["startTime"] >= 1.0
    assert _gone(pids[0])


def test_leftover_processes_are_stopped_after_a_clean_exit(watch):
    watched = watch({"cmd": "sleep 1000 & echo CHILD $!"})
    state = watched.final()
    assert state["status"] == DONE
    assert _gone(_spawned_pids(watched, 1)[0])
    assert "left processes behind" in watched.log()


def test_bad_arguments_unknown_runner_and_parser_are_errors(watch):
    assert watch({"start": 1}).final()["message"] == "invalid arguments: parameter 'cmd': is mandatory"
    assert watch({"cmd": "true", "start": 5, "end": 2}).final()["message"] == \
        "invalid arguments: parameter 'end': 2 is before start 5"
    assert watch({"cmd": "true", "start": "five"}).final()["message"] == \
        "invalid arguments: parameter 'start': expected an integer, got 'five'"
    state = watch({"cmd": "true", "parser": "houdini"}).final()
    assert state["status"] == ERROR and state["message"].startswith("unknown progress parser 'houdini'")
    state = watch({}, runner="no.such.Runner").final()
    assert state["status"] == ERROR and "cannot import runner module 'no.such'" in state["message"]


def test_bad_assignment_is_reported_in_the_state(tmp_path):
    directory = tmp_path / "commands" / "9"
    directory.mkdir(parents=True)
    for assignment, message in [({"arguments": {}}, "assignment.json is not an object with an 'id'"),
                                ({"id": 9, "killGrace": "soon"}, "killGrace must be a number >= 0, got 'soon'")]:
        (directory / "assignment.json").write_text(json.dumps(assignment))
        result = subprocess.run([sys.executable, "-m", "puli.commandwatcher", str(directory)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and message in result.stderr
        state = read(directory / "state.json")
        assert state["status"] == ERROR and state["message"] == f"bad assignment: {message}"
        assert state["id"] == assignment.get("id")


def test_bad_cgroup_description_is_an_error(watch):
    state = watch({"cmd": "true"}, cgroup={"mode": "cgroup1", "paths": {"memory": "/sys/fs/cgroup/memory/.."}}).final()
    assert state["status"] == ERROR and state["message"].startswith("bad cgroup in the assignment: ")


def test_missing_executable_is_an_error(watch, tmp_path):
    state = watch({"cmd": [str(tmp_path / "no-such-renderer")]}).final()
    assert state["status"] == ERROR and state["message"].startswith("cannot start frame 1: [Errno 2] No such file")


def test_state_writes_are_coalesced(watch):
    # 3000 progress lines, and far fewer writes of the state: a write per 0.5 s at most while the
    # command runs (benchmarks/watcher.py measures the rate), not one per update.
    lines = 3000
    watched = watch({"cmd": f"i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo PULI_PROGRESS 0.$i; done"})
    state = watched.final()
    assert state["status"] == DONE and watched.log().count("\nPULI_PROGRESS") == lines
    assert state["seq"] <= lines // 30


def test_log_is_rotated_by_size(watch):
    line = "x" * 49
    watched = watch({"cmd": f"i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo $i {line}; done"}, logMaxBytes=2000)
    assert watched.final()["status"] == DONE
    path = watched.log_path
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert all(p.exists() and 0 < p.stat().st_size <= 2000 for p in files)
    assert not Path(f"{path}.3").exists()
    assert all(p.read_text().endswith("\n") for p in files)        # rotated at line ends
    assert watched.log().splitlines()[-1].endswith("DONE")
    assert "200 " + line in watched.log() + Path(f"{path}.1").read_text()


def test_parser_selected_by_argument(watch):
    watched = watch({"args": f"cat {FIXTURES / 'vray.log'}; sleep 1000", "parser": "vray"},
                    runner="puli.commandwatcher.runners.CommandLineRunner")
    state = watched.wait_state(lambda s: s["completion"] == 1.0, what="V-Ray's 'done'")
    assert state["status"] == RUNNING
    watched.process.send_signal(signal.SIGTERM)
    assert watched.final()["status"] == CANCELED


# -- Python runner classes, run in a child process ---------------------------------------------

def python_runner(watch, name, arguments, **fields):
    return watch(arguments, runner=f"puli_test_runners.{name}",
                 environment={"PYTHONPATH": str(FIXTURES)}, **fields)


def test_python_runner_reports_completion_message_and_stats(watch):
    watched = python_runner(watch, "CountingRunner", {"label": "count", "steps": "5", "delay": 0.05})
    state = watched.final()
    assert state["status"] == DONE and state["completion"] == 1.0
    assert state["message"] == "count step 5/5"
    assert {k: state["stats"][k] for k in ("steps", "argType")} == {"steps": 5, "argType": "int"}  # "5" cast
    assert state["stats"]["exitCode"] == 0 and state["stats"]["signal"] is None
    log = watched.log()
    assert "counted 5 steps\n" in log and "INFO puli.runner.CountingRunner: runner log line" in log


def test_python_runner_validation_errors_name_the_parameter(watch):
    state = python_runner(watch, "CountingRunner", {"steps": 3}).final()
    assert state["status"] == ERROR and state["message"] == "invalid arguments: parameter 'label': is mandatory"
    state = python_runner(watch, "CountingRunner", {"label": "x", "steps": 0}).final()
    assert state["message"] == "invalid arguments: parameter 'steps': 0 is below the minimum 1"
    state = python_runner(watch, "CountingRunner", {"label": "x", "fail": "maybe"}).final()
    assert state["message"] == "invalid arguments: parameter 'fail': expected a boolean, got 'maybe'"


def test_python_runner_outcomes(watch):
    state = python_runner(watch, "CountingRunner", {"label": "x", "fail": True}).final()
    assert state["status"] == ERROR and state["message"] == "asked to fail" and state["exitCode"] == 1
    state = python_runner(watch, "StoppingRunner", {}).final()
    assert state["status"] == DONE and state["message"] == "enough frames" and state["completion"] == 1.0
    state = python_runner(watch, "LegacyRunner", {}).final()
    assert state["status"] == DONE and state["message"] == "legacy ran"
    buggy = python_runner(watch, "BuggyRunner", {})
    state = buggy.final()
    assert state["status"] == ERROR and state["message"] == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last)" in buggy.log() and "1 / 0" in buggy.log()
    state = python_runner(watch, "NotARunner", {}).final()
    assert state["status"] == ERROR
    assert state["message"] == "'puli_test_runners.NotARunner' is not a CommandRunner class"


def test_python_runner_is_killed_with_its_group(watch):
    watched = python_runner(watch, "CountingRunner", {"label": "slow", "steps": 100, "delay": 5.0})
    running = watched.wait_state(lambda s: s["commandPgid"], what="the runner's process group")
    runner_pid = running["commandPgid"]
    assert psutil.pid_exists(runner_pid)
    watched.process.send_signal(signal.SIGTERM)
    assert watched.final()["status"] == CANCELED
    assert _gone(runner_pid)


# -- a real cgroup v1 memory limit on this machine ---------------------------------------------

@pytest.fixture
def real_cgroups():
    iso = isolation.detect()
    if iso.mode == "pgroup":
        pytest.skip("/sys/fs/cgroup/memory (or pids) under this process's cgroup is not writable: "
                    "cgroup limits cannot be tested here")
    made = []

    def create(**limits):
        cgroup = iso.create(f"puli-test-{uuid.uuid4().hex[:12]}", **limits)
        made.append(cgroup)
        return cgroup
    yield create
    for cgroup in made:
        cgroup.kill()
        wait_for(lambda cgroup=cgroup: not cgroup.pids(), what="the test cgroup to empty")
        cgroup.remove()


HOG = ("import sys\nchunks = []\nfor i in range(30):\n    chunks.append(b'x' * (10 * 1024 * 1024))\n"
       "    print('allocated', (i + 1) * 10, 'MB', flush=True)\n")


def test_memory_hog_is_killed_by_the_cgroup_limit(watch, real_cgroups):
    cgroup = real_cgroups(cores=1, ram_mb=64)
    watched = watch({"cmd": [sys.executable, "-c", HOG]}, ramUse=64, cgroup=cgroup.describe())
    state = watched.final()
    assert state["status"] == ERROR and state["oom"] is True
    assert state["message"] == "out of memory: limit 64 MB"
    assert state["signal"] == signal.SIGKILL
    assert "allocated 300 MB" not in watched.log()
    assert 40 <= state["stats"]["memoryPeakMb"] <= 64.5
    assert state["stats"]["oom"] is True and state["stats"]["signal"] == signal.SIGKILL
    assert state["stats"]["cpuSeconds"] > 0 and state["stats"]["wallSeconds"] > 0
    assert not any(Path(p).exists() for p in cgroup.describe()["paths"].values())    # removed


def test_cgroup_command_tree_is_killed_including_escapees(watch, real_cgroups):
    cgroup = real_cgroups(cores=2, ram_mb=256)
    # Daemonised for good: double fork and setsid, the watcher cannot see it as a group member.
    watched = watch({"cmd": TREE}, ramUse=256, cgroup=cgroup.describe())
    pids = _spawned_pids(watched, 4)
    assert set(pids) <= cgroup.pids()
    memory_dir = Path(cgroup.describe()["paths"]["memory"])
    assert (memory_dir / "memory.limit_in_bytes").read_text().strip() == str(256 * 1024 * 1024)
    cpu_dir = Path(cgroup.describe()["paths"]["cpu"])
    assert (cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "200000"
    watched.process.send_signal(signal.SIGTERM)
    assert watched.final()["status"] == CANCELED
    assert all(_gone(pid) for pid in pids)
    assert not cgroup.pids()
