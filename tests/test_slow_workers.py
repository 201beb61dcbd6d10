"""Slow workers must not stall deliveries: each request to a worker has a total deadline, and the
senders serve each render node in order, one message at a time, so that a slow node holds one
sender thread and the others go on.

Slow workers are played by HTTP servers on loopback that read the dispatcher's request whole,
then trickle their answer a byte at a time, or hold it until the test lets it go.
"""
import http.client
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from processes import Dispatcher, StandInWorker, wait_for
from puli.dispatcher import delivery
from puli.dispatcher import senders as senders_module
from puli.dispatcher.senders import Senders
from puli.dispatcher.service import SENDERS
from puli.model.status import CommandStatus as CS

TRICKLE = 0.1           # s between two bytes of a trickled answer


class SlowWorker:
    """A render node whose worker takes its time with every request it reads.

    "trickle": the status line, then a header a byte at a time, never ending (an answer that
    would hold a reader with a per-read timeout for ever); "held": no answer until `gate` is
    set, then a 202 at once. `events` records what happened, in order: ("received", method,
    path), ("answering", method, path), ("dropped", method, path) when the dispatcher hung up.
    """

    def __init__(self, behaviour, tls=None):
        self.behaviour = behaviour
        self.events = []
        self.gate = threading.Event()
        self.closing = threading.Event()
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                worker._handle(self)

            def do_DELETE(self):
                worker._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.name = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, handler):
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        what = (handler.command, handler.path)
        self.events.append(("received", *what))
        try:
            if self.behaviour == "trickle":
                handler.wfile.write(b"HTTP/1.1 202 Accepted\r\nX-Slow: ")
                while not self.closing.wait(TRICKLE):
                    handler.wfile.write(b"a")
                return
            if not self.gate.wait(60) or self.closing.is_set():
                return
            self.events.append(("answering", *what))
            handler.wfile.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                                b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        except OSError:
            self.events.append(("dropped", *what))
        handler.close_connection = True

    def received(self, method):
        return [e for e in self.events if e[0] == "received" and e[1] == method]

    def register(self, dispatcher, cores=1, pools=()):
        return dispatcher.call("POST", f"/rendernodes/{self.name}/", {
            "name": self.name, "host": "127.0.0.1", "port": self.port, "cores": cores, "ram": 16000,
            "speed": 3.0, "caracteristics": {"os": "linux"}, "puliversion": "test", "pools": list(pools),
            "commands": []})

    def close(self):
        self.closing.set()
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def closing():
    """Things to close at the end of the test, whatever happened: `closing.append(thing)`."""
    things = []
    yield things
    for thing in reversed(things):
        thing.close()


def submit(dispatcher, name, frames, pool):
    """A job of one task of `frames` one-core commands in `pool`; its commands' ids."""
    task = {"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
            "arguments": {"cmd": "echo %%MI_FRAME%%", "start": 1, "end": frames}}
    status, body = dispatcher.call("POST", "/graphs/", {"name": name, "root": 0, "user": "ann",
                                                        "poolName": pool, "tasks": [task]})
    assert status == 201, body
    job_id = body["id"]
    status, body = dispatcher.get(f"/tasks/{job_id}/commands")
    assert status == 200, body
    return job_id, [c["id"] for c in body["commands"]]


def command(dispatcher, command_id):
    status, body = dispatcher.get(f"/commands/{command_id}")
    assert status == 200, body
    return body


def assigned_ids(worker):
    return {a["id"] for a in worker.assignments}


# -- through a real dispatcher --------------------------------------------------------------------
def test_more_trickling_nodes_than_senders_do_not_hold_back_the_deliveries_to_a_good_one(tmp_path, closing):
    dispatcher = Dispatcher(tmp_path / "dispatcher", extra=("--set", "worker_request_timeout=1"))
    closing.append(dispatcher)
    dispatcher.start()
    slow = []
    for _ in range(SENDERS + 4):        # more than the dispatcher's sender threads
        node = SlowWorker("trickle")
        closing.append(node)
        assert node.register(dispatcher, cores=1, pools=["shared"])[0] in (200, 201)
        slow.append(node)
    _, first = submit(dispatcher, "to_the_slow", len(slow), "shared")
    wait_for(lambda: all(node.received("POST") for node in slow), what="an assignment to every slow node")

    # Every slow node is busy trickling its answer; a good node joins and gets work.
    good = StandInWorker()
    closing.append(good)
    # Room for every command (a stand-in worker ends none).
    assert good.register(dispatcher, cores=len(slow) + 8, pools=["shared", "good"])[0] in (200, 201)
    _, second = submit(dispatcher, "to_the_good", 5, "good")
    wait_for(lambda: set(second) <= assigned_ids(good), what="the good node's assignments")

    # Each slow node's delivery was given up after the deadline: its command went back to the
    # queue, and from there to the good node, not to a slow one again (they are unreachable).
    wait_for(lambda: set(first) <= assigned_ids(good), timeout=60,
             what="the slow nodes' commands to be given to the good node")
    for command_id in first + second:
        assert command(dispatcher, command_id)["renderNode"] == good.name
    for node in slow:
        assert len(node.received("POST")) == 1, node.events
    assert len(good.assignments) == len(first) + len(second)

    # The slow nodes get nothing more until they are heard from: with the good node paused,
    # a new command waits for the one slow node that heartbeats, and goes there. It heartbeats
    # on a schedule, as a worker does: the stop order that followed its lost assignment may
    # still be trickling, and when that one goes unanswered too, what waits behind it is
    # given up and the node is unreachable again until its next heartbeat.
    assert dispatcher.call("PUT", f"/rendernodes/{good.name}/paused", {"paused": True})[0] == 200
    _, after = submit(dispatcher, "after_the_slow", 1, "shared")
    back = slow[7]

    def heartbeat_and_see_an_assignment():
        assert dispatcher.call("PUT", f"/rendernodes/{back.name}/sysinfos", {})[0] == 200
        return len(back.received("POST")) >= 2
    wait_for(heartbeat_and_see_an_assignment, interval=0.5, what="an assignment to the node heard from again")
    # No stop order for an assignment that was given up unsent: one would wait in front of
    # the next assignment, go unanswered, and take it down with it, again and again.
    second_post = [i for i, e in enumerate(back.events) if e[:2] == ("received", "POST")][1]
    assert not [e for e in back.events[:second_post] if e[1] == "DELETE" and e[2].startswith(f"/commands/{after[0]}/")]
    assert [len(node.received("POST")) for node in slow if node is not back] == [1] * (len(slow) - 1)


def test_a_stop_order_waits_for_the_assignment_before_it_on_the_same_node(tmp_path, closing):
    dispatcher = Dispatcher(tmp_path / "dispatcher", extra=("--set", "worker_request_timeout=10"))
    closing.append(dispatcher)
    dispatcher.start()
    held = SlowWorker("held")
    closing.append(held)
    assert held.register(dispatcher, cores=1, pools=["order"])[0] in (200, 201)
    job_id, (on_held, on_good) = submit(dispatcher, "in_order", 2, "order")
    wait_for(lambda: held.received("POST"), what="the assignment to the holding node")

    # The second command goes to another node, whose stop order leaves in the same delivery as
    # the held node's: once it has arrived, the held node's waits in the senders.
    good = StandInWorker()
    closing.append(good)
    assert good.register(dispatcher, cores=1, pools=["order"])[0] in (200, 201)
    wait_for(lambda: assigned_ids(good) == {on_good}, what="the assignment to the good node")
    status, body = dispatcher.call("PUT", f"/nodes/{job_id}/cancel")
    assert status == 200, body
    wait_for(lambda: good.stops, what="the good node's stop order")
    assert not held.received("DELETE"), held.events       # it waits for the assignment's answer

    held.gate.set()
    wait_for(lambda: ("answering", "DELETE") in [e[:2] for e in held.events], what="the held node's stop order")
    assert [e[:2] for e in held.events] == [("received", "POST"), ("answering", "POST"),
                                            ("received", "DELETE"), ("answering", "DELETE")]
    assert held.events[0][2] == "/commands/"
    assert held.events[2][2].startswith(f"/commands/{on_held}/?assignment=")
    assert command(dispatcher, on_held)["status"] == command(dispatcher, on_good)["status"] == int(CS.CANCELED)


# -- the deadline of one request ------------------------------------------------------------------
def assign_message(node, scheme="http"):
    return delivery.Message("assign", node.name, f"{scheme}://{node.name}/commands/", 1, 1, b"{}", "s" * 16)


def in_a_thread(function, *args, guard=20.0):
    """`function(*args)` on a thread that must end within `guard` seconds; its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    thread.join(guard)
    assert not thread.is_alive(), f"{function.__name__} still runs after {guard:g} s"
    return result[0]


@pytest.fixture
def tls(tmp_path):
    """(server context, client context) of a self-signed certificate for 127.0.0.1."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, delivery.tls_context(str(tmp_path / "cert.pem"))


@pytest.mark.parametrize("behaviour", ["trickle", "held"])
def test_a_delivery_is_given_up_at_its_deadline_whatever_the_worker_sends(behaviour, closing):
    node = SlowWorker(behaviour)
    closing.append(node)
    outcome = in_a_thread(delivery.send, assign_message(node), 0.5)
    assert outcome is delivery.Outcome.UNANSWERED
    assert node.received("POST")


def test_the_deadline_holds_over_tls_and_a_prompt_worker_is_answered(tls, closing):
    server, client = tls
    node = SlowWorker("trickle", tls=server)
    closing.append(node)
    assert in_a_thread(delivery.send, assign_message(node, "https"), 0.5, client) is delivery.Outcome.UNANSWERED
    assert node.received("POST")
    prompt = SlowWorker("held", tls=server)
    closing.append(prompt)
    prompt.gate.set()
    answer = in_a_thread(delivery.fetch, f"https://{prompt.name}/commands/", None, 5.0, client, "POST", b"{}")
    assert (answer.status, answer.body) == (202, b"{}")
    with pytest.raises(ssl.SSLCertVerificationError):       # and TLS is still checked
        delivery.fetch(f"https://{prompt.name}/commands/", None, 5.0, ssl.create_default_context(), "POST", b"{}")


def test_a_worker_that_closes_without_an_answer_is_unanswered(closing):
    class Hangup(BaseHTTPRequestHandler):
        def do_POST(self):
            self.close_connection = True

        do_DELETE = do_POST

        def log_message(self, *args):
            pass

    server = Served(Hangup)
    closing.append(server)
    with pytest.raises(http.client.HTTPException):
        delivery.fetch(f"{server.url}/commands/", None, 5.0, method="POST", data=b"{}")
    assert in_a_thread(delivery.send, delivery.Message("stop", "hangup", f"{server.url}/commands/1/", 1, 1),
                       5.0) is delivery.Outcome.UNANSWERED


class Served:
    """A ThreadingHTTPServer on loopback, served on a thread."""

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -- the senders --------------------------------------------------------------------------------
class Recorder:
    """The senders' `send` and `give_up`, recording what went where. A message to a node of
    `held` waits for `gates[node]` (and sets `sending[node]` meanwhile); a node of `dead`
    never answers."""

    def __init__(self, held=(), dead=()):
        self.sent = []
        self.given_up = []
        self.gates = {name: threading.Event() for name in held}
        self.sending = {name: threading.Event() for name in held}
        self.dead = set(dead)

    def send(self, msg):
        if msg.rn_name in self.gates:
            self.sending[msg.rn_name].set()
            assert self.gates[msg.rn_name].wait(30)
        self.sent.append((msg.rn_name, msg.kind, msg.command_id))
        return msg.rn_name not in self.dead

    def give_up(self, msg):
        self.given_up.append((msg.rn_name, msg.kind, msg.command_id))

    def release(self):
        for gate in self.gates.values():
            gate.set()


def note(node, kind, command_id):
    return delivery.Message(kind, node, f"http://{node}/commands/", command_id, 1)


def test_senders_keep_each_nodes_order_and_let_the_others_past_a_stuck_one():
    recorder = Recorder(held=["stuck"])
    senders = Senders(recorder.send, recorder.give_up, threads=2)
    try:
        senders.submit(note("stuck", "assign", 1))
        senders.submit(note("stuck", "stop", 1))
        assert recorder.sending["stuck"].wait(10)
        for command_id in range(2, 12):         # one thread is held: the other serves these
            senders.submit(note("ok", "assign", command_id))
        wait_for(lambda: len(recorder.sent) == 10, what="the other node's messages")
        assert recorder.sent == [("ok", "assign", i) for i in range(2, 12)]
        recorder.release()
        wait_for(lambda: len(recorder.sent) == 12, what="the stuck node's messages")
        assert recorder.sent[10:] == [("stuck", "assign", 1), ("stuck", "stop", 1)]
        assert recorder.given_up == []
    finally:
        recorder.release()
        senders.shutdown()


def test_senders_give_up_what_waits_behind_an_unanswered_message_then_try_again():
    recorder = Recorder(held=["dead"], dead=["dead"])
    senders = Senders(recorder.send, recorder.give_up, threads=2)
    try:
        senders.submit(note("dead", "assign", 2))
        assert recorder.sending["dead"].wait(10)
        senders.submit(note("dead", "stop", 3))
        senders.submit(note("dead", "assign", 4))
        recorder.release()                      # ...and it does not answer
        wait_for(lambda: len(recorder.given_up) == 2, what="the messages behind the unanswered one")
        assert recorder.sent == [("dead", "assign", 2)]
        assert recorder.given_up == [("dead", "stop", 3), ("dead", "assign", 4)]
        senders.submit(note("dead", "stop", 5))          # a later one is tried
        wait_for(lambda: ("dead", "stop", 5) in recorder.sent, what="a later message to that node")
    finally:
        recorder.release()
        senders.shutdown()


def test_a_node_has_a_bounded_number_of_messages_waiting(monkeypatch):
    monkeypatch.setattr(senders_module, "MAX_WAITING", 2)
    recorder = Recorder(held=["slow"])
    senders = Senders(recorder.send, recorder.give_up, threads=1)
    try:
        senders.submit(note("slow", "assign", 1))
        assert recorder.sending["slow"].wait(10)
        for command_id in (2, 3, 4):
            senders.submit(note("slow", "stop", command_id))
        assert recorder.given_up == [("slow", "stop", 4)]
        recorder.release()
        wait_for(lambda: len(recorder.sent) == 3, what="the messages that waited")
        assert [m[2] for m in recorder.sent] == [1, 2, 3]
    finally:
        recorder.release()
        senders.shutdown()


def test_senders_stop_after_sending_what_waits_and_give_up_what_comes_later():
    recorder = Recorder(held=["stuck"])
    senders = Senders(recorder.send, recorder.give_up, threads=1)
    senders.submit(note("stuck", "assign", 1))
    assert recorder.sending["stuck"].wait(10)
    senders.submit(note("stuck", "stop", 1))
    senders.submit(note("ok", "assign", 2))
    recorder.release()
    senders.shutdown()
    assert sorted(recorder.sent) == [("ok", "assign", 2), ("stuck", "assign", 1), ("stuck", "stop", 1)]
    senders.submit(note("ok", "assign", 3))
    assert recorder.given_up == [("ok", "assign", 3)]
