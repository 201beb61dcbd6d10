"""The worker's HTTP API (Puli's routes): assignments, stop orders, pause, logs, system information.

A small Falcon app on a threaded wsgiref server (TLS when the worker has a certificate), in a
thread of the worker. It obeys its dispatcher only: every request must show the secret the
worker gave the dispatcher at its last registration (401 otherwise, and nothing is done).
Responders only parse and call the worker; every answer is JSON except the logs, and every
error is a JSON body.
"""
import logging
import os
import socketserver
import ssl
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

log = logging.getLogger("puli.worker.api")

CHUNK = 64 * 1024


class Refused(Exception):
    """The worker will not do what was asked: ``status`` is the HTTP status that says why."""

    def __init__(self, status, title, description):
        super().__init__(description)
        self.status, self.title, self.description = status, title, description


def _bad(field, description):
    return falcon.HTTPBadRequest(title=f"Bad value for {field}", description=description)


def _int_field(body, name, minimum, required=True):
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, f"'{name}' must be an integer of at least {minimum}, not {value!r}")
    return value


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
        _int_field(body, "id", 1)
        _int_field(body, "assignment", 1)
        for name in ("cores", "ramUse", "taskId"):
            _int_field(body, name, 0, required=False)
        for name, kind in (("arguments", dict), ("environment", dict)):
            if not isinstance(body.get(name, {}), kind):
                raise _bad(name, f"'{name}' must be an object")
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
        resp.media = self.worker.pause(str(content).strip())
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


def _refused(req, resp, ex, params):
    raise falcon.HTTPError(falcon.code_to_http_status(ex.status), title=ex.title,
                           description=ex.description)


def _unexpected(req, resp, ex, params):
    log.error("%s %s failed", req.method, req.path, exc_info=ex)
    raise falcon.HTTPInternalServerError(
        title="Internal error",
        description=f"unexpected {type(ex).__name__} while handling {req.method} {req.path}; "
                    "the worker log has the details")


class DispatcherOnly:
    """Middleware: `Authorization: Bearer <the secret of the last registration>`, or 401."""

    def __init__(self, worker):
        self.worker = worker

    def process_request(self, req, resp):
        scheme, _, secret = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not self.worker.allows(secret.strip()):
            raise falcon.HTTPUnauthorized(
                title="Not the dispatcher",
                description="this worker obeys its dispatcher only: show the secret it gave at "
                            "its registration (root on this node finds it in <data_dir>/api.secret)",
                challenges=['Bearer realm="puli-worker"'])


def create_app(worker):
    app = falcon.App(middleware=[DispatcherOnly(worker)])
    app.req_options.strip_url_path_trailing_slash = True
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(Refused, _refused)
    app.add_route("/commands", Commands(worker))
    app.add_route("/commands/{id:int}", Command(worker))
    app.add_route("/commands/{id:int}/log", CommandLog(worker))
    app.add_route("/log", WorkerLog(worker))
    app.add_route("/pause", Pause(worker))
    app.add_route("/sysinfos", SysInfos(worker))
    app.add_route("/updatesysinfos", UpdateSysInfos(worker))
    return app


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class ApiServer:
    """The API served from a thread; bound at construction, so a busy port fails at once."""

    def __init__(self, worker, address, port, tls_cert=None, tls_key=None):
        self.server = make_server(address, port, create_app(worker), server_class=_Server,
                                  handler_class=_Handler)
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_cert), str(tls_key))
            # The handshake in the request's own thread: a client slow at it holds only that.
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever, name="puli-api", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()
