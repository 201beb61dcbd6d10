"""Graph.execute(): run a graph on this machine, without a farm.

Each command runs under the real commandwatcher (``python -m puli.commandwatcher <dir>`` in the
foreground, with an ``assignment.json`` like the worker's), so the runners, frame substitution,
progress parsing, ``maxRunTime`` and process-tree killing are the farm's. Commands run one at a
time, in submission order, each once every dependency of its task and of the task's groups is
satisfied (the same rules as the dispatcher: a target in one of the listed node statuses); a
failed command is retried at once while it has attempts left (``maxAttempt``). Arguments and
environment are merged as on the farm (command > task > inner group > outer group). Timers,
pools, licenses and resource requests do not apply here.

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
from datetime import timedelta

from puli.commandwatcher.state import read as read_state
from puli.model.status import CommandStatus as CS, NodeStatus, N_COMMAND_STATUSES, node_status

from .errors import GraphExecError
from .graph import check_cycles

POLL = 0.1          # s between two reads of a running command's log


class _Node:
    def __init__(self, index, raw, parent):
        self.index = index
        self.name = raw.get("name", str(index))
        self.kind = raw.get("type", "Task")
        self.raw = raw
        self.parent = parent
        self.children = []
        self.dependencies = []          # (target index, statuses)
        self.commands = []

    def ancestors(self):
        node = self
        while node is not None:
            yield node
            node = node.parent


class _Command:
    def __init__(self, number, task, description, arguments):
        self.number = number
        self.task = task
        self.description = description
        self.arguments = arguments
        self.status = CS.READY
        self.attempt = 0
        self.message = ""


def _merged(task, field):
    out = {}
    for node in reversed(list(task.ancestors())):
        out.update(node.raw.get(field) or {})
    return out


def _build(data):
    tasks = data["tasks"]
    root_index = data.get("root", 0)
    nodes = {}
    stack = [(root_index, None)]
    order = []
    while stack:
        index, parent = stack.pop(0)
        raw = tasks[index]
        node = nodes[index] = _Node(index, raw, parent)
        order.append(node)
        if parent is not None:
            parent.children.append(node)
        children = (raw.get("tasks") or []) if node.kind == "TaskGroup" else []
        stack[0:0] = [(child, node) for child in children]
    commands = []
    for node in order:
        for dep in node.raw.get("dependencies") or ():
            target, statuses = dep[0], (dep[1] if len(dep) > 1 else [int(NodeStatus.DONE)])
            if not isinstance(target, int):
                raise GraphExecError(f"{node.name!r} depends on node {target.get('nodeId', target)} of the farm: "
                                     f"a graph with dependencies on other jobs cannot run locally")
            if target != node.index:
                node.dependencies.append((target, frozenset(int(s) for s in statuses)))
        if node.kind != "Task":
            continue
        base = _merged(node, "arguments")
        for raw in node.raw.get("commands") or [{"description": node.name, "arguments": node.raw.get("arguments")}]:
            arguments = dict(base, **(raw.get("arguments") or {}))
            command = _Command(len(commands) + 1, node, raw.get("description") or node.name, arguments)
            node.commands.append(command)
            commands.append(command)
    return nodes, order, commands


class _Run:
    def __init__(self, data, log_dir, verbose, stream):
        self.data = data
        self.nodes, self.order, self.commands = _build(data)
        self.root = self.nodes[data.get("root", 0)]
        self.own_log_dir = log_dir is None
        self.log_dir = os.path.abspath(log_dir) if log_dir else tempfile.mkdtemp(prefix="puli-local-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.user = data.get("user") or ""

    # -- statuses, as the dispatcher derives them ------------------------------------------------

    def counts(self, node):
        counts = [0] * N_COMMAND_STATUSES
        stack = [node]
        while stack:
            n = stack.pop()
            for command in n.commands:
                counts[command.status] += 1
            stack.extend(n.children)
        return counts

    def status(self, node):
        return int(node_status(self.counts(node), False))

    def satisfied(self, task):
        return all(self.status(self.nodes[target]) in statuses
                   for node in task.ancestors() for target, statuses in node.dependencies)

    def refresh(self):
        """BLOCKED <-> READY for the commands not run yet, until nothing changes."""
        for _ in range(len(self.commands) + 1):
            changed = False
            for command in self.commands:
                if command.status in (CS.READY, CS.BLOCKED):
                    wanted = CS.READY if self.satisfied(command.task) else CS.BLOCKED
                    if wanted != command.status:
                        command.status = wanted
                        changed = True
            if not changed:
                return

    # -- running -------------------------------------------------------------------------------

    def say(self, text):
        if self.verbose:
            self.stream.write(text + "\n")
            self.stream.flush()

    def run(self):
        started = time.time()
        self.say(f"Executing {len(self.commands)} command(s) of {self.data.get('name') or self.root.name!r} locally "
                 f"(logs in {self.log_dir})")
        interrupted = False
        try:
            while True:
                self.refresh()
                command = next((c for c in self.commands if c.status == CS.READY), None)
                if command is None:
                    break
                self.execute(command)
                if command.status == CS.CANCELED:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            for command in self.commands:
                if command.status in (CS.READY, CS.BLOCKED, CS.RUNNING):
                    command.status = CS.CANCELED
        return self.summary(started)

    def execute(self, command):
        task = command.task.raw
        max_attempt = max(1, int(task.get("maxAttempt") or 1))
        while True:
            command.attempt += 1
            command.status = CS.RUNNING
            label = f"[{command.number}/{len(self.commands)}] {command.description}"
            if command.attempt > 1:
                label += f" (attempt {command.attempt}/{max_attempt})"
            self.say(f"--- {label}")
            began = time.monotonic()
            state = self.watch(command)
            status = state.get("status") if state else None
            command.message = (state or {}).get("message") or ""
            if status == CS.DONE:
                command.status = CS.DONE
            elif status == CS.CANCELED:
                command.status = CS.CANCELED
            else:
                command.status = CS.ERROR
                if status is None:
                    command.message = "the commandwatcher ended without a final state"
            took = timedelta(seconds=round(time.monotonic() - began))
            suffix = f": {command.message}" if command.message and command.status != CS.DONE else ""
            self.say(f"--- {command.description} {command.status.name} in {took}{suffix}")
            if command.status != CS.ERROR or command.attempt >= max_attempt:
                return

    def watch(self, command):
        """Run one attempt under the commandwatcher, copying its log to the stream as it grows."""
        run_dir = os.path.join(self.log_dir, ".run", f"{command.number}-{command.attempt}")
        os.makedirs(run_dir, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", command.description)[:80]
        log_path = os.path.join(self.log_dir, f"{command.number:04d}-{safe}.log")
        task = command.task
        environment = {str(k): str(v) for k, v in _merged(task, "environment").items()}
        environment.update({"PULI_USER": self.user, "PULI_LOCAL": "1"})
        assignment = {
            "id": command.number,
            "assignment": command.attempt,
            "description": command.description,
            "runner": task.raw.get("runner") or "puli.commandwatcher.runners.DefaultCommandRunner",
            "arguments": command.arguments,
            "environment": environment,
            "validationExpression": task.raw.get("validationExpression") or "",
            "taskName": task.name,
            "taskId": task.index,
            "jobId": 0,
            "maxRunTime": task.raw.get("maxRunTime") or 0,
            "logPath": log_path,
            "logMaxBytes": 1 << 40,         # no rotation under the reader's feet
            "killGrace": 5,
            "attempt": command.attempt,
        }
        with open(os.path.join(run_dir, "assignment.json"), "w") as f:
            json.dump(assignment, f)
        process = subprocess.Popen([sys.executable, "-m", "puli.commandwatcher", run_dir])
        offset = 0
        try:
            while True:
                ended = process.poll() is not None
                offset = self.copy_log(log_path, offset, final=ended)
                if ended:
                    break
                time.sleep(POLL)
        except KeyboardInterrupt:
            # The watcher has the terminal's SIGINT too; make sure it stops, then wait for its end.
            self._stop(process)
            offset = self.copy_log(log_path, offset, final=True)
        state = read_state(os.path.join(run_dir, "state.json"))
        shutil.rmtree(run_dir, ignore_errors=True)
        return state

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
            # Impatient: a further stop order makes the watcher kill the command's tree at once.
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
        by_status = {}
        for command in self.commands:
            by_status[command.status] = by_status.get(command.status, 0) + 1
        final = self.status(self.root)
        shutil.rmtree(os.path.join(self.log_dir, ".run"), ignore_errors=True)
        lines = ["---------------------", f"FINISHED: {NodeStatus(final).name}", "  Commands result:",
                 f"      DONE........ {by_status.get(CS.DONE, 0)}",
                 f"      ERROR....... {by_status.get(CS.ERROR, 0)}",
                 f"      CANCELED.... {by_status.get(CS.CANCELED, 0)}"]
        if by_status.get(CS.BLOCKED):
            lines.append(f"      BLOCKED..... {by_status[CS.BLOCKED]} (their dependencies were never satisfied)")
        lines += [f"  Elapsed time: {timedelta(seconds=int(time.time() - started))}",
                  f"  Logs:         {self.log_dir}", "---------------------"]
        self.say("\n".join(lines))
        self.results = {c.number: (c.description, int(c.status), c.message) for c in self.commands}
        return final


def execute_graph(data, log_dir=None, verbose=True, stream=None):
    """Run a graph given in the wire format; return the job's final node status (an int)."""
    check_cycles(data)
    return _Run(data, log_dir, verbose, stream).run()
