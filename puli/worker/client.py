"""The worker's calls to the dispatcher: register, heartbeat, paused state and command reports.

One Client per thread, each keeping its connection alive between calls; each call answers an
Answer, whatever the status, or raises Unreachable when no answer came. Plain http.client: a
report costs a fraction of what it costs through requests, and the worker sends many.
"""
import functools
import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass

TIMEOUT = 5.0       # s to connect, and to wait for an answer: a dispatcher this slow is down


class Unreachable(Exception):
    """The dispatcher did not answer (refused, timed out, or the connection broke)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict

    @property
    def ok(self):
        return 200 <= self.status < 300

    def reason(self):
        """The dispatcher's description of an error, for the log."""
        return self.body.get("description") or self.body.get("title") or f"HTTP {self.status}"


class Client:
    def __init__(self, url, name, timeout=TIMEOUT, token="", ca_file=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            self.connection_class = functools.partial(http.client.HTTPSConnection, context=context)
        else:
            self.connection_class = http.client.HTTPConnection
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.netloc = parts.netloc
        self.base = f"{parts.path.rstrip('/')}/rendernodes/{urllib.parse.quote(name, safe=':')}"
        self.timeout = timeout
        self.connection = None

    def register(self, body):
        return self._call("POST", "/", body)

    def heartbeat(self, body):
        return self._call("PUT", "/sysinfos", body)

    def set_paused(self, paused, killproc):
        return self._call("PUT", "/paused", {"paused": paused, "killproc": killproc})

    def report(self, report):
        return self._call("PUT", f"/commands/{report['id']}/", report)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _call(self, method, path, body):
        data = json.dumps(body).encode()
        headers = self.headers
        while True:
            reused = self.connection is not None
            if not reused:
                self.connection = self.connection_class(self.netloc, timeout=self.timeout)
            try:
                self.connection.request(method, self.base + path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused:
                    continue    # the dispatcher closed the idle connection: once more, anew
                raise Unreachable(str(exc) or type(exc).__name__) from None
            if response.will_close:
                self.close()
            try:
                answer = json.loads(payload) if payload else {}
            except ValueError:
                answer = {}
            return Answer(response.status, answer if isinstance(answer, dict) else {})
