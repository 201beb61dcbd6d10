"""The worker's report sender against a real HTTP server playing the dispatcher: coalescing,
urgency, the dispatcher's stop answers, and backoff while it fails."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from processes import free_port, wait_for
from puli.worker.client import Client
from puli.worker.sender import DELIVERED, DROPPED, STOP, Sender


class FakeDispatcher:
    """Records every command report; answers with `self.status` (or per command id)."""

    def __init__(self):
        self.received = []
        self.status = 200
        self.by_command = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.received.append((time.monotonic(), body))
                status = fake.by_command.get(body["id"], fake.status)
                data = json.dumps({"stop": True} if status == 409 else {"id": body["id"]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self):
        return [body for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dispatcher():
    fake = FakeDispatcher()
    yield fake
    fake.close()


def report(command_id, status=3, completion=0.0):
    return {"id": command_id, "assignment": 1, "status": status, "completion": completion}


def outcomes(sender, count):
    """(report, outcome) pairs, once `count` came back."""
    found = []
    wait_for(lambda: found.extend(sender.results()) or len(found) >= count, 10, what=f"{count} outcomes")
    return [(report, outcome) for report, outcome, _ in found]


def test_progress_is_coalesced_and_a_status_change_goes_at_once(dispatcher):
    # Progress waits an hour here: the waits below end in time only for reports that went at once.
    sender = Sender(Client(dispatcher.url, "rn:8000"), progress_interval=3600.0)
    sender.start()
    try:
        sender.put(report(7), urgent=True)
        wait_for(lambda: len(dispatcher.received) == 1, what="the RUNNING report")
        for step in range(1, 11):
            sender.put(report(7, completion=step / 10))
        sender.put(report(9), urgent=True)
        wait_for(lambda: len(dispatcher.received) == 3, what="the urgent report, with the latest progress")
        assert dispatcher.bodies()[1:] == [report(7, completion=1.0), report(9)]
        sender.put(report(7, status=5, completion=1.0), urgent=True)
        assert (report(7, status=5, completion=1.0), DELIVERED) in outcomes(sender, 4)
    finally:
        sender.close(timeout=1)


def test_the_dispatchers_stop_answers_and_refusals_come_back_to_the_loop(dispatcher):
    dispatcher.by_command = {1: 409, 2: 404, 3: 400, 4: 200}
    sender = Sender(Client(dispatcher.url, "rn:8000"))
    sender.start()
    try:
        for command_id in (1, 2, 3, 4):
            sender.put(report(command_id), urgent=True)
        found = {r["id"]: outcome for r, outcome in outcomes(sender, 4)}
        assert found == {1: STOP, 2: STOP, 3: DROPPED, 4: DELIVERED}
    finally:
        sender.close(timeout=1)


def test_a_failing_dispatcher_is_retried_with_backoff_and_the_last_report_delivered(dispatcher):
    dispatcher.status = 503
    sender = Sender(Client(dispatcher.url, "rn:8000"), progress_interval=0.1, first_backoff=0.2, max_backoff=1.0)
    sender.start()
    try:
        sender.put(report(5, completion=0.1), urgent=True)
        wait_for(lambda: len(dispatcher.received) >= 4, 10, what="retries")
        gaps = [b[0] - a[0] for a, b in zip(dispatcher.received, dispatcher.received[1:])]
        # Each retry waits at least its backoff, doubled from the first: lower bounds only.
        assert all(gap >= backoff for gap, backoff in zip(gaps, (0.2, 0.4, 0.8))), gaps
        sender.put(report(5, completion=0.6))      # a newer report replaces the one retried
        dispatcher.status = 200
        (delivered, outcome), = outcomes(sender, 1)
        assert outcome == DELIVERED and delivered["completion"] == 0.6
    finally:
        sender.close(timeout=1)


def test_reports_to_an_unreachable_dispatcher_wait_and_close_gives_up_keeping_them():
    sender = Sender(Client(f"http://127.0.0.1:{free_port()}", "rn:8000"), first_backoff=0.2)
    sender.start()
    sender.put(report(1), urgent=True)
    wait_for(lambda: sender.backoff > 0, what="a failed attempt")
    sender.close(timeout=0.5)
    # It gave up: its thread ends, the report is kept (for the next worker), none delivered.
    wait_for(lambda: not sender.thread.is_alive(), what="the sender's thread to end")
    assert sender.backlog() == 1 and sender.results() == []
