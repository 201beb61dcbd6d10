"""Messages from the dispatcher to workers: assignments and stop orders, and the requests that carry them.

`message()` runs under the farm lock and copies everything it needs out of the model;
`send()` runs on a sender thread (senders.py), outside the lock. Every request to a worker,
`fetch()`, has one deadline from its connection to the last byte of the answer: a socket
timeout alone applies to each read, and a worker trickling its answer would hold the thread
for as long as it pleases.

Wire contract (worker side), over http or https as the worker registered, each request with
``Authorization: Bearer <the secret the worker gave at its registration>``:
- ``POST /commands/`` with the assignment body (model/outbox.py: Assign.body); 202 = accepted,
  and with ``"status": 3`` (RUNNING) in its answer, the run has started: no report needs to say so.
- ``DELETE /commands/<id>/?assignment=<n>``: stop that run of the command.
- ``GET /commands/<id>/log`` (the dispatcher's log route reads it there).
"""
import enum
import functools
import http.client
import io
import json
import logging
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from ..model.outbox import Assign
from ..model.status import CommandStatus

RUNNING = int(CommandStatus.RUNNING)

log = logging.getLogger("puli.dispatcher.delivery")


@dataclass(frozen=True)
class Message:
    kind: str                           # "assign" or "stop"
    rn_name: str
    url: str
    command_id: int
    assignment: int
    body: bytes = b""
    secret: str = None                  # the worker's, for its Authorization header


class Outcome(enum.Enum):
    ACCEPTED = "accepted"               # the worker took it
    STARTED = "started"                 # an assignment taken, its run started ("status": RUNNING)
    REFUSED = "refused"                 # the worker answered, and not yes
    UNANSWERED = "unanswered"           # no whole answer before the deadline (or no connection)


@dataclass(frozen=True)
class Answer:
    """A worker's whole answer, whatever its status."""
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def worker_base(rn):
    """Under the lock: the URL of a render node's worker API."""
    return f"{rn.scheme}://{rn.host}:{rn.port}"


@functools.lru_cache(maxsize=4)
def tls_context(ca_file=None):
    """The TLS context workers' certificates are checked with (their CA, or the system's).
    Loading the system's CAs takes tens of milliseconds: one context per file serves all."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def fetch(url, secret, timeout, context=None, method="GET", data=None):
    """One request to a worker, with its secret, answered whole within `timeout` seconds from
    the connection to the last byte. Raises OSError (TimeoutError once the deadline passed) or
    http.client.HTTPException when no whole answer came."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
    elif parts.scheme == "http":
        connection = http.client.HTTPConnection(parts.hostname, parts.port)
    else:
        raise ValueError(f"not a worker URL: {url}")
    # The TCP connection, then (https) the handshake on what it left, then every send and
    # receive on what is left then.
    connection._create_connection = lambda address, *_: _connect(address, deadline)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    try:
        connection.connect()
        connection.sock = _DeadlineSocket(connection.sock, deadline)
        target = parts.path or "/"
        connection.request(method, f"{target}?{parts.query}" if parts.query else target,
                           body=data, headers=headers)
        with connection.getresponse() as response:
            return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def message(item):
    """The wire form of an outbox entry (model/outbox.py), built under the farm lock."""
    rn = item.render_node
    base = worker_base(rn)
    if isinstance(item, Assign):
        cmd = item.command
        body = json.dumps(item.body()).encode()
        return Message("assign", rn.name, f"{base}/commands/", cmd.id, item.assignment, body, rn.secret)
    return Message("stop", rn.name, f"{base}/commands/{item.command_id}/?assignment={item.assignment}",
                   item.command_id, item.assignment, secret=rn.secret)


def send(msg, timeout, context=None):
    """Deliver one message within `timeout` seconds, connection to last byte: its Outcome."""
    method = "POST" if msg.kind == "assign" else "DELETE"
    try:
        answer = fetch(msg.url, msg.secret, timeout, context, method, msg.body or None)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        log.warning("%s of command %d to %s failed: %s", msg.kind, msg.command_id, msg.rn_name,
                    str(exc) or type(exc).__name__)
        return Outcome.UNANSWERED
    if 200 <= answer.status < 300:
        return Outcome.STARTED if msg.kind == "assign" and _says_running(answer.body) else Outcome.ACCEPTED
    if msg.kind == "stop" and answer.status == 404:
        return Outcome.ACCEPTED         # the worker no longer has it
    log.warning("%s of command %d to %s refused: HTTP %d", msg.kind, msg.command_id, msg.rn_name, answer.status)
    return Outcome.REFUSED


def _says_running(body):
    """Whether a worker's answer to an assignment says its run has started: the run is then
    RUNNING without a report of its own (one request less per command)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("status") == RUNNING


def _left(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the worker did not answer in time")
    return left


def _connect(address, deadline):
    """socket.create_connection, each address tried on what is left of the deadline."""
    host, port = address
    error = OSError(f"cannot resolve {host}")
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)
            sock.settimeout(_left(deadline))    # what a TLS handshake may take
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _DeadlineSocket:
    """A connected socket (plain or TLS) each of whose sends and receives may last only what
    is left of the deadline: http.client sends with sendall() and reads through makefile().
    As with socket.makefile(), the socket stays open while a reader of it is (http.client
    closes the connection of a last answer before its body is read)."""

    def __init__(self, sock, deadline):
        self._sock = sock
        self._deadline = deadline
        self._readers = 0
        self._closed = False

    def sendall(self, data):
        view = memoryview(data).cast("B")
        while view:                     # send() by send(): a TLS sendall() times each part alone
            self._sock.settimeout(_left(self._deadline))
            view = view[self._sock.send(view):]

    def recv_into(self, buffer):
        self._sock.settimeout(_left(self._deadline))
        return self._sock.recv_into(buffer)

    def makefile(self, mode="rb", *args, **kwargs):
        if mode != "rb":
            raise ValueError(f"a worker's answer is read only: mode {mode!r}")
        self._readers += 1
        return io.BufferedReader(_Reader(self))

    def close(self):
        self._closed = True
        if not self._readers:
            self._sock.close()

    def _reader_closed(self):
        self._readers -= 1
        if self._closed and not self._readers:
            self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Reader(io.RawIOBase):
    def __init__(self, sock):
        self._sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._sock.recv_into(buffer)

    def close(self):
        if not self.closed:
            self._sock._reader_closed()
        super().close()
