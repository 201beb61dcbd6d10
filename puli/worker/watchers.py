"""The commandwatchers of this node: spawned one per assignment, adopted after a worker restart,
read through their state.json, stopped, and killed with their command when they die.

A command's directory, ``<data_dir>/commands/<id>/``, is the contract with the watcher
(puli/commandwatcher/main.py): the worker writes ``assignment.json``, the watcher writes
``watcher.pid`` and replaces ``state.json`` atomically. The directory outlives the worker, so a
restarted worker finds every run again; it is removed once the dispatcher has the final state.
The assignment holds the job's environment: the directory and its files are the worker's user's
alone (puli/commandwatcher/private.py), whatever the umask.
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from puli.commandwatcher import private
from puli.commandwatcher.state import RUN_ENDS
from puli.model.status import CommandStatus

from . import units

log = logging.getLogger("puli.worker.watchers")

WATCHER_MODULE = "puli.commandwatcher"
RUNNING = int(CommandStatus.RUNNING)
ERROR = int(CommandStatus.ERROR)
CANCELED = int(CommandStatus.CANCELED)
# After SIGTERM the watcher itself waits kill_grace before SIGKILL; past this margin on top we
# stop trusting it and kill everything ourselves.
STOP_MARGIN = 5.0
# The watcher gives every command process its log path in this variable: a unique mark.
COMMAND_LOG_VARIABLE = "PULI_LOG"
# Our notifications are for systemd about the worker, not for the commands.
PRIVATE_VARIABLES = ("NOTIFY_SOCKET", "PULI_NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class SpawnError(Exception):
    """A command could not be started here (its cgroup or its watcher); nothing was left behind."""


def detect_isolation(mode, root):
    """The isolation in use: the best the host allows for "auto", else exactly the one asked for.

    Raises ValueError when the host cannot give the mode asked for.
    """
    # Imported here: the commandwatcher package is only needed once the worker really starts.
    from puli.commandwatcher import isolation
    if mode == "pgroup":
        return isolation.Isolation("pgroup", root)
    if mode in ("auto", "systemd"):
        manager = units.UserManager.find(root)
        if manager is not None:
            return units.UnitIsolation(manager)
        if mode == "systemd":
            raise ValueError("isolation systemd was asked for, but this worker's user has no systemd "
                             "manager (is systemd PID 1? run: loginctl enable-linger <user>)")
    found = isolation.detect(root)
    if mode != "auto" and found.mode != mode:
        raise ValueError(f"isolation {mode} was asked for, but under {root} this worker can only "
                         f"use {found.mode}")
    return found


class Run:
    """One run of a command on this node: its directory, its watcher and what it last said."""

    def __init__(self, directory, assignment, process=None, watcher=None):
        self.dir = Path(directory)
        self.assignment = assignment            # assignment.json, as written for the watcher
        self.id = assignment["id"]
        self.number = assignment["assignment"]  # the dispatcher's fence for this run
        self.process = process                  # subprocess.Popen, when we started the watcher
        self.watcher = watcher                  # psutil.Process, when we adopted it
        self.state = {}
        self.stamp = None                       # state.json's (inode, mtime, size) when last read
        self.stop_reason = None
        self.stop_deadline = None               # monotonic time to stop trusting the watcher
        self.forget = False                     # stopped for the dispatcher: report nothing
        self.end_flush = None                   # its end is committed once the dispatcher's flush count reaches this

    @property
    def status(self):
        return self.state.get("status")

    @property
    def final(self):
        return self.status in RUN_ENDS

    def report(self):
        """The command update the dispatcher expects for this run's current state."""
        report = {"id": self.id, "assignment": self.number}
        for key in ("status", "completion", "message", "stats"):
            if self.state.get(key) is not None:
                report[key] = self.state[key]
        return report

    def watcher_pid(self):
        if self.process is not None:
            return self.process.pid
        return self.watcher.pid if self.watcher is not None else None

    def watcher_alive(self):
        if self.process is not None:
            return self.process.poll() is None      # reaps it, too: we are its parent
        if self.watcher is None:
            return False
        try:
            # is_running() compares the start time, so a recycled pid does not count.
            return self.watcher.is_running() and self.watcher.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class Watchers:
    """Spawns, adopts, reads, stops and cleans up command runs under ``commands_dir``."""

    def __init__(self, settings, isolation, worker_url):
        self.settings = settings
        self.isolation = isolation
        self.worker_url = worker_url
        self.commands_dir = Path(settings.data_dir) / "commands"
        # Made private, or tightened when an older version left them open to all.
        private.make_dirs(settings.data_dir, private.STATE_DIR)
        private.make_dirs(self.commands_dir, private.STATE_DIR)
        private.make_dirs(settings.log_dir, private.LOG_DIR)
        private.make_dirs(Path(settings.log_dir) / "commands", private.LOG_DIR)
        self.env = {k: v for k, v in os.environ.items() if k not in PRIVATE_VARIABLES}

    def log_path(self, task_id, command_id):
        return Path(self.settings.log_dir) / "commands" / str(task_id) / f"{command_id}.log"

    # -- starting ---------------------------------------------------------------------------

    def spawn(self, body):
        """Write the assignment and start its watcher; the Run, once the watcher is started.

        Raises SpawnError when it cannot be started; nothing is left behind then.
        """
        command_id, number = body["id"], body["assignment"]
        directory = self.commands_dir / str(command_id)
        if directory.exists():
            # Only a run we forgot without cleaning up leaves one: nothing reads it any more.
            log.warning("command %d: removing the leftover directory %s", command_id, directory)
            shutil.rmtree(directory)
        cgroup = None
        unit = units.unit_name(command_id, number) if self.isolation.mode == "systemd" else None
        if self.isolation.mode not in ("pgroup", "systemd"):
            from puli.commandwatcher.isolation import IsolationError
            try:
                cgroup = self.isolation.create(f"puli-{command_id}-{number}", body.get("cores") or 0,
                                               body.get("ramUse") or 0, self.settings.pids_max or None)
            except IsolationError as exc:
                raise SpawnError(str(exc)) from exc
        assignment = dict(
            body,
            logPath=str(self.log_path(body.get("taskId", 0), command_id)),
            logMaxBytes=self.settings.log_max_bytes,
            cgroup=cgroup.describe() if cgroup is not None else None,
            # Mode systemd: the watcher makes its command's cgroup in its unit's, with these.
            unit=unit,
            cgroupLimits={"cores": body.get("cores") or 0, "ramMb": body.get("ramUse") or 0,
                          "pidsMax": self.settings.pids_max or None} if unit else None,
            # The command's base environment (the task's own goes on top): the worker's, in
            # every mode, whoever started the watcher.
            baseEnvironment=self.env,
            killGrace=self.settings.kill_grace,
            umask=self.settings.command_umask,
            workerUrl=self.worker_url)
        try:
            directory.mkdir(private.STATE_DIR)
            _write_json(directory / "assignment.json", assignment)
            stderr_fd = private.open_private(directory / "watcher.stderr", os.O_WRONLY | os.O_TRUNC)
            argv = [sys.executable, "-m", WATCHER_MODULE, str(directory)]
            if unit is not None:
                os.close(stderr_fd)
                pid = self.isolation.manager.start(unit, argv, directory, directory / "watcher.stderr",
                                                   self.settings.kill_grace + STOP_MARGIN)
                try:
                    return Run(directory, assignment, watcher=psutil.Process(pid))
                except psutil.NoSuchProcess:
                    # Ended already: its state.json says how, or refresh() ends the run.
                    return Run(directory, assignment)
            with open(stderr_fd, "wb") as stderr:
                # A new session: the watcher and its command outlive the worker (a restart
                # must not kill renders) and never get the worker's terminal signals.
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                    env=self.env, cwd=directory, start_new_session=True)
        except OSError as exc:
            if unit is not None:
                self.isolation.manager.kill(unit)
            shutil.rmtree(directory, ignore_errors=True)
            if cgroup is not None:
                cgroup.remove()
            raise SpawnError(f"cannot start its watcher: {exc}") from exc
        return Run(directory, assignment, process=process)

    def adopt(self):
        """The runs a previous worker left in the data directory, live or finished."""
        watchers = _live_watchers()
        runs = []
        for directory in sorted(self.commands_dir.iterdir(), key=lambda p: p.name):
            _tighten_run(directory)
            try:
                assignment = _read_assignment(directory / "assignment.json")
            except (OSError, ValueError) as exc:
                # The worker died before it could start a watcher here: nothing ran.
                log.warning("removing %s: no readable assignment (%s)", directory, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            run = Run(directory, assignment, watcher=watchers.get(str(directory)))
            self.refresh(run)
            runs.append(run)
            log.info("command %d (assignment %d): found %s", run.id, run.number,
                     "its watcher running" if run.watcher else f"it ended, status {run.status}")
        return runs

    # -- following --------------------------------------------------------------------------

    def refresh(self, run):
        """Read state.json if it changed, and notice a watcher that died without a final state.

        True when the run's state changed. Costs one stat() when nothing happened.
        """
        changed = self._read_state(run)
        if run.final or run.watcher_alive():
            return changed
        # The watcher is gone: its last write may have landed after our read.
        self._read_state(run)
        if run.final:
            return True
        self.kill_command(run)
        code = run.process.returncode if run.process is not None else None
        why = f"exited with code {code}" if code is not None else "is gone"
        detail = _last_line(run.dir / "watcher.stderr")
        if run.stop_reason is not None:
            self.end(run, CANCELED, f"killed ({run.stop_reason})")
        else:
            self.end(run, ERROR, f"the commandwatcher {why} without a final state"
                                 + (f": {detail}" if detail else ""))
        log.error("command %d: %s", run.id, run.state["message"])
        return True

    def _read_state(self, run):
        path = run.dir / "state.json"
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return False
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp == run.stamp:
            return False
        try:
            state = json.loads(path.read_bytes())
        except FileNotFoundError:
            return False                    # replaced between stat and open: next time
        except ValueError as exc:
            log.warning("command %d: unreadable %s (%s)", run.id, path, exc)
            return False
        run.stamp = stamp
        if run.final and state.get("status") not in RUN_ENDS:
            return False                    # we already ended it ourselves
        run.state = state
        return True

    def end(self, run, status, message):
        """Give the run a final state of our own (its watcher could not)."""
        run.state = dict(run.state, status=status, message=message, endTime=time.time())

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, run, reason):
        """Ask the watcher to kill the command (it ends CANCELED); kill it ourselves without one."""
        if run.final or run.stop_reason is not None:
            return                          # once: a second SIGTERM makes the watcher skip the grace
        run.stop_reason = reason
        run.stop_deadline = time.monotonic() + self.settings.kill_grace + STOP_MARGIN
        log.info("command %d: stopping it (%s)", run.id, reason)
        pid = run.watcher_pid()
        if pid is not None and run.watcher_alive():
            _kill(pid, signal.SIGTERM)
        else:
            self.refresh(run)               # a dead watcher: kill_command and a final state

    def enforce_stop(self, run, now):
        """A watcher that did not stop its command in time: kill both ourselves."""
        if run.final or run.stop_deadline is None or now < run.stop_deadline:
            return False
        log.error("command %d: the watcher did not stop it within %g s: killing it",
                  run.id, self.settings.kill_grace + STOP_MARGIN)
        pid = run.watcher_pid()
        if pid is not None and run.watcher_alive():
            _kill(pid, signal.SIGKILL)
        self.kill_command(run)
        self.end(run, CANCELED, f"killed ({run.stop_reason})")
        return True

    def kill_command(self, run):
        """SIGKILL the command's whole tree, its watcher being gone: its cgroup, its process
        group, and any process still carrying its log path in its environment (a watcher that
        died early may not have written the group's id, and a process may have left the group)."""
        if run.assignment.get("unit") and self.isolation.mode == "systemd":
            self.isolation.manager.kill(run.assignment["unit"])
        description = run.assignment.get("cgroup")
        if description:
            from puli.commandwatcher.isolation import CommandCgroup
            cgroup = CommandCgroup.from_description(description)
            cgroup.kill()
            cgroup.remove()
        pgid = run.state.get("commandPgid")
        started = run.state.get("startTime") or 0
        # A group id from before the last boot may name someone else's processes now.
        if pgid and pgid > 1 and pgid != os.getpgrp() and started >= psutil.boot_time():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass                        # ESRCH: the group is already gone
        for process in _carrying(COMMAND_LOG_VARIABLE, run.assignment.get("logPath")):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

    def remove(self, run):
        """Forget a run for good: its directory goes (its log stays)."""
        shutil.rmtree(run.dir, ignore_errors=True)


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass                                # ESRCH: already gone


def _live_watchers():
    """{command directory: psutil.Process} of the commandwatchers running on this host."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if WATCHER_MODULE in cmdline and cmdline.index(WATCHER_MODULE) + 1 < len(cmdline):
            found[cmdline[cmdline.index(WATCHER_MODULE) + 1]] = process
    return found


def _read_assignment(path):
    assignment = json.loads(path.read_text())
    if not isinstance(assignment, dict) or not all(
            isinstance(assignment.get(key), int) for key in ("id", "assignment")):
        raise ValueError("no integer id and assignment")
    return assignment


def _carrying(variable, value):
    """The processes (of ours: others' environments are not readable) where variable=value."""
    if not value:
        return []
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(variable) == value:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _last_line(path):
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _write_json(path, data):
    private.write_atomically(path, json.dumps(data).encode())


def _tighten_run(directory):
    """A run directory an older version left readable to all: its user's alone now."""
    private.tighten(directory, private.STATE_DIR)
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    private.tighten(entry.path, private.STATE_FILE)
    except (NotADirectoryError, FileNotFoundError):
        pass
