"""The commandwatcher: runs one command for the worker and reports on it in state.json.

Usage: ``python -m puli.commandwatcher <command dir>`` (or ``puli-commandwatcher``), where the
directory holds the worker's ``assignment.json``. The watcher writes ``watcher.pid`` and
``state.json`` there and the command's log at ``logPath``. SIGTERM stops the command (its whole
tree: SIGTERM, then SIGKILL after ``killGrace`` s; a second SIGTERM kills at once) and ends with
status CANCELED. See DESIGN.md, "The worker and the commandwatcher".

The watcher loads the assignment, plans the command's steps, runs them one after the other (each
supervised until its whole tree is gone and its output read), concludes a final status and
finishes with the final state.
"""
import argparse
import logging
import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from puli.commandwatcher.assignment import Assignment, read_fields
from puli.commandwatcher.command import CommandProcess, become_subreaper
from puli.commandwatcher.figures import Figures
from puli.commandwatcher.isolation import CommandCgroup, IsolationError, detect
from puli.commandwatcher.logs import CommandLog, LogHandler
from puli.commandwatcher.output import CommandOutput, RunnerReports, apply_progress
from puli.commandwatcher.pipes import Pipes
from puli.commandwatcher.plan import make_plan
from puli.commandwatcher import private
from puli.commandwatcher.progress import Progress, UnknownParser
from puli.commandwatcher.runner import RunnerLoadError, ValidationError
from puli.commandwatcher.signals import Signals
from puli.commandwatcher.state import CANCELED, DONE, ERROR, StateFile
from puli.commandwatcher.supervisor import ABANDONED, GONE, STOP_REQUESTED, TIMED_OUT, Supervisor

ASSIGNMENT = "assignment.json"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="puli-commandwatcher",
                                     description="Run one Puli command and report it in <command dir>/state.json.")
    parser.add_argument("command_dir", help="directory holding the worker's assignment.json")
    args = parser.parse_args(argv)
    directory = Path(args.command_dir)
    # First of all, so that a stop order arriving while we start up is not lost.
    signals = Signals()
    write_pid(directory)
    fields = {}
    try:
        fields = read_fields(directory / ASSIGNMENT)
        assignment = Assignment(fields)
        log = CommandLog(assignment.log_path or directory / "command.log", assignment.log_max_bytes)
    except (OSError, ValueError) as exc:
        return refuse(directory, fields, exc)
    return Watcher(directory, assignment, signals, log).run()


def write_pid(directory):
    private.write_atomically(directory / "watcher.pid", f"{os.getpid()}\n".encode())


def refuse(directory, fields, exc):
    """An assignment that cannot be run, and no log to write to: say it where the worker looks,
    and on stderr for a person. The exit status."""
    state = StateFile(directory / "state.json", fields.get("id"), fields.get("assignment"))
    state.update(status=ERROR, message=f"bad assignment: {exc}", endTime=time.time())
    state.flush(force=True)
    print(f"puli-commandwatcher: bad assignment in {directory}: {exc}", file=sys.stderr)
    return 2


class Watcher:
    """One command, from its assignment to its final state."""

    def __init__(self, directory, assignment, signals, log):
        self.dir = directory
        self.assignment = assignment
        self.signals = signals
        self.log = log
        self.state = StateFile(directory / "state.json", assignment.id, assignment.number)
        # One selector for the whole command: the signals' wakeup, then each step's pipes.
        self.selector = selectors.DefaultSelector()
        self.selector.register(signals.wakeup_fd, selectors.EVENT_READ, "wakeup")
        self.supervisor = Supervisor(signals, log, assignment.kill_grace, assignment.max_run_time)
        self.figures = Figures()
        self.cgroup = None              # the command's cgroup, once opened from the assignment's
        self.reports = None             # a Python runner child's reports, where the plan has them

    # -- the command, top to bottom -----------------------------------------------------------

    def run(self):
        """The exit status: 0 once the final state is written, 1 on a watcher failure."""
        logging.getLogger("puli").addHandler(LogHandler(self.log))
        logging.getLogger("puli").setLevel(logging.INFO)
        a = self.assignment
        self.log.note(f"watcher pid {os.getpid()} for command {a.id} (assignment {a.number}, "
                      f"attempt {a.attempt}), runner {a.runner}")
        self.state.flush()
        try:
            become_subreaper()
            self.execute()
        except Exception as exc:    # a watcher bug must still end in a final state, with its traceback
            self.log.note("watcher failure:\n" + traceback.format_exc())
            self.supervisor.kill()
            self.finish(ERROR, f"watcher failure: {type(exc).__name__}: {exc}")
            return 1
        finally:
            self.log.close()
        return 0

    def execute(self):
        """Plan the steps, run them while they succeed, conclude."""
        try:
            plan = make_plan(self.assignment, self.dir / ASSIGNMENT)
        except (RunnerLoadError, ValidationError, UnknownParser) as exc:
            message = f"invalid arguments: {exc}" if isinstance(exc, ValidationError) else str(exc)
            return self.finish(ERROR, message)
        if self.assignment.cgroup:
            try:
                self.cgroup = CommandCgroup.from_description(self.assignment.cgroup)
            except (IsolationError, KeyError, TypeError, AttributeError) as exc:
                return self.finish(ERROR, f"bad cgroup in the assignment: {exc!r}")
        elif self.assignment.cgroup_limits:
            try:
                self.cgroup = own_command_cgroup(self.assignment.cgroup_limits)
            except (IsolationError, OSError, TypeError, ValueError, AttributeError) as exc:
                return self.finish(ERROR, f"cannot make the command's cgroup: {exc}")
            self.log.note(f"command cgroup {self.cgroup.paths['unified']}")
        if plan.reports:
            self.reports = RunnerReports(self.log, self.state)
        env = self.assignment.command_env(self.log.path)
        count = len(plan.steps)
        process, label = None, ""
        for index, step in enumerate(plan.steps):
            if self.supervisor.stopped_before_start():
                break
            self.figures.start()
            try:
                process = CommandProcess(step.argv, env, cgroup=self.cgroup, reports=plan.reports,
                                         umask=self.assignment.umask)
            except (OSError, subprocess.SubprocessError) as exc:
                return self.finish(ERROR, f"cannot start {step.label}: {exc}")
            label = step.label
            self.run_step(step, process, CommandOutput(self.log, self.state, plan.read, index, count), count)
            if self.supervisor.stop_reason or process.returncode != 0:
                break
            apply_progress(self.state, Progress(completion=(index + 1) / count))
        self.conclude(process, label, count)

    def run_step(self, step, process, output, count):
        """One step's process, supervised until it and its whole tree are gone."""
        self.supervisor.watch(process)
        self.log.note(f"started {step.label}, pid {process.pid}: {_shown(step.argv)}")
        self.state.update(commandPgid=process.pgid)
        if count > 1:
            apply_progress(self.state, Progress(message=step.label))
        try:
            self.supervise(process, output)
        finally:
            process.close()
        self.log.note(f"{step.label} ended: {describe_exit(process.returncode)}")

    def supervise(self, process, output):
        """The loop: read the pipes, let the supervisor act, write the state when due, sleep
        until the next thing to do; until the tree is gone (or given up on) and its output read."""
        handlers = {process.output_fd: output.feed}
        if process.reports_fd is not None:
            handlers[process.reports_fd] = self.reports.feed
        pipes = Pipes(self.selector, handlers)
        try:
            while True:
                now = time.monotonic()
                pipes.read_due(now)
                tree = self.supervisor.check(now)
                if tree == GONE:
                    pipes.drain()
                    break
                if tree == ABANDONED:
                    break
                self.state.flush(now)
                # While a pipe rests, its next read comes within BATCH_INTERVAL: the state is
                # written then, rather than on a wakeup of its own.
                wakeups = [pipes.resume_at if pipes.resume_at is not None else self.state.due(), 1.0 + now,
                           self.supervisor.wakeup(now)]
                timeout = max(0.0, min(w for w in wakeups if w is not None) - time.monotonic())
                for key, _ in self.selector.select(timeout):
                    if key.data == "wakeup":
                        self.signals.drain()
                    else:
                        pipes.read(key.fd, time.monotonic())
        finally:
            pipes.close_all()
            output.end()

    def conclude(self, process, label, count):
        """The final status, from why the loop ended and how the last process exited."""
        code = process.returncode if process else None
        fields = {"exitCode": code if code is not None and code >= 0 else None,
                  "signal": -code if code is not None and code < 0 else None}
        stop_reason = self.supervisor.stop_reason
        outcome = self.reports.outcome if self.reports is not None else None
        if stop_reason == STOP_REQUESTED:
            return self.finish(CANCELED, "killed on request", **fields)
        if stop_reason == TIMED_OUT:
            return self.finish(ERROR, f"exceeded max run time of {self.assignment.max_run_time:g} s",
                               timedOut=True, **fields)
        if code != 0 and self.cgroup is not None and self.cgroup.oom_killed():
            return self.finish(ERROR, f"out of memory: limit {self.cgroup.ram_mb} MB", oom=True, **fields)
        if outcome and outcome[0] == "error":
            return self.finish(ERROR, outcome[1], **fields)
        if code == 0:
            # A runner's last word (CommandDone's reason) if it had one, else the last progress message.
            return self.finish(DONE, outcome[1] if outcome and outcome[1] else None, **fields)
        prefix = f"{label}: " if count > 1 else ""
        return self.finish(ERROR, prefix + describe_exit(code), **fields)

    def finish(self, status, message, **fields):
        """Write the final state (message None: keep the last one), log it, remove the cgroup."""
        if status == DONE:
            fields["completion"] = 1.0
        if message is not None:
            fields["message"] = message
        self.state.update(status=status, endTime=time.time(), **fields)
        self.state.merge_stats(self.figures.stats(self.state.state, self.cgroup), bounded=False)
        self.state.flush(force=True)
        if self.state.stats_refused > 1:
            self.log.note(f"{self.state.stats_refused} stats updates ignored in all")
        final_message = self.state.state["message"]
        name = {DONE: "DONE", ERROR: "ERROR", CANCELED: "CANCELED"}[status]
        self.log.note(f"{name}: {final_message}" if final_message else name)
        if self.cgroup is not None:
            self.cgroup.remove()


def own_command_cgroup(limits):
    """The command's cgroup, made inside the watcher's own delegated cgroup v2 (its transient
    unit's); the watcher moves itself into a `watcher` leaf beside it."""
    isolation = detect(leaf="watcher")
    if isolation.mode != "cgroup2":
        raise IsolationError(f"no delegated cgroup v2 here ({isolation!r})")
    return isolation.create("command", float(limits.get("cores") or 0), int(limits.get("ramMb") or 0),
                            limits.get("pidsMax") or None)


def describe_exit(code):
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
