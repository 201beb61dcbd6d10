"""Real processes for tests: a puli-dispatcher under gunicorn, a notify socket, a stand-in worker."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The MariaDB server tests and benchmarks make their databases on, as root without password
# (scripts/test finds or starts one and names it in PULI_TEST_MARIADB).
_host, _, _port = os.environ.get("PULI_TEST_MARIADB", "127.0.0.1:3306").rpartition(":")
MARIADB = {"host": _host or "127.0.0.1", "port": int(_port), "user": "root"}


def mariadb_database_url(database):
    return f"mysql://root@{MARIADB['host']}:{MARIADB['port']}/{database}"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# The routes workers call: a dispatcher answers them to a worker token only.
WORKER_ROUTES = {"POST": re.compile(r"^/rendernodes/[^/]+/?$"),
                 "PUT": re.compile(r"^/rendernodes/[^/]+/(sysinfos|commands/\d+)/?$")}


def is_worker_route(method, path):
    route = WORKER_ROUTES.get(method)
    return route is not None and route.match(path.split("?")[0]) is not None


def http(method, url, body=None, timeout=10.0, token=None, context=None):
    """(status, decoded JSON body) of one request; errors are answers too. `context`: the TLS
    context of an https URL."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records (pid, message)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="puli-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def poll(self):
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except (socket.timeout, BlockingIOError):
                return self.messages
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[:4], sys.byteorder)
            self.messages.append((pid, data.decode()))

    def wait(self, prefix, timeout=30.0):
        def seen():
            self.poll()
            return [m for m in self.messages if any(line.startswith(prefix) for line in m[1].split("\n"))]
        return wait_for(seen, timeout, what=f"sd_notify {prefix}")

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class Dispatcher:
    """`puli-dispatcher` started for real (gunicorn arbiter + one worker) in its own session."""

    def __init__(self, data_dir, db_url=None, port=None, notify=None, extra=()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = str(data_dir)
        self.args = [os.path.join(os.path.dirname(sys.executable), "puli-dispatcher"),
                     # never the host's /etc/puli/dispatcher.yml: only these settings count
                     "--config", os.devnull,
                     "--set", "address=127.0.0.1", "--set", f"port={self.port}",
                     "--set", f"data_dir={self.data_dir}", "--set", "flush_interval=0.2",
                     "--set", "dispatch_interval=0.5", *extra]
        if db_url:
            self.args += ["--set", f"db_url={db_url}"]
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env.pop("NOTIFY_SOCKET", None)
        if notify is not None:
            self.env["NOTIFY_SOCKET"] = notify.path
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "stderr.log")
        self.token = None               # the admin token it made at its first start
        self._worker_token = None

    def start(self, timeout=60.0):
        os.makedirs(self.data_dir, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=ROOT)
        wait_for(self._up, timeout, what=f"dispatcher on port {self.port} (log: {self.log_path})")
        admin = os.path.join(self.data_dir, "admin.token")
        if self.token is None and os.path.exists(admin):
            with open(admin) as f:
                self.token = f.read().strip()
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"dispatcher exited with {self.proc.returncode}: {self.tail()}")
        try:
            status, body = http("GET", f"{self.url}/health", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.get("ready")

    def worker_token(self):
        """A farm-wide worker token, made once (running or not)."""
        if self._worker_token is None:
            self._worker_token = self.create_token("workers", "worker")
        return self._worker_token

    def create_token(self, user, role, *extra):
        """`puli-dispatcher tokens create` on this dispatcher's database, whether it runs or not.
        Before a first start, make the admin's too: the dispatcher then makes none itself."""
        if self.token is None and role != "admin" and self.proc is None:
            self.token = self.create_token("admin", "admin")
        out = subprocess.run([*self.args, "tokens", "create", "--user", user, "--role", role, *extra],
                             env=self.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def new_token(self, user, role, **extra):
        status, body = http("POST", f"{self.url}/tokens", dict(extra, user=user, role=role), token=self.token)
        assert status == 201, body
        return body["token"]

    def tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def get(self, path, token=None):
        return http("GET", self.url + path, token=token or self.token)

    def call(self, method, path, body=None, token=None):
        """As the admin, or as a worker on the workers' routes."""
        if token is None:
            token = self.worker_token() if is_worker_route(method, path) else self.token
        return http(method, self.url + path, body, token=token)

    def terminate(self, timeout=30.0):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        """kill -9 of the whole process group: nothing gets a chance to flush."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()


class StandInWorker:
    """The worker side of the dispatcher's wire protocol, played by the test itself.

    It accepts assignments (POST /commands/) and stop orders (DELETE /commands/<id>/) and records
    them; the test then reports on the commands as a worker would. The real worker arrives with
    the worker issue; here the dispatcher is under test.
    """

    def __init__(self):
        self.assignments = []
        self.stops = []
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                worker.assignments.append(body)
                self._reply(202)

            def do_DELETE(self):
                worker.stops.append(self.path)
                self._reply(202)

            def _reply(self, code):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.name = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, dispatcher, cores=4, running=(), pools=()):
        return dispatcher.call("POST", f"/rendernodes/{self.name}/", {
            "name": self.name, "host": "127.0.0.1", "port": self.port, "cores": cores, "ram": 16000,
            "speed": 3.0, "caracteristics": {"os": "linux"}, "puliversion": "test", "pools": list(pools),
            "commands": list(running)})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ThrowawayMariaDB:
    """A private MariaDB server (its own datadir and port) that a test may stop and start again."""

    def __init__(self):
        # Not under pytest's tmp_path: the server runs as the mysql user, who cannot enter it.
        self.dir = tempfile.mkdtemp(prefix="puli-mariadb-")
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        self.port = free_port()
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.proc = None
        subprocess.run(["chown", "-R", "mysql:mysql", self.dir], check=True)
        subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)

    @property
    def url(self):
        return f"mysql://root@127.0.0.1:{self.port}/puli"

    def start(self):
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={self.datadir}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", f"--log-error={self.dir}/error.log",
             f"--pid-file={self.dir}/mysqld.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        wait_for(answers, 30, what="the throwaway MariaDB")
        return self

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class SignedInBrowser:
    """What a browser signed in with `token` reaches: a loopback proxy that forwards GETs to the
    dispatcher with the token (pages are read by Chromium through it)."""

    def __init__(self, target, token):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                request = urllib.request.Request(target + self.path, headers={"Authorization": f"Bearer {token}"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as exc:
                    status, headers, body = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for name in ("Content-Type", "Content-Disposition"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
