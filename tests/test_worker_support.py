"""Helpers for the worker tests (no tests here): a real `puli-worker` process on loopback, jobs
for a real dispatcher, and a sweep of whatever a failed test left running."""
import os
import shlex
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from processes import Dispatcher, ROOT, free_port, http, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


class WorkerProcess:
    """`python -m puli.worker.main` started for real, in its own session, with test settings."""

    def __init__(self, dispatcher_url, data_dir, port=None, notify=None, env=None, extra=(), token="",
                 tls=None):
        """`tls`: (certificate, key, CA file): its API serves TLS with that certificate."""
        self.port = port or free_port()
        self.name = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.tls_context = ssl.create_default_context(cafile=str(tls[2])) if tls else None
        if tls:
            extra = ("--set", f"tls_cert={tls[0]}", "--set", f"tls_key={tls[1]}", *extra)
        self.data_dir = Path(data_dir)
        self.args = [sys.executable, "-m", "puli.worker.main", "--config", os.devnull,
                     "--set", f"dispatcher_url={dispatcher_url}", "--set", "address=127.0.0.1",
                     "--set", "host=127.0.0.1", "--set", f"port={self.port}",
                     "--set", f"name={self.name}", "--set", f"data_dir={self.data_dir}",
                     "--set", "isolation=pgroup", "--set", "heartbeat_interval=1",
                     "--set", "kill_grace=2", "--set", f"token={token}", *extra]
        inherited = {k: v for k, v in os.environ.items()
                     if k not in ("NOTIFY_SOCKET", "PULI_NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env = dict(inherited, PYTHONUNBUFFERED="1", **(env or {}))
        if notify is not None:
            self.env["NOTIFY_SOCKET"] = notify.path
        self.proc = None
        self.log_path = self.data_dir / "stderr.log"

    def start(self, timeout=30.0):
        """Start it and wait for its API to answer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=ROOT)
        wait_for(self._up, timeout, what=f"the worker's API on port {self.port} (log: {self.log_path})")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}: {self.tail()}")
        try:
            # Up once it answers; 401 too: it takes no order before it has registered.
            return self.get("/sysinfos/")[0] in (200, 401)
        except OSError:
            return False

    def secret(self):
        """What the worker asks of its dispatcher, as root on its node finds it."""
        try:
            return (self.data_dir / "api.secret").read_text().strip()
        except FileNotFoundError:
            return None

    def get(self, path):
        return http("GET", self.url + path, token=self.secret(), context=self.tls_context)

    def runs(self):
        """The runs it lists (GET /commands/), or None while it does not answer them: a worker
        just started refuses every request until its registration gives it a secret."""
        status, body = self.get("/commands/")
        return body["commands"] if status == 200 else None

    def call(self, method, path, body=None, token=...):
        """As its dispatcher (with its secret), or with `token`."""
        token = self.secret() if token is ... else token
        return http(method, self.url + path, body, token=token, context=self.tls_context)

    def text(self, path):
        """(status, headers, text) of a GET answered with text (the logs)."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.secret()}"})
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls_context) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def tail(self):
        return self.log_path.read_bytes()[-4000:].decode(errors="replace")

    def terminate(self, timeout=30.0):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()


def registered(dispatcher, name):
    """The dispatcher's view of a render node once it has registered and is alive."""
    status, body = dispatcher.get(f"/rendernodes/{name}")
    return body if status == 200 and body["isRegistered"] and body["status"] != 0 else None


def ready_worker(dispatcher, **kw):
    """A worker of the `farm` fixture, started and registered."""
    worker = dispatcher.worker(**kw).start()
    wait_for(lambda: registered(dispatcher, worker.name), what="registration")
    return worker


def job(name, cmd, frames=(1, 1), **task):
    """A one-task graph running `cmd` (a shell string) once per frame, one core each."""
    return {"name": name, "root": 0, "user": "ann", "tasks": [dict(
        {"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
         "arguments": {"cmd": cmd, "start": frames[0], "end": frames[1]}}, **task)]}


def submit(dispatcher, graph):
    status, body = dispatcher.call("POST", "/graphs/", graph)
    assert status == 201, body
    return body["id"]


def the_command(dispatcher, job_id):
    """The id of a one-command job's command."""
    (cmd,) = wait_for(lambda: commands(dispatcher, job_id), what="the job's command")
    return cmd["id"]


def reaches(dispatcher, command_id, status, timeout=20.0):
    """The command, once the dispatcher shows it in `status`."""
    def check():
        cmd = command(dispatcher, command_id)
        return cmd if cmd["status"] == status else None
    return wait_for(check, timeout, what=f"command {command_id} to reach status {int(status)}")


def commands(dispatcher, job_id):
    return dispatcher.get(f"/tasks/{job_id}/commands")[1]["commands"]


def command(dispatcher, command_id):
    return dispatcher.get(f"/commands/{command_id}")[1]


def python_command(code):
    """A shell command running `code` in this interpreter, for commands that need more than sh."""
    return f"{sys.executable} -c {shlex.quote(code)}"


def watchers_of(data_dir):
    """The commandwatcher processes running a command of this data directory."""
    marker = str(Path(data_dir) / "commands")
    return [p for p in psutil.process_iter(["cmdline"])
            if "puli.commandwatcher" in (p.info["cmdline"] or []) and marker in " ".join(p.info["cmdline"])]


def sweep(data_dir):
    """Kill what a test left running under this data directory: watchers and their commands
    (every command process carries its log path, under the data directory, in PULI_LOG)."""
    watchers = watchers_of(data_dir)
    for process in psutil.process_iter():
        try:
            if process in watchers or process.environ().get("PULI_LOG", "").startswith(str(data_dir)):
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


@pytest.fixture
def farm(tmp_path, request):
    """A real dispatcher and a factory of real workers bound to it; everything killed after.

    `@pytest.mark.dispatcher_settings("rn_timeout=3", ...)` adds --set options."""
    marker = request.node.get_closest_marker("dispatcher_settings")
    extra = [arg for setting in (marker.args if marker else ()) for arg in ("--set", setting)]
    dispatcher = Dispatcher(tmp_path / "dispatcher", extra=extra)
    workers = []

    def worker(data_dir=None, **kw):
        kw.setdefault("token", dispatcher.worker_token())
        process = WorkerProcess(dispatcher.url, data_dir or tmp_path / f"worker{len(workers)}", **kw)
        workers.append(process)
        return process

    dispatcher.start()
    dispatcher.worker = worker
    try:
        yield dispatcher
    finally:
        for process in workers:
            process.close()
            sweep(process.data_dir)
        dispatcher.close()
