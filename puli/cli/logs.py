"""puliquery log: a command's log, from the worker that runs (or ran) it, followed live if asked."""
import sys
import time

from ..client.server import Server, ServerUnreachable
from ..model.status import FINAL
from .common import Failed, UsageError, Unreachable, api_path, connect


def _worker_of(server, rn_name):
    rn = server.get(api_path("rendernodes", rn_name))
    return rn_name, Server(f"http://{rn['host']}:{rn['port']}")


def _read_log(worker, command_id, params):
    name, client = worker
    try:
        text, headers = client.get_text(f"/commands/{command_id}/log", params)
    except ServerUnreachable as exc:
        raise Unreachable(f"cannot reach the worker {name} at {client.url} for the log: {exc.reason}") from None
    size = {k.lower(): v for k, v in headers.items()}.get("x-log-size")
    return text, int(size) if size is not None else None


def follow_log(server, command_id, stream, follow=False, tail=None, poll=0.5):
    """Print a command's log as its worker serves it; with `follow`, go on until the command ends."""
    cmd = server.get(f"/commands/{command_id}")
    while cmd["renderNode"] is None:
        if not follow:
            raise Failed(f"command {command_id} has not run yet ({cmd['statusName']}): no log")
        time.sleep(poll)
        cmd = server.get(f"/commands/{command_id}")
    worker = _worker_of(server, cmd["renderNode"])
    params = {"tail": tail} if tail is not None else {}
    while True:
        ended = cmd["status"] in FINAL
        text, size = _read_log(worker, command_id, params)
        stream.write(text)
        stream.flush()
        if not follow or ended:
            return
        if size is not None:
            params = {"offset": size}
        time.sleep(poll)
        cmd = server.get(f"/commands/{command_id}")
        if cmd["renderNode"] and cmd["renderNode"] != worker[0]:
            worker = _worker_of(server, cmd["renderNode"])
            params = {}
            stream.write(f"--- command {command_id} now runs on {worker[0]} ---\n")


def cmd_log(args):
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail takes a number of lines (0 or more)")
    follow_log(connect(args), args.command, sys.stdout, args.follow, args.tail)
