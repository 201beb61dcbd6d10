"""Messages from the dispatcher to workers: assignments and stop orders.

`message()` runs under the farm lock and copies everything it needs out of the model;
`send()` runs on a sender thread, outside the lock.

Wire contract (worker side), over http or https as the worker registered, each request with
``Authorization: Bearer <the secret the worker gave at its registration>``:
- ``POST /commands/`` with the assignment body (model/outbox.py: Assign.body); 202 = accepted.
- ``DELETE /commands/<id>/?assignment=<n>``: stop that run of the command.
- ``GET /commands/<id>/log`` (the dispatcher's log route reads it there).
"""
import functools
import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..model.outbox import Assign

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


def worker_base(rn):
    """Under the lock: the URL of a render node's worker API."""
    return f"{rn.scheme}://{rn.host}:{rn.port}"


@functools.lru_cache(maxsize=4)
def tls_context(ca_file=None):
    """The TLS context workers' certificates are checked with (their CA, or the system's).
    Loading the system's CAs takes tens of milliseconds: one context per file serves all."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def request(url, secret, method="GET", data=None):
    """A request to a worker, with its secret."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return urllib.request.Request(url, data=data, method=method, headers=headers)


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
    """Deliver one message; True when the worker accepted it."""
    method = "POST" if msg.kind == "assign" else "DELETE"
    try:
        with urllib.request.urlopen(request(msg.url, msg.secret, method, msg.body or None),
                                    timeout=timeout, context=context) as response:
            return 200 <= response.status < 300
    except urllib.error.HTTPError as exc:
        if msg.kind == "stop" and exc.code == 404:
            return True                 # the worker no longer has it: stopped already
        log.warning("%s of command %d to %s refused: HTTP %d", msg.kind, msg.command_id, msg.rn_name, exc.code)
    except (OSError, ValueError) as exc:
        log.warning("%s of command %d to %s failed: %s", msg.kind, msg.command_id, msg.rn_name, exc)
    return False
