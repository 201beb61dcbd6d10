"""GET /commands/<id>/log: a command's log, read from the worker that runs (or ran) it, so that
users never need to reach render nodes (whose API answers the dispatcher only)."""
import http.client
import threading
import time
import urllib.parse

import falcon

from ...model import lookup
from ...model.status import ACTIVE
from .. import delivery

FOLLOW_WAIT = 5.0       # s a follow request waits for more of a running command's log
FOLLOWERS = 2           # requests that may wait at once: each holds one of the request threads
POLL = 0.5


class CommandLog:
    def __init__(self, service):
        self.service = service
        self.followers = threading.BoundedSemaphore(FOLLOWERS)

    def on_get(self, req, resp, id):
        """?offset= (bytes), ?tail= (lines), ?follow=1: wait a little for more while it runs."""
        offset = req.get_param_as_int("offset", min_value=0, max_value=2**62)
        tail = req.get_param_as_int("tail", min_value=0, max_value=1_000_000)
        follow = req.get_param_as_bool("follow", default=False)
        params = {k: v for k, v in (("offset", offset), ("tail", tail)) if v is not None}
        url, secret, running, where = self._where(id)
        text, size = self._read(url, secret, params, id, where)
        if follow and running and not text and self.followers.acquire(blocking=False):
            try:
                deadline = time.monotonic() + FOLLOW_WAIT
                while not text and running and time.monotonic() < deadline:
                    time.sleep(POLL)
                    url, secret, running, where = self._where(id)
                    text, size = self._read(url, secret, params, id, where)
            finally:
                self.followers.release()
        with self.service.lock:
            status = lookup.get_command(self.service.farm, id).status
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = text
        if size is not None:
            resp.set_header("X-Log-Size", str(size))
        resp.set_header("X-Command-Status", str(int(status)))

    def _where(self, command_id):
        """(log URL, secret, running, render node name) of the command's last run."""
        with self.service.lock:
            cmd = lookup.get_command(self.service.farm, command_id)
            rn = cmd.render_node
            if rn is None:
                raise falcon.HTTPNotFound(title="Not found",
                                          description=f"command {command_id} has not run yet: no log")
            return (f"{delivery.worker_base(rn)}/commands/{command_id}/log", rn.secret,
                    cmd.status in ACTIVE, rn.name)

    def _read(self, url, secret, params, command_id, where):
        full = f"{url}?{urllib.parse.urlencode(params)}" if params else url
        try:
            answer = delivery.fetch(full, secret, self.service.worker_timeout, self.service.worker_tls)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise falcon.HTTPBadGateway(title="The worker cannot be reached",
                                        description=f"cannot reach the worker {where} for the log of "
                                                    f"command {command_id}: {str(exc) or type(exc).__name__}"
                                        ) from None
        if answer.status == 404:
            raise falcon.HTTPNotFound(title="Not found",
                                      description=f"the worker has no log of command {command_id}")
        if not 200 <= answer.status < 300:
            raise falcon.HTTPBadGateway(title="The worker refused",
                                        description=f"the worker {where} answered HTTP {answer.status} for "
                                                    "the log")
        size = answer.headers.get("X-Log-Size", "")
        return answer.body.decode("utf-8", "replace"), int(size) if size.isascii() and size.isdigit() else None


def routes(service):
    return [("/commands/{id:int}/log", CommandLog(service))]
