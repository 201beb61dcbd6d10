"""Slow and stalled clients cost the real dispatcher no request thread: heartbeats keep arriving,
a request that does not arrive within request_timeout is disconnected, and every normal way to
send a request (slow pieces, keep-alive, pipelining, HTTP/1.0, 100-continue, chunked) still works."""
import json
import socket
import time

import pytest

from processes import Dispatcher, StandInWorker, http, wait_for
from puli.model.status import RenderNodeStatus


def graph(name):
    return {"name": name, "root": 0, "user": "ann", "tasks": [{
        "type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
        "arguments": {"cmd": "echo %%MI_FRAME%%", "start": 1, "end": 1}}]}


class Raw:
    """A client on a plain socket, to send a request in whatever pieces a test wants."""

    def __init__(self, dispatcher):
        self.sock = socket.create_connection(("127.0.0.1", dispatcher.port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def response(self):
        """(status, headers, body) of the next response; its body by Content-Length."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_peer(self):
        """Whether the dispatcher has closed the connection (end of file, or a reset)."""
        self.sock.settimeout(0.1)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed by the dispatcher after {self.buf!r}")
        self.buf += data

    def close(self):
        self.sock.close()


def request(method, path, body=b"", token=None, version="HTTP/1.1", **headers):
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def clients():
    opened = []

    def open_client(dispatcher):
        opened.append(Raw(dispatcher))
        return opened[-1]
    yield open_client
    for client in opened:
        client.close()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A dispatcher with 2 threads and a 2 s request_timeout."""
    dispatcher = Dispatcher(tmp_path_factory.mktemp("strict"), extra=(
        "--set", "threads=2", "--set", "request_timeout=2"))
    try:
        yield dispatcher.start()
    finally:
        dispatcher.close()


def test_stalled_clients_hold_no_thread_and_no_render_node_goes_unknown(tmp_path, clients):
    # request_timeout far above the window: the stalled sockets stay open all along, and only
    # the threads not being theirs can keep the heartbeats answered.
    dispatcher = Dispatcher(tmp_path / "d", extra=(
        "--set", "threads=2", "--set", "rn_timeout=3", "--set", "request_timeout=60"))
    worker = StandInWorker()
    try:
        dispatcher.start()
        assert worker.register(dispatcher)[0] in (200, 201)
        for _ in range(10):
            clients(dispatcher).send(b"G")
        for _ in range(3):
            clients(dispatcher).send(request("POST", "/graphs/", b"x", token=dispatcher.token)
                                     .replace(b"Content-Length: 1", b"Content-Length: 1000"))
        for _ in range(5):      # answered with a close, they never close their side
            clients(dispatcher).send(request("GET", "/health", version="HTTP/1.0"))
        token, node = dispatcher.worker_token(), f"{dispatcher.url}/rendernodes/{worker.name}"
        window = time.monotonic() + 5.0                         # longer than rn_timeout
        while time.monotonic() < window:
            assert http("GET", f"{dispatcher.url}/health", timeout=2)[0] == 200
            assert http("PUT", f"{node}/sysinfos", {"systemFreeRam": 1000}, timeout=2, token=token)[0] == 200
            status, body = http("GET", node, timeout=2, token=dispatcher.token)
            assert status == 200 and body["status"] != RenderNodeStatus.UNKNOWN, body
            time.sleep(0.5)                                     # a heartbeat's pace
    finally:
        worker.close()
        dispatcher.close()


def test_a_stalled_request_is_disconnected_after_request_timeout(strict, clients):
    silent = clients(strict)
    one_byte = clients(strict)
    one_byte.send(b"G")
    head_only = clients(strict)
    head_only.send(request("POST", "/graphs/", b"{", token=strict.token)
                   .replace(b"Content-Length: 1", b"Content-Length: 1000"))
    kept_alive = clients(strict)
    kept_alive.send(request("GET", "/health"))
    assert kept_alive.response()[0] == 200
    kept_alive.send(b"GET /health HTTP/1.1\r\n")           # the next request, never finished
    for client in (silent, one_byte, head_only, kept_alive):
        wait_for(client.closed_by_peer, timeout=15, what="the dispatcher closing a stalled request")
    assert http("GET", f"{strict.url}/health", timeout=2)[0] == 200


def test_a_large_body_too_slow_to_arrive_is_answered_408_and_frees_its_thread(strict, clients):
    slow = [clients(strict) for _ in range(3)]                 # more than the threads
    for client in slow:
        client.send(request("POST", "/graphs/", b"{", token=strict.token)
                    .replace(b"Content-Length: 1", b"Content-Length: 2000000") + b'{"name": ')
    for client in slow:
        status, _, body = client.response()
        assert status == 408 and "request_timeout" in json.loads(body)["description"]
    assert http("GET", f"{strict.url}/health", timeout=2)[0] == 200


@pytest.mark.parametrize("padding", [0, 1_500_000], ids=["small", "above-the-poller's-limit"])
def test_a_body_sent_in_slow_pieces_within_the_deadline_is_served(strict, clients, padding):
    client = clients(strict)
    body = json.dumps(graph("slow")).encode() + b" " * padding
    data = request("POST", "/graphs/", body, token=strict.token)
    piece = len(data) // 4 + 1
    for i in range(0, len(data), piece):
        client.send(data[i:i + piece])
        time.sleep(0.2)                                        # a trickling client's pace
    status, _, answer = client.response()
    assert status == 201, answer


def test_keep_alive_pipelining_http_1_0_and_100_continue_still_work(strict, clients):
    client = clients(strict)
    client.send(request("GET", "/health"))
    assert client.response()[0] == 200
    for byte in request("GET", "/health"):                    # the next one, a byte at a time
        client.send(bytes([byte]))
    assert client.response()[0] == 200
    client.send(request("GET", "/health") * 3)                # pipelined
    assert [client.response()[0] for _ in range(3)] == [200, 200, 200]

    old = clients(strict)
    old.send(request("GET", "/health", version="HTTP/1.0"))
    assert old.response()[0] == 200
    wait_for(old.closed_by_peer, timeout=5, what="HTTP/1.0's close after the answer")

    expecting = clients(strict)
    body = json.dumps(graph("continued")).encode()
    expecting.send(request("POST", "/graphs/", body, token=strict.token, Expect="100-continue"))
    assert expecting.response()[0] == 100
    expecting.send(body)
    assert expecting.response()[0] == 201


def test_a_chunked_post_gets_its_answer(strict, clients):
    client = clients(strict)
    body = json.dumps(graph("chunked")).encode()
    client.send(b"POST /graphs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {strict.token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for piece in (body[:10], body[10:]):
        client.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        time.sleep(0.1)                                        # a streaming client's pace
    client.send(b"0\r\n\r\n")
    status, _, answer = client.response()
    # The dispatcher wants a Content-Length (RequestLimits): chunked is answered, with its 411.
    assert status == 411 and "Content-Length" in json.loads(answer)["description"]
    client.send(request("GET", "/health"))                     # and the connection goes on
    assert client.response()[0] == 200
