"""Messages from the dispatcher to workers: assignments and stop orders.

`message()` runs under the farm lock and copies everything it needs out of the model;
`send()` runs on a sender thread, outside the lock.

Wire contract (worker side):
- ``POST http://<host>:<port>/commands/`` with the assignment body (model/outbox.py: Assign.body); 202 = accepted.
- ``DELETE http://<host>:<port>/commands/<id>/?assignment=<n>``: stop that run of the command.
"""
import json
import logging
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


def message(item):
    """The wire form of an outbox entry (model/outbox.py), built under the farm lock."""
    rn = item.render_node
    base = f"http://{rn.host}:{rn.port}"
    if isinstance(item, Assign):
        cmd = item.command
        body = json.dumps(item.body()).encode()
        return Message("assign", rn.name, f"{base}/commands/", cmd.id, item.assignment, body)
    return Message("stop", rn.name, f"{base}/commands/{item.command_id}/?assignment={item.assignment}",
                   item.command_id, item.assignment)


def send(msg, timeout):
    """Deliver one message; True when the worker accepted it."""
    method = "POST" if msg.kind == "assign" else "DELETE"
    request = urllib.request.Request(msg.url, data=msg.body or None, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except urllib.error.HTTPError as exc:
        if msg.kind == "stop" and exc.code == 404:
            return True                 # the worker no longer has it: stopped already
        log.warning("%s of command %d to %s refused: HTTP %d", msg.kind, msg.command_id, msg.rn_name, exc.code)
    except (OSError, ValueError) as exc:
        log.warning("%s of command %d to %s failed: %s", msg.kind, msg.command_id, msg.rn_name, exc)
    return False
