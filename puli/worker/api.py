"""The worker's HTTP API (Puli's routes): assignments, stop orders, pause, logs, system information.

A small Falcon app on a threaded wsgiref server (TLS when the worker has a certificate), in a
thread of the worker. It obeys its dispatcher only: every request must show the secret the
worker gave the dispatcher at its last registration (401 otherwise, and nothing is done).
Responders only parse and call the worker; every answer is JSON except the logs, and every
error is a JSON body {title, description}. openapi.py documents every route, served at
GET /openapi.json (to the dispatcher only, like the rest). The server holds out against slow
and large clients on its own (_Handler): a request arrives whole within request_timeout or its
connection is closed, a body past max_request_bytes is refused unread, and at most
MAX_CONNECTIONS are served at once.
"""
import io
import json
import logging
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import falcon

from puli.model.limits import BIGINT_MAX, INT_MAX

from . import openapi
from .metrics import CONTENT_TYPE_LATEST

log = logging.getLogger("puli.worker.api")

CHUNK = 64 * 1024


class Refused(Exception):
    """The worker will not do what was asked: ``status`` is the HTTP status that says why."""

    def __init__(self, status, title, description):
        super().__init__(description)
        self.status, self.title, self.description = status, title, description


def _bad(field, description):
    return falcon.HTTPBadRequest(title=f"Bad value for {field}", description=description)


def _int_field(body, name, minimum, maximum, required=True):
    # Bounded as the dispatcher's columns are: an id names a directory and a log file, and
    # one of a thousand digits is no name a file system takes.
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _bad(name, f"'{name}' must be an integer from {minimum} to {maximum}, not {_show(value)}")
    return value


def _number_field(body, name):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            if abs(float(value)) <= sys.float_info.max:     # NaN is not
                return value
        except OverflowError:
            pass                            # an integer no float holds
    raise _bad(name, f"'{name}' must be a number, not {_show(value)}")


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_body(req):
    body = req.get_media(default_when_empty=None)
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(title="Bad request body",
                                    description="this request needs a JSON object body")
    return body


class Commands:
    def __init__(self, worker):
        self.worker = worker

    def on_get(self, req, resp):
        resp.media = {"commands": self.worker.commands()}

    def on_post(self, req, resp):
        """An assignment from the dispatcher: 202 once its watcher is started."""
        body = _json_body(req)
        _int_field(body, "id", 1, BIGINT_MAX)
        _int_field(body, "assignment", 1, BIGINT_MAX)
        _int_field(body, "taskId", 0, BIGINT_MAX, required=False)
        for name in ("cores", "ramUse"):
            _int_field(body, name, 0, INT_MAX, required=False)
        for name in ("arguments", "environment"):
            if not isinstance(body.get(name, {}), dict):
                raise _bad(name, f"'{name}' must be an object")
        # Types the watcher cannot read: refused before anything runs (the dispatcher sends
        # none). Values are the watcher's to judge (a negative maxRunTime, which graphs no
        # longer take, ends the run in ERROR saying why): a refused assignment would go back
        # to the queue and come back.
        if not isinstance(body.get("runner", ""), (str, type(None))):
            raise _bad("runner", f"'runner' must be a runner class's dotted path, not {_show(body['runner'])}")
        _number_field(body, "maxRunTime")
        resp.media = self.worker.accept(body)
        resp.status = falcon.HTTP_202


class Command:
    def __init__(self, worker):
        self.worker = worker

    def on_delete(self, req, resp, id):
        """Stop a run (?assignment=N: only that run); 404 when this worker does not run it."""
        assignment = req.get_param_as_int("assignment", min_value=0)
        resp.media = self.worker.order_stop(id, assignment)
        resp.status = falcon.HTTP_202


class CommandLog:
    def __init__(self, worker):
        self.worker = worker

    def on_get(self, req, resp, id):
        path = self.worker.command_log(id)
        if path is None:
            raise falcon.HTTPNotFound(title="No log", description=f"no log of command {id} on this node")
        serve_log(req, resp, path)


class WorkerLog:
    def __init__(self, worker):
        self.worker = worker

    def on_get(self, req, resp):
        serve_log(req, resp, self.worker.log_path)


class Pause:
    def __init__(self, worker):
        self.worker = worker

    def on_post(self, req, resp):
        """{content}: "0" resumes; anything else is written to the killfile (see killfile.py)."""
        content = _json_body(req).get("content", "")
        if not isinstance(content, (str, int)) or isinstance(content, bool):
            raise _bad("content", "'content' must be a string such as \"0\", \"-1\", \"-2\" or \"-3\"")
        content = str(content).strip()
        try:
            content.encode()                # JSON may carry a lone surrogate: no file holds it
        except UnicodeEncodeError:
            raise _bad("content", "'content' must be text that UTF-8 can encode") from None
        resp.media = self.worker.pause(content)
        resp.status = falcon.HTTP_202


class SysInfos:
    def __init__(self, worker):
        self.worker = worker

    def on_get(self, req, resp):
        resp.media = self.worker.sysinfos()


class UpdateSysInfos:
    def __init__(self, worker):
        self.worker = worker

    def on_post(self, req, resp):
        """The next heartbeat carries the full system information, read afresh."""
        self.worker.request_sysinfo()
        resp.media = {"updating": True}
        resp.status = falcon.HTTP_202


def serve_log(req, resp, path):
    """A log as text: from byte ``offset``, or its last ``tail`` lines; X-Log-Size is its size."""
    offset = req.get_param_as_int("offset", min_value=0)
    tail = req.get_param_as_int("tail", min_value=0)
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        raise falcon.HTTPNotFound(title="No log", description=f"{path} does not exist") from None
    size = os.fstat(stream.fileno()).st_size
    start = min(offset or 0, size)
    if tail is not None:
        start = max(start, _tail_start(stream, size, tail))
    stream.seek(start)
    resp.content_type = "text/plain; charset=utf-8"
    resp.set_header("X-Log-Size", str(size))
    resp.set_header("X-Log-Offset", str(start))
    resp.content_length = size - start
    resp.stream = _read(stream, size - start)


def _tail_start(stream, size, lines):
    """The offset where the last `lines` lines of the file begin."""
    if lines == 0:
        return size
    position, newlines = size, 0
    stream.seek(max(0, size - 1))
    # A final line end belongs to the last line, it does not start a new one.
    if size and stream.read(1) == b"\n":
        position -= 1
    while position > 0:
        step = min(CHUNK, position)
        stream.seek(position - step)
        block = stream.read(step)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            newlines += 1
            if newlines == lines:
                return position - step + index + 1
        position -= step
    return 0


def _read(stream, length):
    """Exactly `length` bytes of the stream in chunks: the log may grow while it is sent."""
    with stream:
        while length > 0:
            data = stream.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


class OpenAPI:
    def on_get(self, req, resp):
        resp.media = openapi.document()


class Metrics:
    """The Prometheus text format of the worker's registry (metrics.py)."""

    def __init__(self, worker):
        self.worker = worker

    def on_get(self, req, resp):
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.worker.metrics.exposition()


def _refused(req, resp, ex, params):
    raise falcon.HTTPError(falcon.code_to_http_status(ex.status), title=ex.title,
                           description=ex.description)


def _unexpected(req, resp, ex, params):
    log.error("%s %s failed", req.method, req.path, exc_info=ex)
    raise falcon.HTTPInternalServerError(
        title="Internal error",
        description=f"unexpected {type(ex).__name__} while handling {req.method} {req.path}; "
                    "the worker log has the details")


def _serialize_error(req, resp, ex):
    """Every error as a JSON {title, description}, whatever the client accepts: falcon's own
    (no such route, a method the route lacks) get a description too."""
    body = ex.to_dict()
    if not body.get("description"):
        body["description"] = (f"{req.method} is not allowed on {req.path}"
                               if ex.status_code == 405 else f"this worker has no {req.path}")
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body).encode()


class DispatcherOnly:
    """Middleware: `Authorization: Bearer <the secret of the last registration>`, or 401.
    GET /metrics also takes the metrics token (metrics_token_file): 403 while there is none."""

    def __init__(self, worker):
        self.worker = worker

    def process_request(self, req, resp):
        scheme, _, secret = (req.get_header("Authorization") or "").partition(" ")
        bearer = secret.strip() if scheme.lower() == "bearer" else None
        if req.path == "/metrics" and not (bearer and self.worker.allows(bearer)):
            if self.worker.metrics_token is None:
                raise falcon.HTTPForbidden(
                    title="Metrics are off",
                    description="this worker has no metrics token: set metrics_token_file (a file "
                                "holding the token a Prometheus scrape shows as its bearer token)")
            if bearer is None or not self.worker.allows_metrics(bearer):
                raise falcon.HTTPUnauthorized(
                    title="Not the metrics token",
                    description="GET /metrics needs 'Authorization: Bearer <the token in this "
                                "worker's metrics_token_file>'",
                    challenges=['Bearer realm="puli-worker-metrics"'])
            return
        if bearer is None or not self.worker.allows(bearer):
            raise falcon.HTTPUnauthorized(
                title="Not the dispatcher",
                description="this worker obeys its dispatcher only: show the secret it gave at "
                            "its registration (root on this node finds it in <data_dir>/api.secret)",
                challenges=['Bearer realm="puli-worker"'])


class RequestLimits:
    """Middleware: a body larger than max_request_bytes (413) or of unknown length (411) is
    refused from its headers; the server (_Handler) has left it unread."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes

    def process_request(self, req, resp):
        if "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
            raise falcon.HTTPLengthRequired(
                title="Length required", description="send the body with a Content-Length header, not chunked")
        length = req.content_length
        if length is not None and length > self.max_bytes:
            raise falcon.HTTPContentTooLarge(
                title="Request body too large",
                description=f"the body is {length} bytes; this worker accepts at most {self.max_bytes} "
                            "(setting max_request_bytes)")


def create_app(worker, max_request_bytes=1024 * 1024):
    app = falcon.App(middleware=[DispatcherOnly(worker), RequestLimits(max_request_bytes)])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_serialize_error)
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(Refused, _refused)
    # A command id outside the dispatcher's (1 to 2^63-1) matches no route: 404, no such command.
    command = f"/commands/{{id:int(min=1, max={BIGINT_MAX})}}"
    app.add_route("/commands", Commands(worker))
    app.add_route(command, Command(worker))
    app.add_route(f"{command}/log", CommandLog(worker))
    app.add_route("/log", WorkerLog(worker))
    app.add_route("/pause", Pause(worker))
    app.add_route("/sysinfos", SysInfos(worker))
    app.add_route("/updatesysinfos", UpdateSysInfos(worker))
    app.add_route("/openapi.json", OpenAPI())
    app.add_route("/metrics", Metrics(worker))
    return app


# -- the server ------------------------------------------------------------------------------------
# One thread per connection, as many as MAX_CONNECTIONS at once: the dispatcher sends a worker
# at most 16 messages at a time (its sender pool) and a few log reads, so 64 leaves it room
# while a flood of connections costs at most 64 threads (and as many pids of the unit's), each
# held request_timeout at most while its request arrives. A connection past them is closed at
# once: refusing is cheaper than queueing, and the dispatcher retries what it could not send.
MAX_CONNECTIONS = 64
REFUSAL_LOG_PERIOD = 60.0       # s between two warnings of connections refused when full


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    max_request_bytes = 1024 * 1024
    request_timeout = 10.0

    def server_activate(self):
        super().server_activate()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0
        self.refusal_logged = float("-inf")

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            self._refusal()
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()        # no thread was started to release it
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refusal(self):
        self.refused += 1
        now = time.monotonic()
        if now - self.refusal_logged >= REFUSAL_LOG_PERIOD:
            log.warning("%d connection(s) to the API closed unanswered: %d already open, the most "
                        "it serves at once", self.refused, MAX_CONNECTIONS)
            self.refusal_logged, self.refused = now, 0

    def handle_error(self, request, client_address):
        """A client that does not send its request in time, breaks off or fails its TLS handshake
        is one line of the log, never a traceback on stderr."""
        exc = sys.exc_info()[1]
        who = client_address[0] if client_address else "?"
        if isinstance(exc, TimeoutError):
            log.info("%s: no whole request within %g s (request_timeout): connection closed",
                     who, self.request_timeout)
        elif isinstance(exc, (ConnectionError, ssl.SSLError)):
            log.debug("%s: connection lost: %s", who, exc)
        else:
            log.error("%s: request failed", who, exc_info=exc)


class _Arrival(io.RawIOBase):
    """The connection's bytes as they arrive, until one deadline for the whole request: a client
    trickling a byte at a time gets no more time than one that sends nothing."""

    def __init__(self, sock, deadline):
        self.sock, self.deadline = sock, deadline

    def readable(self):
        return True

    def readinto(self, buffer):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Handler(WSGIRequestHandler):
    """One request per connection. The TLS handshake, the request line, the headers and a body
    of at most max_request_bytes all arrive under one deadline, request_timeout after the
    connection; then the app runs on the body in memory, so it never waits on the client. A
    larger body is never read: the app refuses it from its headers (413)."""

    # The answer buffered: its status line, headers and a short body leave in one segment,
    # not one send each (wsgiref flushes after every body part).
    wbufsize = CHUNK

    def setup(self):
        server = self.server
        self.deadline = time.monotonic() + server.request_timeout
        self.body_left = False          # a body the app refused before it was read
        if isinstance(self.request, ssl.SSLSocket):
            # Here, in this connection's thread and under its deadline: a client slow at its
            # handshake holds only this thread, and not for longer than its request may take.
            self.request.settimeout(max(0.001, self.deadline - time.monotonic()))
            self.request.do_handshake()
        super().setup()
        self.rfile = io.BufferedReader(_Arrival(self.connection, self.deadline))

    def body_length(self):
        """The Content-Length when the body is to be read here; None for no body, or one the
        app refuses unread (too large, chunked, malformed)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if 0 < length <= self.server.max_request_bytes else None

    def handle_expect_100(self):
        # "100 Continue" only for a body we will read: a larger one gets its 413 unsent.
        if self.body_length() is None:
            return True
        return super().handle_expect_100()

    def handle(self):
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return                      # connected and left
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return                      # it sent the error
        length = self.body_length()
        body = b""
        if length is not None:
            body = self.rfile.read(length)
            if len(body) < length:
                log.debug("%s: the client left before its body was sent", self.client_address[0])
                return
        else:
            self.body_left = bool(self.headers.get("Content-Length", "0").strip() not in ("", "0")
                                  or self.headers.get("Transfer-Encoding"))
        # The request is in: the answer's writes each get the full delay, not what is left of it.
        self.connection.settimeout(self.server.request_timeout)
        handler = ServerHandler(io.BytesIO(body), self.wfile, self.get_stderr(), self.get_environ(),
                                multithread=False)
        handler.request_handler = self
        handler.run(self.server.get_app())
        if self.body_left:
            self.linger()

    def linger(self):
        """After refusing a body unread: end our side, and discard what the client still sends
        until it closes (or the request's deadline), so that it reads the answer rather than a
        connection reset in the middle of its upload."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            buffer = bytearray(CHUNK)
            while True:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    return
                self.connection.settimeout(left)
                if not self.connection.recv_into(buffer):
                    return
        except OSError:
            return

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line, too many headers...) as JSON."""
        short, long = self.responses.get(code, ("Error", ""))
        body = json.dumps({"title": message or short, "description": explain or long}).encode()
        self.close_connection = True
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class ApiServer:
    """The API served from a thread; bound at construction, so a busy port fails at once."""

    def __init__(self, worker, address, port, tls_cert=None, tls_key=None,
                 max_request_bytes=1024 * 1024, request_timeout=10.0):
        self.server = make_server(address, port, create_app(worker, max_request_bytes),
                                  server_class=_Server, handler_class=_Handler)
        self.server.max_request_bytes = max_request_bytes
        self.server.request_timeout = request_timeout
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_cert), str(tls_key))
            # No handshake in accept(), in the serving thread: the handler does it (setup()).
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever, name="puli-api", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()
