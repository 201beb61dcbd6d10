"""OpenJDRunner: one command of an OpenJD step, run on the node as one OpenJD session.

The session's directory is made for the command: the job's then the step's environments are
entered (their variables set, their embedded files written, their onEnter actions run), the
step's embedded files are written and its onRun action runs, then the environments are exited
in reverse order (onExit, even after a failure) and the directory is removed. A node running
several commands of a step enters and exits the environments once per command. Format strings
are resolved here, with openjd-model, once the session's paths are known. Actions run as argv
lists, never through a shell.

Cancelation: the watcher's SIGTERM reaches the action (its process group is the command's);
TERMINATE kills it at once, NOTIFY_THEN_TERMINATE leaves it notifyPeriodInSeconds (capped by
the worker's kill_grace, after which the watcher kills the whole tree) before SIGKILL. An
action's timeout ends it the same way and fails the command.
"""
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from openjd.model import FormatStringError, SymbolTable, create_job

from puli.commandwatcher.progress import make_reader
from puli.commandwatcher.runner import CommandError, CommandRunner, Parameter
from puli.openjd import template as templates
from puli.openjd.errors import OpenJDError

DEFAULT_NOTIFY_PERIOD = 120         # OpenJD's default for NOTIFY_THEN_TERMINATE


class _Dict(Parameter):
    def validate(self, value):
        if not isinstance(value, dict):
            self.fail(f"expected an object, got {value!r}")
        return value


class OpenJDRunner(CommandRunner):
    openjd = _Dict(mandatory=True)          # {"template", "parameters"} (the job's arguments)
    openjdStep = Parameter(mandatory=True)
    openjdTask = _Dict(default={})

    def execute(self, arguments, updateCompletion, updateMessage):
        try:
            decoded = templates.decode(arguments["openjd"]["template"])
            values = templates.values_from_wire(arguments["openjd"]["parameters"])
            job = create_job(job_template=decoded, job_parameter_values=values)
        except (OpenJDError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot instantiate the OpenJD job: {exc}") from None
        step = next((s for s in job.steps if s.name == arguments["openjdStep"]), None)
        if step is None:
            raise CommandError(f"the template has no step {arguments['openjdStep']!r}")
        session = Session(values, arguments.get("openjdTask") or {}, updateCompletion, updateMessage)
        environments = list(job.jobEnvironments or ()) + list(step.stepEnvironments or ())
        try:
            session.run(environments, step.script)
        finally:
            session.close()


class Session:
    def __init__(self, values, task_values, on_completion, on_message):
        self.dir = tempfile.mkdtemp(prefix="puli-openjd-")
        self.env = dict(os.environ)
        self.on_completion = on_completion
        self.on_message = on_message
        self.read = make_reader(None, {})
        self.symbols = {"Session.WorkingDirectory": self.dir, "Session.HasPathMappingRules": "false",
                        "Session.PathMappingRulesFile": os.path.join(self.dir, "path-mapping.json")}
        for name, value in values.items():
            self.symbols[f"Param.{name}"] = self.symbols[f"RawParam.{name}"] = str(value.value)
        for name, value in task_values.items():
            self.symbols[f"Task.Param.{name}"] = self.symbols[f"Task.RawParam.{name}"] = str(value["value"])

    def resolve(self, text, where):
        try:
            return text.resolve(symtab=SymbolTable(source=self.symbols))
        except FormatStringError as exc:
            raise CommandError(f"{where}: {exc}") from None

    def files(self, embedded, prefix, where):
        """Write embedded files into the session's directory; their paths become {prefix}.File.<name>."""
        directory = os.path.join(self.dir, prefix.lower())
        os.makedirs(directory, exist_ok=True)
        for item in embedded or ():
            path = os.path.join(directory, os.path.basename(item.filename or item.name))
            self.symbols[f"{prefix}.File.{item.name}"] = path
        for item in embedded or ():
            path = self.symbols[f"{prefix}.File.{item.name}"]
            with open(path, "w") as f:
                f.write(self.resolve(item.data, f"{where}.embeddedFiles[{item.name}]"))
            if item.runnable:
                os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)

    def run(self, environments, script):
        entered = []
        error = None
        try:
            for env in environments:
                where = f"environment {env.name}"
                for name, value in (env.variables or {}).items():
                    self.env[name] = self.resolve(value, f"{where}.variables.{name}")
                if env.script is not None:
                    self.files(env.script.embeddedFiles, "Env", where)
                entered.append(env)
                if env.script is not None and env.script.actions.onEnter is not None:
                    self.action(env.script.actions.onEnter, f"{where} onEnter")
            self.files(script.embeddedFiles, "Task", "step")
            self.action(script.actions.onRun, "onRun")
        except CommandError as exc:
            error = exc
        for env in reversed(entered):
            actions = env.script.actions if env.script is not None else None
            if actions is not None and actions.onExit is not None:
                try:
                    self.action(actions.onExit, f"environment {env.name} onExit")
                except CommandError as exc:
                    error = error or exc
        if error is not None:
            raise error

    def action(self, action, where):
        argv = [self.resolve(action.command, f"{where}.command")]
        argv += [self.resolve(arg, f"{where}.args") for arg in action.args or ()]
        self.on_message(where)
        timeout = int(action.timeout) if action.timeout else None
        cancelation = action.cancelation
        mode = getattr(getattr(cancelation, "mode", None), "value", "TERMINATE")
        period = getattr(cancelation, "notifyPeriodInSeconds", None) or DEFAULT_NOTIFY_PERIOD
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                                       cwd=self.dir)
        except OSError as exc:
            raise CommandError(f"{where}: cannot run {argv[0]!r}: {exc}") from None
        stopper = _Stopper(process, mode, int(period))
        previous = signal.signal(signal.SIGTERM, stopper.on_term)
        timer = threading.Timer(timeout, stopper.timed_out) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        failed = None
        try:
            for raw in process.stdout:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("openjd_fail:"):
                    failed = line.partition(":")[2].strip()
                progress = self.read(line)
                if progress is None:
                    continue
                if progress.completion is not None:
                    self.on_completion(progress.completion)
                if progress.message is not None:
                    self.on_message(progress.message)
            status = process.wait()
        finally:
            if timer:
                timer.cancel()
            signal.signal(signal.SIGTERM, previous)
        if stopper.timeout:
            raise CommandError(f"{where}: timed out after {timeout} s")
        if failed:
            raise CommandError(f"{where}: {failed}")
        if status > 0:
            raise CommandError(f"{where}: exit code {status}")
        if status < 0:
            raise CommandError(f"{where}: killed by signal {signal.Signals(-status).name}")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class _Stopper:
    """Ends an action per its cancelation mode, on a stop order or at its timeout."""

    def __init__(self, process, mode, period):
        self.process = process
        self.mode = mode
        self.period = period
        self.timeout = False

    def on_term(self, signum, frame):
        threading.Thread(target=self.cancel, daemon=True).start()

    def timed_out(self):
        self.timeout = True
        self.cancel()

    def cancel(self):
        if self.mode == "NOTIFY_THEN_TERMINATE":
            _signal(self.process, signal.SIGTERM)
            deadline = time.monotonic() + self.period
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        _signal(self.process, signal.SIGKILL)


def _signal(process, signum):
    """Signal the action and every process under it (they share the command's process group
    with this runner, so the group cannot be the target)."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass
    for child in tree:
        try:
            child.send_signal(signum)
        except psutil.Error:
            pass
