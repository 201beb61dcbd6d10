"""Graph.execute(): run a graph on this machine, on a farm of one render node, without a dispatcher.

The graph goes through the farm's own model: it is parsed and built as the dispatcher does
(puli.model.graph, puli.model.build), published in a fresh in-memory Farm, and dispatched by the
real scheduler (puli.scheduler.dispatch) to one local render node. So dependencies (on tasks and
groups, with their statuses), retries (``maxAttempt``; at once here), timers (the run waits for
them), argument and environment inheritance, ``maxRN`` and the job's final status are the
farm's. Each assignment runs under the real commandwatcher (``python -m puli.commandwatcher
<dir>`` in the foreground, with the worker's ``assignment.json``), so runners, frame
substitution, progress parsing, ``maxRunTime`` and process-tree killing are the farm's too; its
final state is reported to the model as a worker reports it.

What chooses among render nodes has only this one to choose from: it is in the job's pool, every
license the graph names has one token, it has the cores and RAM the largest task asks for, and
requirements, quarantine and a job's errors per node do not exclude it; a job submitted paused
runs. Commands run one at a time. Dependencies on other jobs' nodes cannot be met here: such a
graph is refused. Ctrl-C stops the running command and cancels the rest.

The command's output is copied to the terminal as it comes, and kept in a log file per command
under ``logDir`` (a new temporary directory by default, printed at the end).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta

from puli.commandwatcher.state import read as read_state
from puli.model import job_operations
from puli.model.build import build_job
from puli.model.errors import FarmError
from puli.model.farm import Farm
from puli.model.graph import parse_graph
from puli.model.outbox import Assign
from puli.model.pool_admin import set_license
from puli.model.status import CommandStatus as CS, NodeStatus
from puli.model.worker_protocol import command_update, register
from puli.scheduler.dispatch import dispatch

from .errors import GraphExecError
from .graph import check_cycles

POLL = 0.1              # s between two reads of a running command's log
RENDER_NODE = "localhost"
LOG_MAX_BYTES = 1 << 40  # no rotation under the reader's feet
KILL_GRACE = 5


def publish(data, now):
    """The graph (wire format) as a job of a new Farm with one local render node: (farm, job).
    Raises GraphExecError when the dispatcher would refuse it, or it cannot run here."""
    check_cycles(data)
    try:
        spec = parse_graph(data)
        for node in spec.nodes.values():
            for target, _ in node.dependencies:
                if isinstance(target, tuple):
                    raise GraphExecError(f"{node.fields['name']!r} depends on node {target[1]} of the farm: "
                                         f"a graph with dependencies on other jobs cannot run locally")
        # No render node goes silent nor collects errors for several jobs here: those rules
        # would only take the one node away from the job.
        farm = Farm(retry_delay=0, job_rn_error_limit=0, quarantine_threshold=0)
        job = build_job(farm, spec, now)
        tasks = list(job.tasks())
        for task in tasks:
            task.requirements = {}      # they choose among render nodes; the user chose this one
        farm.publish(job, now)
        if job.paused:
            job_operations.pause(farm, job, False, now)     # nobody would resume it
        for name in sorted({name for task in tasks for name in task.licenses}):
            set_license(farm, name, 1)
        info = {"cores": max([1, *(task.min_cores for task in tasks)]),
                "ram": max([0, *(task.ram_use for task in tasks)]),
                "pools": [job.share.pool.name]}
        register(farm, RENDER_NODE, info, [], now)
    except FarmError as exc:
        raise GraphExecError(str(exc)) from None
    return farm, job


class LocalRun:
    """One local run of a graph: `run()` returns the job's final node status (an int)."""

    def __init__(self, data, log_dir=None, verbose=True, stream=None):
        self.farm, self.job = publish(data, time.time())
        self.total = sum(self.job.counts)
        self.log_dir = os.path.abspath(log_dir) if log_dir else tempfile.mkdtemp(prefix="puli-local-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.waiting_for = None         # the timer the run last said it waits for

    def say(self, text):
        if self.verbose:
            self.stream.write(text + "\n")
            self.stream.flush()

    def run(self):
        started = time.time()
        self.say(f"Executing {self.total} command(s) of {self.job.name!r} locally (logs in {self.log_dir})")
        try:
            while self.step():
                pass
        except KeyboardInterrupt:
            self.cancel()
        return self.summary(started)

    def step(self):
        """Retries due, one dispatch pass, and what it assigned run to their end; False once
        nothing more can run (or the run was stopped)."""
        farm = self.farm
        now = time.time()
        farm.process_retries(now)
        dispatch(farm, now)
        assigned = [item for item in farm.take_outbox() if isinstance(item, Assign)]
        for item in assigned:
            if not self.execute(item):
                self.cancel()
                return False
        if assigned:
            return True
        wake, what = self.next_start(now)
        if wake is None:
            return False
        if wake != self.waiting_for:
            self.waiting_for = wake
            self.say(f"--- waiting until {datetime.fromtimestamp(wake):%Y-%m-%d %H:%M:%S} for {what}")
        time.sleep(max(0.0, wake - time.time()))
        return True

    def next_start(self, now):
        """(when, what): the earliest time a READY command waiting for a timer, or a retry not due
        yet, may start; (None, None) when nothing is left that could ever start."""
        times = [(self.farm.retries[0][0], "a retry")] if self.farm.retries else []
        for task in self.job.tasks():
            if task.counts[CS.READY]:
                # The task starts once the timers of the task and of its groups have all passed.
                timers = [(n.timer, n.name) for n in task.ancestors() if n.parent is not None and n.timer is not None]
                latest = max(timers, default=None)
                if latest is not None and latest[0] > now:
                    times.append((latest[0], f"the timer of {latest[1]!r}"))
        return min(times) if times else (None, None)

    def cancel(self):
        """Ctrl-C: what has not finished is CANCELED, as a user cancelling the job on the farm."""
        job_operations.cancel(self.farm, self.job, time.time())
        self.farm.take_outbox()         # Stop orders: the command is stopped already

    # -- one assignment ----------------------------------------------------------------------

    def execute(self, item):
        """Run one assignment and report its end to the farm; False when it was stopped."""
        cmd = item.command
        label = f"[{cmd.id}/{self.total}] {cmd.description}"
        if cmd.attempt:
            label += f" (attempt {cmd.attempt + 1}/{cmd.task.max_attempt})"
        self.say(f"--- {label}")
        began = time.monotonic()
        state, interrupted = self.watch(item)
        status = (state or {}).get("status")
        if status == CS.CANCELED or (interrupted and status not in (CS.DONE, CS.ERROR)):
            # Stopped from the terminal (a detached run's watcher gets the Ctrl-C itself): the
            # user stops the run; it is not a node losing the command, to be run again.
            if interrupted:
                raise KeyboardInterrupt
            return False
        if status in (CS.DONE, CS.ERROR):
            report = {"status": status, "completion": state.get("completion"), "message": state.get("message")}
        else:
            report = {"status": CS.ERROR, "message": "the commandwatcher ended without a final state"}
        command_update(self.farm, RENDER_NODE, cmd.id, dict(report, assignment=item.assignment), time.time())
        took = timedelta(seconds=round(time.monotonic() - began))
        suffix = f": {cmd.message}" if cmd.message and cmd.status != CS.DONE else ""
        self.say(f"--- {cmd.description} {cmd.status.name} in {took}{suffix}")
        if interrupted:
            raise KeyboardInterrupt
        return True

    def watch(self, item):
        """Run the assignment under the commandwatcher, copying its log to the stream as it grows.
        Returns (its final state or None, whether a Ctrl-C came)."""
        cmd = item.command
        run_dir = os.path.join(self.log_dir, ".run", f"{cmd.id}-{item.assignment}")
        os.makedirs(run_dir, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cmd.description)[:80]
        log_path = os.path.join(self.log_dir, f"{cmd.id:04d}-{safe}.log")
        # What the worker adds to the body (puli.worker.watchers.spawn), for this machine.
        assignment = dict(item.body(), logPath=log_path, logMaxBytes=LOG_MAX_BYTES, killGrace=KILL_GRACE,
                          cgroup=None)
        with open(os.path.join(run_dir, "assignment.json"), "w") as f:
            json.dump(assignment, f)
        offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0   # a retry appends
        process = subprocess.Popen([sys.executable, "-m", "puli.commandwatcher", run_dir],
                                   env=dict(os.environ, PULI_LOCAL="1"))
        interrupted = False
        try:
            command_update(self.farm, RENDER_NODE, cmd.id, {"assignment": item.assignment, "status": CS.RUNNING},
                           time.time())
            while True:
                ended = process.poll() is not None
                offset = self.copy_log(log_path, offset, final=ended)
                if ended:
                    break
                time.sleep(POLL)
        except KeyboardInterrupt:
            # The watcher has the terminal's SIGINT too; make sure it stops, then wait for its end.
            interrupted = True
            self._stop(process)
            offset = self.copy_log(log_path, offset, final=True)
        state = read_state(os.path.join(run_dir, "state.json"))
        shutil.rmtree(run_dir, ignore_errors=True)
        return state, interrupted

    def _stop(self, process):
        """After a Ctrl-C: the watcher, in our process group, has it too and is stopping its
        command; tell it ourselves if it is still there after a moment (a second stop order, or
        a second Ctrl-C, kills the command at once)."""
        try:
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)
                process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGTERM)
            process.wait()

    def copy_log(self, path, offset, final=False):
        """Copy what the command printed since `offset` (whole lines; the rest once `final`),
        leaving out the watcher's own `[puli]` lines: they stay in the log file."""
        if not self.verbose:
            return offset
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset
        cut = len(data) if final else data.rfind(b"\n") + 1
        lines = [line for line in data[:cut].splitlines(keepends=True) if not line.startswith(b"[puli] ")]
        if lines:
            text = b"".join(lines).decode("utf-8", "replace")
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()
        return offset + cut

    def summary(self, started):
        counts = self.job.counts
        final = int(self.job.status)
        shutil.rmtree(os.path.join(self.log_dir, ".run"), ignore_errors=True)
        lines = ["---------------------", f"FINISHED: {NodeStatus(final).name}", "  Commands result:",
                 f"      DONE........ {counts[CS.DONE]}",
                 f"      ERROR....... {counts[CS.ERROR]}",
                 f"      CANCELED.... {counts[CS.CANCELED]}"]
        if counts[CS.BLOCKED]:
            lines.append(f"      BLOCKED..... {counts[CS.BLOCKED]} (their dependencies were never satisfied)")
        if counts[CS.READY]:
            lines.append(f"      READY....... {counts[CS.READY]} (they could not start here)")
        lines += [f"  Elapsed time: {timedelta(seconds=int(time.time() - started))}",
                  f"  Logs:         {self.log_dir}", "---------------------"]
        self.say("\n".join(lines))
        return final
