"""puliquery log: a command's log through the dispatcher (which reads it from the worker that
runs or ran it), followed live if asked."""
import sys
import time

from ..client.server import RequestError
from ..model.status import FINAL
from .common import Failed, UsageError, Unreachable, connect


def follow_log(server, command_id, stream, follow=False, tail=None, poll=0.5):
    """Print a command's log; with `follow`, go on until the command ends (the dispatcher waits
    a little for more on each request)."""
    params = {"tail": tail} if tail is not None else {}
    while True:
        try:
            text, headers = server.get_text(f"/commands/{command_id}/log",
                                            dict(params, follow=1) if follow and "offset" in params else params)
        except RequestError as exc:
            if exc.status == 404 and follow and "has not run yet" in exc.description:
                time.sleep(poll)
                continue
            if exc.status == 502:       # the dispatcher is there, the worker is not
                raise Unreachable(exc.description) from None
            raise Failed(str(exc)) from None
        stream.write(text)
        stream.flush()
        status = headers.get("X-Command-Status")
        if not follow or (status is not None and int(status) in FINAL):
            return
        size = headers.get("X-Log-Size")
        params = {"offset": int(size)} if size is not None else {}
        if not text:
            time.sleep(poll)


def cmd_log(args):
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail takes a number of lines (0 or more)")
    follow_log(connect(args), args.command, sys.stdout, args.follow, args.tail)
