"""The dispatcher's gunicorn worker: gthread, but a request thread only ever waits on the app.

gunicorn's gthread hands a connection to a request thread at its first byte, and the thread then
reads the rest with no time limit: a few clients that send one byte and stall hold every thread,
and the render nodes' heartbeats go unanswered. Here the worker's poller reads each request as it
arrives, without blocking, and hands it to a thread only once its head, and its body when that is
small and of known length, are in. A request that has not arrived request_timeout after its
first byte (after the connection, for a new one) is closed by the poller, as gthread closes an
idle keep-alive. A body the poller does not wait for (chunked, larger than BODY_LIMIT, or behind
``Expect: 100-continue``) is read by the thread under what is left of that same deadline.

gthread also lingers on every connection it closes, on the poller's own thread, until the client
closes its side (2 s at most): a few clients that ask for a close and keep the socket open would
stop the whole worker. The poller lingers on them instead, without blocking.

A request gunicorn's parser refuses (a request line past limit_request_line, a bad header) gets
gunicorn's status with a JSON body, as every other answer of the dispatcher, not its HTML page.

TLS is nginx's, never gunicorn's, here: the poller reads the plain TCP stream.
"""
import json
import logging
import selectors
import socket
import time
from functools import partial

import falcon
from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger("puli.dispatcher.http")

# The poller waits for a body of up to this many bytes (heartbeats, reports, most submissions);
# beyond, the thread reads it, so the poller never holds more than about this per connection.
BODY_LIMIT = 1024 * 1024
# A head still unfinished at this size is handed over for gunicorn's parser to refuse (its own
# limit, about 830 KB by default, is below).
HEAD_LIMIT = 1024 * 1024
RECV_SIZE = 64 * 1024
# How long a closing connection waits for the client to close its side, as gunicorn's own.
LINGER = 2.0


# What a request gunicorn's parser refuses is answered, as gunicorn answers it, but in JSON like
# every other answer of the dispatcher (gunicorn's own is an HTML page). Most specific first.
_UNPARSED = (
    (errors.LimitRequestLine, 414, "URI Too Long"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (errors.ExpectationFailed, 417, "Expectation Failed"),
    (errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (errors.ForbiddenProxyRequest, 403, "Forbidden"),
    (errors.ParseException, 400, "Bad Request"),
)
# Parse errors that are not the client's: gunicorn's own handling (a 500) stands.
_NOT_THE_CLIENTS = (errors.ConfigurationProblem, errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)


def unparsed_answer(exc):
    """(status, reason, JSON body) for a request the parser refused; None when it is not the
    client's fault."""
    if isinstance(exc, _NOT_THE_CLIENTS):
        return None
    for cls, status, reason in _UNPARSED:
        if isinstance(exc, cls):
            body = {"title": reason, "description": f"the request could not be read: {exc}"}
            return status, reason, json.dumps(body).encode()
    return None


class RequestTooSlow(TimeoutError):
    """The request's body did not arrive within request_timeout. A TimeoutError, so that
    gunicorn's drain of an unread body takes it for the socket timeout it is and closes."""


def answer_too_slow(req, resp, ex, params):
    """Falcon error handler: a body too slow to arrive is the client's fault (408), not a 500."""
    log.info("%s %s from %s: %s", req.method, req.path, req.remote_addr, ex)
    raise falcon.HTTPError(falcon.HTTP_408, title="Request timeout", description=str(ex))


def worker_class(request_timeout):
    """The worker class to give gunicorn's worker_class setting, with this request_timeout."""
    return type(ArrivalWorker.__name__, (ArrivalWorker,), {"request_timeout": request_timeout})


class ArrivalWorker(ThreadWorker):
    """gthread whose poller, not a request thread, waits for each request to arrive, and for
    each closing client to close its side."""

    request_timeout = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # conn -> the bytes of its request read so far; and the connections closing. Each
        # conn's deadline is its .timeout, as for gthread's kept-alive ones; all deadlines in a
        # dict are the same delay after their start, so insertion order is deadline order.
        self.arriving = {}
        self.lingering = {}

    def enqueue_req(self, conn):
        # Every way to a request thread comes here: a new connection, a kept-alive one that
        # became readable, one with a pipelined request already read ahead.
        if conn.parser is None:
            conn.init()
            conn.parser.unreader = _DeadlineUnreader(conn.sock, self.request_timeout)
        self.arriving[conn] = bytearray(conn.parser.unreader.take_buffered())
        conn.timeout = time.monotonic() + self.request_timeout
        self._wait(conn, self._read_arriving)
        if _complete(self.arriving[conn]):
            self._hand_over(conn)

    def _read_arriving(self, conn, sock):
        data = _recv(sock)
        if data is None:
            return
        if not data:                    # the client left before its request was in
            self._close(self.arriving, conn)
            return
        self.arriving[conn] += data
        if _complete(self.arriving[conn]):
            self._hand_over(conn)

    def _hand_over(self, conn):
        data = self.arriving.pop(conn)
        self.poller.unregister(conn.sock)
        conn.parser.unreader.deadline = conn.timeout
        conn.parser.unreader.unread(bytes(data))
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        # gthread closes a connection here, on the poller's thread, lingering up to 2 s until
        # the client closes its side (RFC 9112 9.6): a client that keeps it open would stop the
        # whole worker. The poller lingers instead.
        if fs.cancelled() or fs.exception() is not None or not fs.result():
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.nr_conns -= 1
                conn.close()
                return
            self.lingering[conn] = None
            conn.timeout = time.monotonic() + LINGER
            self._wait(conn, self._read_lingering)
        else:
            super().finish_request(conn, fs)

    def handle_error(self, req, client, addr, exc):
        answer = unparsed_answer(exc)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        status, reason, body = answer
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except OSError:
            self.log.debug("Failed to send error message.")

    def _read_lingering(self, conn, sock):
        if _recv(sock) == b"":          # anything else the client sends is discarded
            self._close(self.lingering, conn)

    def _wait(self, conn, callback):
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(callback, conn))

    def _close(self, waiting, conn):
        del waiting[conn]
        self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        # Called by gthread's loop at least every second, as murder_keepalived is.
        super().murder_pending()
        now = time.monotonic()
        for waiting in (self.arriving, self.lingering):
            while waiting and next(iter(waiting)).timeout <= now:
                conn = next(iter(waiting))
                if waiting is self.arriving:
                    log.info("%s: no whole request within %g s (request_timeout): connection "
                             "closed", conn.client[0] if conn.client else "?", self.request_timeout)
                self._close(waiting, conn)


def _recv(sock):
    """What the socket has (b"" once the client closed or reset it), None for nothing yet."""
    try:
        return sock.recv(RECV_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _complete(buf):
    """Whether a thread may take the request: no read of it will wait on the client, but for
    a body that _body_to_wait leaves to the thread (under the deadline)."""
    start = 2 if buf.startswith(b"\r\n") else 0          # the parser skips one empty line
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        # A bare LF or an oversized head: the parser refuses it from what is here.
        return len(buf) >= HEAD_LIMIT or buf.count(b"\n") != buf.count(b"\r\n")
    return len(buf) >= end + 4 + _body_to_wait(buf[start:end])


def _body_to_wait(head):
    """How many body bytes the poller waits for: the Content-Length of a small body; 0 when the
    thread reads the body itself."""
    length = 0
    for line in bytes(head).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"transfer-encoding", b"expect"):
            # Chunked: no length to wait for. Expect: 100-continue: the client sends the body
            # only once gunicorn answered "100 Continue", from the thread.
            return 0
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or len(value) > 9:
                return 0                # the parser refuses it, or it is far above BODY_LIMIT
            length = int(value)
    return length if length <= BODY_LIMIT else 0


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader held to the request's deadline: a body the thread reads itself
    waits on the client for no longer than what is left of request_timeout."""

    def __init__(self, sock, request_timeout):
        super().__init__(sock)
        self.request_timeout = request_timeout
        self.deadline = None            # set at each hand-over

    def chunk(self, size_hint=None):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._too_slow()
        self.sock.settimeout(left)
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            raise self._too_slow() from None
        finally:
            self.sock.settimeout(None)

    def _too_slow(self):
        return RequestTooSlow(f"the request did not arrive within {self.request_timeout:g} s "
                              "(setting request_timeout)")
