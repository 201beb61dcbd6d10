"""systemd's notification protocol (sd_notify): readiness, status line, watchdog and stop notice."""

import logging
import os
import socket

log = logging.getLogger(__name__)

# systemd's own variable, and where a process that must keep it from a parent moves it: gunicorn's
# arbiter sends READY=1 itself whenever NOTIFY_SOCKET is set, before the farm is restored, so
# the dispatcher's gunicorn hook calls reserve_socket() and the app notifies when really ready.
SOCKET_VARIABLES = ("NOTIFY_SOCKET", "PULI_NOTIFY_SOCKET")


def _address() -> str | None:
    for variable in SOCKET_VARIABLES:
        address = os.environ.get(variable)
        if address:
            # "@name" is a Linux abstract socket, whose real name starts with a NUL byte.
            return "\0" + address[1:] if address.startswith("@") else address
    return None


def reserve_socket() -> None:
    """Move NOTIFY_SOCKET to PULI_NOTIFY_SOCKET, so that only this module's calls reach systemd."""
    address = os.environ.pop("NOTIFY_SOCKET", None)
    if address:
        os.environ["PULI_NOTIFY_SOCKET"] = address


def notify(*lines: str) -> bool:
    """Send one message of ``lines`` such as "READY=1"; False when there is no socket or it failed.

    A failure is logged, not raised: losing a status line must not stop the service.
    """
    address = _address()
    if address is None:
        return False
    message = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        log.warning("cannot notify systemd at %r: %s", address.replace("\0", "@", 1), exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the service is up (it is started, and dependents may start)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    """Set the one-line status that ``systemctl status`` shows."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """Ping the watchdog; without pings for WatchdogSec, systemd kills and restarts the service."""
    return notify("WATCHDOG=1")


def stopping(status: str | None = None) -> bool:
    """Tell systemd the service is shutting down."""
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), or None without a watchdog.

    WATCHDOG_PID is deliberately not compared with our PID, as sd_watchdog_enabled() does:
    the dispatcher pings from its gunicorn worker, a child of the process systemd started.
    """
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None
