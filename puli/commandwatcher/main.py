"""The commandwatcher: runs one command for the worker and reports on it in state.json.

Usage: ``python -m puli.commandwatcher <command dir>`` (or ``puli-commandwatcher``), where the
directory holds the worker's ``assignment.json``. The watcher writes ``watcher.pid`` and
``state.json`` there and the command's log at ``logPath``. SIGTERM stops the command (its whole
tree: SIGTERM, then SIGKILL after ``killGrace`` s; a second SIGTERM kills at once) and ends with
status CANCELED. See DESIGN.md, "The worker and the commandwatcher".
"""
import argparse
import json
import logging
import os
import resource
import selectors
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from puli.commandwatcher.command import CommandProcess, become_subreaper
from puli.commandwatcher.isolation import CommandCgroup, IsolationError
from puli.commandwatcher.logs import CommandLog
from puli.commandwatcher.progress import UnknownParser, make_reader
from puli.commandwatcher.runner import BUILTIN, RunnerLoadError, ValidationError, canonical_name, \
    load_runner_class
from puli.commandwatcher.runners import Run
from puli.commandwatcher.state import CANCELED, DONE, ERROR, StateFile

DEFAULT_RUNNER = BUILTIN + "DefaultCommandRunner"
# Runners whose work is plain processes: the watcher runs those itself, without a Python child.
COMMAND_LINE_RUNNERS = {BUILTIN + "DefaultCommandRunner", BUILTIN + "CommandLineRunner"}
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KILL_GRACE = 10.0
UNKILLABLE_WAIT = 10.0      # after SIGKILL, how long to wait for processes stuck in the kernel
BATCH_INTERVAL = 0.25      # s a pipe rests after a read: output is handled in batches
READ_SIZE = 256 * 1024
MAX_PARTIAL_LINE = 65536    # output without a line end is logged once it gets this long
STOP_REQUESTED = "stop requested"
TIMED_OUT = "timed out"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="puli-commandwatcher",
                                     description="Run one Puli command and report it in <command dir>/state.json.")
    parser.add_argument("command_dir", help="directory holding the worker's assignment.json")
    args = parser.parse_args(argv)
    return Watcher(Path(args.command_dir)).run()


class Signals:
    """Signal handlers only record; a wakeup pipe makes the main loop's select() return."""

    def __init__(self):
        self.stops = 0
        self.wakeup_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGCHLD, self._child)

    def _stop(self, signum, frame):
        self.stops += 1

    def _child(self, signum, frame):
        pass                    # the wakeup byte is the message: the loop reaps

    def drain(self):
        try:
            while os.read(self.wakeup_fd, 512):
                pass
        except BlockingIOError:
            pass


class LogHandler(logging.Handler):
    """Routes the watcher's library logging (e.g. isolation warnings) into the command's log."""

    def __init__(self, command_log):
        super().__init__(logging.INFO)
        self.command_log = command_log

    def emit(self, record):
        self.command_log.note(f"{record.levelname.lower()}: {record.getMessage()}")


class Pipes:
    """The command's pipes in the selector. A pipe that was just read leaves the selector for
    BATCH_INTERVAL and is then read directly: a command printing a line at a time costs one
    wakeup per interval, not one per line. A pipe found empty goes back into the selector."""

    def __init__(self, selector, kinds):
        self.selector = selector
        self.kinds = {fd: kind for fd, kind in kinds.items() if fd is not None}
        self.resting = set()
        self.resume_at = None
        for fd, kind in self.kinds.items():
            selector.register(fd, selectors.EVENT_READ, kind)

    def rest(self, fd, now):
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        self.resting.add(fd)
        if self.resume_at is None:
            self.resume_at = now + BATCH_INTERVAL

    def due(self, now):
        """The resting pipes whose rest is over: the caller reads them, then rest()s or listen()s."""
        if self.resume_at is None or now < self.resume_at:
            return []
        self.resume_at = None
        due = [(fd, self.kinds[fd]) for fd in self.resting]
        self.resting.clear()
        return due

    def listen(self, fd):
        if fd not in self.selector.get_map():
            self.selector.register(fd, selectors.EVENT_READ, self.kinds[fd])

    def close(self, fd):
        if fd in self.resting:
            self.resting.discard(fd)
        elif fd in self.selector.get_map():
            self.selector.unregister(fd)
        del self.kinds[fd]
        if not self.resting:
            self.resume_at = None

    def close_all(self):
        for fd in list(self.kinds):
            self.close(fd)


class Plan:
    """The processes to run, whether they report through a pipe (a Python runner child), and the
    output reader that turns their lines into progress (command-line runs only)."""

    def __init__(self, runs, reports, read):
        self.runs = runs
        self.reports = reports
        self.read = read


class Watcher:
    def __init__(self, command_dir):
        self.dir = command_dir
        self.assignment = {}
        self.cgroup = None
        self.process = None
        self.stop_reason = None
        self.runner_outcome = None
        self.children_left = False
        self.started_at = None          # monotonic time the first process of the command started
        self.cpu_base = None            # the watcher's RUSAGE_CHILDREN user+sys before it

    # -- the run, top to bottom ---------------------------------------------------------------

    def run(self):
        # First of all, so that a stop order arriving while we start up is not lost.
        self.signals = Signals()
        self.write_pid()
        try:
            a = self.assignment = self.load_assignment()
            self.log = CommandLog(a.get("logPath") or self.dir / "command.log", self.log_max_bytes)
        except (OSError, ValueError) as exc:
            # No log to write to: say it where the worker looks, and on stderr for a person.
            a = self.assignment
            self.state = StateFile(self.dir / "state.json", a.get("id"), a.get("assignment"))
            self.state.update(status=ERROR, message=f"bad assignment: {exc}", endTime=time.time())
            self.state.flush(force=True)
            print(f"puli-commandwatcher: bad assignment in {self.dir}: {exc}", file=sys.stderr)
            return 2
        logging.getLogger("puli").addHandler(LogHandler(self.log))
        logging.getLogger("puli").setLevel(logging.INFO)
        self.state = StateFile(self.dir / "state.json", a["id"], a.get("assignment"))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.signals.wakeup_fd, selectors.EVENT_READ, "wakeup")
        self.deadline = time.monotonic() + self.max_run_time if self.max_run_time > 0 else None
        self.log.note(f"watcher pid {os.getpid()} for command {a['id']} (assignment {a.get('assignment')}, "
                      f"attempt {a.get('attempt')}), runner {a.get('runner') or DEFAULT_RUNNER}")
        self.state.flush()
        try:
            become_subreaper()
            self.execute()
        except Exception as exc:    # a watcher bug must still end in a final state, with its traceback
            self.log.note("watcher failure:\n" + traceback.format_exc())
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
            self.finish(ERROR, f"watcher failure: {type(exc).__name__}: {exc}")
            return 1
        finally:
            self.log.close()
        return 0

    def execute(self):
        try:
            plan = self.plan()
        except (RunnerLoadError, ValidationError, UnknownParser) as exc:
            message = f"invalid arguments: {exc}" if isinstance(exc, ValidationError) else str(exc)
            return self.finish(ERROR, message)
        if self.assignment.get("cgroup"):
            try:
                self.cgroup = CommandCgroup.from_description(self.assignment["cgroup"])
            except (IsolationError, KeyError, TypeError, AttributeError) as exc:
                return self.finish(ERROR, f"bad cgroup in the assignment: {exc!r}")
        env = self.command_env()
        process, label = None, ""
        for index, run in enumerate(plan.runs):
            if self.signals.stops:
                self.stop_reason = STOP_REQUESTED
                break
            if self.started_at is None:
                self.started_at = time.monotonic()
                self.cpu_base = _children_cpu()
            try:
                process = self.process = CommandProcess(run.argv, env, cgroup=self.cgroup, reports=plan.reports)
            except (OSError, subprocess.SubprocessError) as exc:
                return self.finish(ERROR, f"cannot start {run.label}: {exc}")
            label = run.label
            self.log.note(f"started {run.label}, pid {process.pid}: {_shown(run.argv)}")
            self.state.update(commandPgid=process.pgid,
                              message=run.label if len(plan.runs) > 1 else self.state.state["message"])
            try:
                self.supervise(process, plan, index)
            finally:
                process.close()
            self.log.note(f"{run.label} ended: {_describe_exit(process.returncode)}")
            if self.stop_reason or process.returncode != 0:
                break
            self.state.update(completion=(index + 1) / len(plan.runs))
        self.conclude(process, label, len(plan.runs))

    def supervise(self, process, plan, index):
        """Run the loop until the process and its whole tree are gone and the output is read."""
        self.pending = b""
        self.reports_pending = b""
        pipes = Pipes(self.selector, {process.output_fd: "output", process.reports_fd: "reports"})
        term_sent = kill_at = killed_at = None
        try:
            while True:
                now = time.monotonic()
                for fd, kind in pipes.due(now):
                    self.handle_pipe(pipes, fd, kind, plan, index, now)
                if self.signals.stops and self.stop_reason is None:
                    self.stop_reason = STOP_REQUESTED
                    self.log.note("stop requested: killing the command")
                if self.deadline is not None and now >= self.deadline and self.stop_reason is None:
                    self.stop_reason = TIMED_OUT
                    self.log.note(f"max run time of {self.max_run_time:g} s exceeded: killing the command")
                self.reap(process)
                tree_alive = process.returncode is None or self.children_left
                if tree_alive:
                    if term_sent is None and (self.stop_reason or process.returncode is not None):
                        if not self.stop_reason:
                            self.log.note("the command exited but left processes behind: stopping them")
                        process.signal(signal.SIGTERM)
                        term_sent, kill_at = now, now + self.kill_grace
                    if killed_at is None and kill_at is not None and (now >= kill_at or self.signals.stops >= 2):
                        self.log.note("sending SIGKILL to the command's processes")
                        process.kill()
                        killed_at = now
                    if killed_at is not None and now >= killed_at + UNKILLABLE_WAIT:
                        self.log.note(f"processes still alive {UNKILLABLE_WAIT:g} s after SIGKILL: giving up on them")
                        break
                else:
                    self.drain(pipes, plan, index)
                    break
                self.state.flush(now)
                # While a pipe rests, its next read comes within BATCH_INTERVAL: the state is
                # written then, rather than on a wakeup of its own.
                wakeups = [pipes.resume_at if pipes.resume_at is not None else self.state.due(), 1.0 + now]
                if self.stop_reason is None and self.deadline is not None:
                    wakeups.append(self.deadline)
                if killed_at is None and kill_at is not None:
                    wakeups.append(kill_at)
                elif killed_at is not None:
                    wakeups.append(min(now + 0.05, killed_at + UNKILLABLE_WAIT))
                timeout = max(0.0, min(w for w in wakeups if w is not None) - time.monotonic())
                for key, _ in self.selector.select(timeout):
                    if key.data == "wakeup":
                        self.signals.drain()
                    else:
                        self.handle_pipe(pipes, key.fd, key.data, plan, index, time.monotonic())
        finally:
            pipes.close_all()
            self.end_output(plan, index)

    def conclude(self, process, label, total):
        """The final status, from why the loop ended and how the last process exited."""
        code = process.returncode if process else None
        fields = {"exitCode": code if code is not None and code >= 0 else None,
                  "signal": -code if code is not None and code < 0 else None}
        if self.stop_reason == STOP_REQUESTED:
            return self.finish(CANCELED, "killed on request", **fields)
        if self.stop_reason == TIMED_OUT:
            return self.finish(ERROR, f"exceeded max run time of {self.max_run_time:g} s", timedOut=True, **fields)
        if code != 0 and self.cgroup is not None and self.cgroup.oom_killed():
            return self.finish(ERROR, f"out of memory: limit {self.cgroup.ram_mb} MB", oom=True, **fields)
        if self.runner_outcome and self.runner_outcome[0] == "error":
            return self.finish(ERROR, self.runner_outcome[1], **fields)
        if code == 0:
            # A runner's last word (CommandDone's reason) if it had one, else the last progress message.
            message = self.runner_outcome[1] if self.runner_outcome and self.runner_outcome[1] else None
            return self.finish(DONE, message, **fields)
        prefix = f"{label}: " if total > 1 else ""
        return self.finish(ERROR, prefix + _describe_exit(code), **fields)

    def finish(self, status, message, **fields):
        """Write the final state (message None: keep the last one), log it, remove the cgroup."""
        if status == DONE:
            fields["completion"] = 1.0
        if message is not None:
            fields["message"] = message
        if self.cgroup is not None:
            peak = self.cgroup.memory_peak()
            if peak is not None:
                self.state.merge_stats({"memoryPeakMb": round(peak / 1048576, 1)})
        self.state.update(status=status, endTime=time.time(), **fields)
        self.state.merge_stats(self.run_figures())
        self.state.flush(force=True)
        final_message = self.state.state["message"]
        name = {DONE: "DONE", ERROR: "ERROR", CANCELED: "CANCELED"}[status]
        self.log.note(f"{name}: {final_message}" if final_message else name)
        if self.cgroup is not None:
            self.cgroup.remove()

    def run_figures(self):
        """The worker's figures of the command, kept with it by the dispatcher: wall and CPU
        seconds (every process of the command, the cgroup's count where there is one) and why
        it ended."""
        state = self.state.state
        wall = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        cpu = cgroup_cpu_seconds(self.cgroup) if self.cgroup is not None else None
        if cpu is None:
            cpu = max(0.0, _children_cpu() - self.cpu_base) if self.cpu_base is not None else 0.0
        return {"wallSeconds": round(wall, 3), "cpuSeconds": round(cpu, 3),
                "exitCode": state.get("exitCode"), "signal": state.get("signal"),
                "oom": bool(state.get("oom")), "timedOut": bool(state.get("timedOut"))}

    # -- setting up -------------------------------------------------------------------------

    def write_pid(self):
        tmp = self.dir / f"watcher.pid.{os.getpid()}.tmp"
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.dir / "watcher.pid")

    def load_assignment(self):
        with open(self.dir / "assignment.json") as f:
            assignment = json.load(f)
        if not isinstance(assignment, dict) or "id" not in assignment:
            raise ValueError("assignment.json is not an object with an 'id'")
        self.assignment = assignment
        self.kill_grace = _number(assignment, "killGrace", DEFAULT_KILL_GRACE)
        self.max_run_time = _number(assignment, "maxRunTime", 0)
        self.log_max_bytes = int(_number(assignment, "logMaxBytes", 0) or DEFAULT_LOG_MAX_BYTES)
        return assignment

    def plan(self):
        a = self.assignment
        name = canonical_name(a.get("runner") or DEFAULT_RUNNER)
        arguments = dict(a.get("arguments") or {})
        if name in COMMAND_LINE_RUNNERS:
            runner = load_runner_class(name)()
            runner.validate(arguments)
            read = make_reader(a.get("parser") or arguments.get("parser"), arguments)
            return Plan(runner.runs(arguments), reports=False, read=read)
        # User code runs in a child process: it can be killed with its group, and cannot take
        # the watcher down with it.
        argv = [sys.executable, "-u", "-m", "puli.commandwatcher.child", str(self.dir / "assignment.json")]
        return Plan([Run(argv, f"runner {name}")], reports=True, read=None)

    def command_env(self):
        a = self.assignment
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (a.get("environment") or {}).items() if v is not None})
        env.update({
            "PULI_COMMAND_ID": str(a["id"]),
            "PULI_TASK_ID": str(a.get("taskId", "")),
            "PULI_TASK_NAME": str(a.get("taskName", "")),
            "PULI_JOB_ID": str(a.get("jobId", "")),
            "PULI_ALLOCATED_CORES": str(a.get("cores", "")),
            "PULI_ALLOCATED_MEMORY": str(a.get("ramUse", "")),
            "PULI_LOG": self.log.path,
            "PULI_ATTEMPT": str(a.get("attempt", "")),
        })
        return env

    # -- processes and their output ---------------------------------------------------------

    def reap(self, process):
        """Reap every exited child (the watcher, a subreaper, also adopts the command's
        orphans); note the leader's exit and whether any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children_left = False
                return
            if pid == 0:
                self.children_left = True
                return
            if pid == process.pid:
                process.exited(status)

    def handle_pipe(self, pipes, fd, kind, plan, index, now):
        """Read what a pipe holds, then let it rest (data), listen (empty) or close (end of file)."""
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            pipes.listen(fd)
            return
        if not chunk:
            pipes.close(fd)
            return
        if kind == "output":
            self.on_output(chunk, plan, index)
        else:
            self.on_reports(chunk)
        if len(chunk) < READ_SIZE // 4:
            pipes.rest(fd, now)
        else:
            pipes.listen(fd)        # a flood: keep up with it rather than make the command wait

    def drain(self, pipes, plan, index):
        """Once the tree is gone: read what is left in the pipes."""
        for fd, kind in list(pipes.kinds.items()):
            while True:
                try:
                    chunk = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break           # some process outside the tree holds the pipe: stop here
                if not chunk:
                    break
                (self.on_output(chunk, plan, index) if kind == "output" else self.on_reports(chunk))
            pipes.close(fd)

    def on_output(self, chunk, plan, index):
        data = self.pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut == 0 and len(data) < MAX_PARTIAL_LINE:
            self.pending = data
            return
        cut = cut or len(data)
        complete, self.pending = data[:cut], data[cut:]
        self.log.write(complete)
        self.parse(complete, plan, index)

    def end_output(self, plan, index):
        if self.pending:
            self.log.write(self.pending + b"\n")
            self.parse(self.pending, plan, index)
            self.pending = b""

    def parse(self, data, plan, index):
        if plan.read is None:
            return
        for raw in data.splitlines():
            if not raw:
                continue
            progress = plan.read(raw.decode("utf-8", "replace"))
            if progress is None:
                continue
            if progress.completion is not None:
                self.state.update(completion=round((index + progress.completion) / len(plan.runs), 6))
            if progress.message is not None:
                self.state.update(message=progress.message)
            if progress.stats:
                self.state.merge_stats(progress.stats)

    def on_reports(self, chunk):
        data = self.reports_pending + chunk
        *lines, self.reports_pending = data.split(b"\n")
        for line in lines:
            try:
                report = json.loads(line)
            except ValueError:
                self.log.note(f"unreadable report from the runner: {line[:200]!r}")
                continue
            if "outcome" in report:
                self.runner_outcome = (report["outcome"], str(report.get("message") or ""))
            if isinstance(report.get("completion"), (int, float)):
                self.state.update(completion=min(1.0, max(0.0, float(report["completion"]))))
            if "message" in report and "outcome" not in report:
                self.state.update(message=str(report["message"]))
            if isinstance(report.get("stats"), dict):
                self.state.merge_stats(report["stats"])


def _number(assignment, key, default):
    value = assignment.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    return value


def _children_cpu():
    """User + system seconds of the watcher's reaped descendants (a subreaper: orphans too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cgroup_cpu_seconds(cgroup):
    """CPU seconds the cgroup's processes used (cgroup v2 cpu.stat, v1 cpuacct.usage); None
    where the kernel does not count them there."""
    unified = cgroup.paths.get("unified")
    if unified is not None:
        try:
            with open(unified / "cpu.stat") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
        except (OSError, ValueError):
            pass
    for key in ("cpuacct", "cpu"):
        path = cgroup.paths.get(key)
        if path is None:
            continue
        try:
            with open(path / "cpuacct.usage") as f:
                return int(f.read().strip()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def _describe_exit(code):
    if code is None:
        return "not reaped"
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by signal {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _shown(argv):
    # Only for the log: the argv as a user would type it.
    return shlex.join(argv)
