"""The worker as systemd sees it: sd_notify on a real datagram socket, and a start while the
dispatcher is still away."""
import re

import pytest

from processes import Dispatcher, NotifySocket, free_port, wait_for
from puli.model.status import CommandStatus as CS
from test_worker_support import (WorkerProcess, farm, job, reaches, registered, submit,  # noqa: F401
                                 the_command)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def statuses(sock):
    return [line[len("STATUS="):] for _, message in sock.poll() for line in message.split("\n")
            if line.startswith("STATUS=")]


def test_ready_once_registered_then_watchdog_and_status_lines(farm, notify_socket):
    worker = farm.worker(notify=notify_socket, env={"WATCHDOG_USEC": "1000000"}).start()
    ready = notify_socket.wait("READY=1")
    assert [pid for pid, _ in ready] == [worker.proc.pid]
    assert registered(farm, worker.name), "READY=1 came before the registration"
    pings = lambda: [m for m in notify_socket.poll() if m[1] == "WATCHDOG=1"]  # noqa: E731
    wait_for(lambda: len(pings()) >= 3, 10, what="watchdog pings every half WATCHDOG_USEC")

    cmd_id = the_command(farm, submit(farm, job("seen", "sleep 1.5")))
    wait_for(lambda: f"running 1 command ({cmd_id})" in statuses(notify_socket), what="the running status")
    reaches(farm, cmd_id, CS.DONE, 20)
    wait_for(lambda: statuses(notify_socket)[-1] == "idle", what="the idle status")

    assert worker.terminate() == 0
    notify_socket.wait("STOPPING=1")


def test_a_worker_started_before_its_dispatcher_retries_with_backoff_then_registers(tmp_path, notify_socket):
    port = free_port()
    dispatcher = Dispatcher(tmp_path / "dispatcher", port=port)
    worker = WorkerProcess(dispatcher.url, tmp_path / "worker", notify=notify_socket,
                           token=dispatcher.worker_token())
    try:
        worker.start()
        # Attempts 1, 2 and 3 come 1 s then 2 s apart: a backoff, not a tight loop.
        waiting = wait_for(lambda: [s for s in statuses(notify_socket) if s.startswith("waiting")][2:], 10,
                           what="three registration attempts")
        assert re.search(r"attempt 3\)$", waiting[0]), waiting
        extensions = [line for _, m in notify_socket.messages for line in m.split("\n")
                      if line.startswith("EXTEND_TIMEOUT_USEC=")]
        assert extensions, "systemd must be told the start takes longer"
        assert not [m for _, m in notify_socket.messages if "READY=1" in m]

        dispatcher.start()
        wait_for(lambda: registered(dispatcher, worker.name), 30, what="the registration")
        notify_socket.wait("READY=1")
        attempts = [s for s in statuses(notify_socket) if s.startswith("waiting")]
        assert len(attempts) <= 8, attempts
    finally:
        worker.close()
        dispatcher.close()
