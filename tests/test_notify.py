"""Tests of the sd_notify helper against a real AF_UNIX datagram socket, as systemd listens."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from puli import notify


@pytest.fixture(autouse=True)
def no_inherited_socket(monkeypatch):
    for variable in notify.SOCKET_VARIABLES + ("WATCHDOG_USEC",):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def listener(monkeypatch):
    """A datagram socket bound to NOTIFY_SOCKET, in a short directory (paths stop at 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="puli-notify-")
    path = os.path.join(directory, "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock
    shutil.rmtree(directory)


def receive(sock):
    return sock.recv(4096).decode()


def test_each_function_sends_its_message(listener):
    assert notify.ready("farm restored")
    assert notify.status("42 jobs, 7 render nodes")
    assert notify.watchdog()
    assert notify.stopping()
    assert notify.notify("EXTEND_TIMEOUT_USEC=5000000", "STATUS=restoring")
    assert [receive(listener) for _ in range(5)] == [
        "READY=1\nSTATUS=farm restored",
        "STATUS=42 jobs, 7 render nodes",
        "WATCHDOG=1",
        "STOPPING=1",
        "EXTEND_TIMEOUT_USEC=5000000\nSTATUS=restoring",
    ]


def test_abstract_socket_address(monkeypatch):
    name = f"puli-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.ready()
        assert receive(sock) == "READY=1"


def test_reserved_socket_is_still_used_and_hidden_from_others(listener):
    path = os.environ["NOTIFY_SOCKET"]
    notify.reserve_socket()
    assert "NOTIFY_SOCKET" not in os.environ
    assert os.environ["PULI_NOTIFY_SOCKET"] == path
    assert notify.watchdog()
    assert receive(listener) == "WATCHDOG=1"


def test_child_process_notifies_through_the_reserved_socket(listener):
    # What a gunicorn worker does after the arbiter's hook moved the variable.
    notify.reserve_socket()
    subprocess.run([sys.executable, "-c", "from puli import notify; notify.ready('child')"],
                   check=True, env=dict(os.environ))
    assert receive(listener) == "READY=1\nSTATUS=child"


def test_without_a_socket_nothing_is_sent():
    assert notify.ready("up") is False
    assert notify.watchdog() is False


def test_an_unreachable_socket_is_logged_not_raised(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify.status("x") is False
    assert "cannot notify systemd" in caplog.text


@pytest.mark.parametrize("usec, interval", [
    ("30000000", 15.0), ("1000000", 0.5), ("0", None), ("", None), ("soon", None), (None, None),
])
def test_watchdog_interval_is_half_the_timeout(monkeypatch, usec, interval):
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert notify.watchdog_interval() == interval
