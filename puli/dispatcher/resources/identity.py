"""Tokens (admins make, list and revoke them) and the audit trail (wranglers and admins read it)."""
import time

import falcon

from ...config import Duration
from ..errors import BadField
from .common import field, parse_date, read_body


def _duration(name, text):
    try:
        return Duration(minimum=1).from_text(text)
    except ValueError as exc:
        raise BadField(name, f"'{name}': {exc} (a duration: 30d, 12h, 90m)") from None


class Tokens:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        resp.media = {"tokens": self.service.tokens.list()}

    def on_post(self, req, resp):
        """A new token: its value is in this answer only (the dispatcher keeps its hash)."""
        body = read_body(req)
        user = field(body, "user", str)
        role = field(body, "role", str)
        node = field(body, "node", str, None, nullable=True)
        expires = field(body, "expires", str, None, nullable=True)
        seconds = _duration("expires", expires) if expires else None
        try:
            token, row = self.service.tokens.create(user, role, node.lower() if node else None,
                                                    self.service.now() + seconds if seconds else None)
        except ValueError as exc:
            raise BadField("role" if "role" in str(exc) else "user", str(exc)) from None
        resp.status = 201
        resp.media = {"token": token, "id": row["id"], "user": row["user"], "role": row["role"],
                      "node": row["node"], "expires": row["expires"]}


class Token:
    def __init__(self, service):
        self.service = service

    def on_delete(self, req, resp, id):
        revoked = self.service.tokens.revoke(ids=[id])
        if not revoked:
            raise falcon.HTTPNotFound(title="Not found", description=f"no token {id} that is not revoked already")
        resp.media = {"revoked": revoked}


class Audit:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        """Who did what, newest first: ?user=, ?since= (a duration back, or a date), ?job=."""
        since = req.get_param("since") or None       # ?since= (empty): no bound, as when absent
        if since is not None:
            try:
                since = time.time() - Duration().from_text(since)
            except ValueError:
                since = parse_date("since", since)
        limit = req.get_param_as_int("limit", min_value=1, max_value=10_000, default=100)
        job = req.get_param_as_int("job", min_value=1)
        resp.media = {"records": self.service.audit_trail(user=req.get_param("user"), since=since,
                                                          job=job, limit=limit)}


def routes(service):
    return [
        ("/tokens", Tokens(service)),
        ("/tokens/{id:int}", Token(service)),
        ("/audit", Audit(service)),
    ]
