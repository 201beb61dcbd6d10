"""Who may do what: identities from bearer tokens (kept hashed), and the middleware that holds
every route to the role openapi.py declares for it, once, and publishes.

Roles: viewer (reads everything) < artist (submits; acts on its own jobs) < wrangler (acts on
every job, render node and pool share) < admin (everything: pools, licenses, tokens, archive);
and worker, apart: only the routes workers call, only for its own render node.
"""
import hashlib
import json
import logging
import secrets
import threading

import falcon

from ..model.limits import NAME_CHARS
from . import sessions

log = logging.getLogger("puli.dispatcher.auth")

HUMAN_ROLES = ("viewer", "artist", "wrangler", "admin")     # each admits the ones before it
WORKER = "worker"
PUBLIC = "public"                                           # no token needed (probes, the API document)
ROLES = (*HUMAN_ROLES, WORKER)
_RANK = {role: rank for rank, role in enumerate(HUMAN_ROLES)}

TOKEN_PREFIX = "puli_"
RECHECK = 30.0          # s a verified token is trusted before the database is asked again
MISS_MEMORY = 4096      # unknown digests remembered (not asked again for RECHECK): a flood of
                        # made-up tokens costs the database nothing

HOW_TO = ("pass a token as 'Authorization: Bearer <token>' (PULI_TOKEN or --token for the Puli "
          "tools; an admin makes one with 'puli-dispatcher tokens create')")


def new_token():
    """A fresh token: 256 random bits, prefixed so that secret scanners know it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


class Identity:
    """Who a request comes from."""

    __slots__ = ("user", "role", "node", "token_id")

    def __init__(self, user, role, node=None, token_id=None):
        self.user = user
        self.role = role
        self.node = node                # a worker token's render node (None: any node)
        self.token_id = token_id

    def admits(self, role):
        """True when this identity has `role` or a human role ranked above it."""
        if role == PUBLIC:
            return True
        if self.role == WORKER or role == WORKER:
            return self.role == role
        return _RANK[self.role] >= _RANK[role]


# auth: false — a single trusted machine: every request may do everything.
TRUSTED = Identity("-", "admin")


class Unauthenticated(Exception):
    """No token, or one that is unknown, expired or revoked: the reason says which."""


class Tokens:
    """The dispatcher's tokens: each verified against the database once, then kept by digest
    and checked again every RECHECK seconds, so that one revoked or created with
    `puli-dispatcher tokens` while the dispatcher runs counts within that delay. Without a store
    (tests) they live in memory only."""

    def __init__(self, store, clock):
        self.store = store
        self.clock = clock
        self.lock = threading.Lock()
        self.known = {}                 # digest -> (row, checked at)
        self.unknown = {}               # digest -> checked at
        self.memory = {}                # digest -> row, when there is no store
        self.used = {}                  # token id -> last use, for the flusher to write

    # -- checking ---------------------------------------------------------------------------
    def identify(self, token):
        """The Identity of a token; Unauthenticated otherwise."""
        return self.identify_digest(digest(token))

    def identify_digest(self, key):
        """The Identity of the token of that digest (a monitor's session keeps only it)."""
        now = self.clock()
        with self.lock:
            known = self.known.get(key)
            missed = self.unknown.get(key)
        if known is not None and now - known[1] < RECHECK:
            row = known[0]
        elif missed is not None and now - missed < RECHECK:
            raise Unauthenticated("unknown token")
        else:
            row = self._fetch(key, known)
            with self.lock:
                if row is None:
                    if len(self.unknown) >= MISS_MEMORY:
                        self.unknown.clear()
                    self.unknown[key] = now
                else:
                    self.known[key] = (row, now)
            if row is None:
                raise Unauthenticated("unknown token")
        if row["revoked"]:
            raise Unauthenticated("revoked token")
        if row["expires"] is not None and row["expires"] <= now:
            raise Unauthenticated("expired token")
        self.used[row["id"]] = now
        return Identity(row["user"], row["role"], row["node"], row["id"])

    def _fetch(self, key, known):
        if self.store is None:
            return self.memory.get(key)
        try:
            return self.store.find_token(key)
        except Exception as exc:        # the database is away: a token seen before still counts
            if known is not None:
                return known[0]
            raise falcon.HTTPServiceUnavailable(
                title="Database unavailable", description=f"cannot check the token: {exc}") from exc

    # -- managing -----------------------------------------------------------------------------
    def create(self, user, role, node=None, expires=None, token=None):
        """A new token of `role` for `user` (a worker's bound to `node` when given); `token`:
        register that value (the Ansible vault's) instead of a fresh one. (token, row)."""
        check_token_fields(user, role, node)
        token = token or new_token()
        key = digest(token)
        now = self.clock()
        if self.store is None:
            row = {"id": len(self.memory) + 1, "digest": key, "user": user, "role": role, "node": node,
                   "created": now, "lastUsed": None, "expires": expires, "revoked": False}
            self.memory[key] = row
        else:
            row = self.store.create_token(key, user, role, node, now, expires)
        with self.lock:
            self.unknown.pop(key, None)
        return token, row

    def list(self):
        rows = list(self.memory.values()) if self.store is None else self.store.list_tokens()
        return [public_row(r) for r in rows]

    def revoke(self, ids=(), user=None):
        if self.store is None:
            done = []
            for row in self.memory.values():
                if not row["revoked"] and (row["id"] in ids or row["user"] == user):
                    row["revoked"] = True
                    done.append(row["id"])
        else:
            done = self.store.revoke_tokens(ids, user)
        with self.lock:                 # verified again at their next use
            self.known = {k: v for k, v in self.known.items() if v[0]["id"] not in done}
        return done

    def count(self):
        return len(self.memory) if self.store is None else len(self.store.list_tokens())

    def take_used(self):
        used, self.used = self.used, {}
        return used


def check_token_fields(user, role, node):
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not isinstance(user, str) or not user or len(user) > NAME_CHARS:
        raise ValueError(f"a token needs a user name (1 to {NAME_CHARS} characters)")
    if node is not None and role != WORKER:
        raise ValueError("only a worker token is bound to a render node")


def public_row(row):
    """A token's row without its digest."""
    return {k: v for k, v in row.items() if k != "digest"}


def bearer(req):
    header = req.get_header("Authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Access:
    """What a route asks of its caller, as openapi.py declares it: one of `roles`, and where
    an artist's own job is found (`own`: "node", "command", "share" — the route's id —, or
    "filter" for batch edits, which then act on the artist's jobs only)."""

    __slots__ = ("roles", "own")

    def __init__(self, roles, own=None):
        self.roles = roles
        self.own = own


class Authorization:
    """Middleware: the caller's identity (req.context.identity), held to the route's Access.
    401 without a valid token, 403 with a role that is not enough; both say what is needed."""

    def __init__(self, service, table, enabled=True):
        self.service = service
        self.table = table              # (METHOD, /path/{param}) -> Access
        self.enabled = enabled

    def process_resource(self, req, resp, resource, params):
        access = self.table.get((req.method, _route(req.uri_template)))
        if access is None:
            if resource is None or not hasattr(resource, f"on_{req.method.lower()}"):
                return                  # falcon answers 404 or 405
            # A responder no role was declared for: refused, never open by mistake.
            raise falcon.HTTPForbidden(title="Forbidden",
                                       description=f"{req.method} {req.path} has no declared role")
        req.context.access = access
        req.context.params = params
        if not self.enabled:
            req.context.identity = TRUSTED
            return
        if PUBLIC in access.roles:
            try:
                req.context.identity = self._identify(req)
            except (Unauthenticated, falcon.HTTPForbidden):
                req.context.identity = None
            return
        try:
            identity = self._identify(req)
        except Unauthenticated as exc:
            raise _unauthorized(req, access, str(exc)) from None
        if identity is None:
            raise _unauthorized(req, access, "no token")
        req.context.identity = identity
        role = next((r for r in access.roles if identity.admits(r)), None)
        if role is None:
            raise _forbidden(access, identity, "its role is not enough")
        if identity.role == WORKER:
            name = params.get("name")
            if identity.node is not None and name is not None and name.lower() != identity.node:
                raise _forbidden(access, identity, f"this worker token is bound to {identity.node}, not {name}")
        elif role == "artist" and identity.role == "artist" and access.own:
            self._own(req, access, identity, params)

    def _identify(self, req):
        """The caller: a bearer token's identity, else a monitor session's (whose actions
        must carry the session's CSRF secret), else None."""
        token = bearer(req)
        if token is not None:
            return self.service.tokens.identify(token)
        session_id = req.cookies.get(sessions.COOKIE)
        if not session_id:
            return None
        identity, csrf = self.service.sessions.identify(session_id)
        req.context.csrf = csrf
        if req.method in STATE_CHANGING and not sessions.same_secret(_csrf_of(req), csrf):
            raise falcon.HTTPForbidden(
                title="Forbidden", description="this action lacks the page's CSRF token: reload the page and try again")
        return identity

    def _own(self, req, access, identity, params):
        """An artist acts on its own jobs: the job the route's id names must be its user's."""
        if access.own == "filter":
            # A batch edit acts on the artist's jobs among those filtered; naming another's
            # job by id is refused rather than silently skipped.
            req.context.only_user = identity.user
            named, kind = named_jobs(req), "node"
        else:
            named, kind = (params.get("id"),), access.own
        for ident in named:
            job = self.service.job_of(kind, ident)
            if job is not None and job[1] != identity.user:
                raise _forbidden(access, identity, f"job {job[0]} is {job[1]}'s; an artist acts on its own jobs only")


def named_jobs(req):
    """The job ids a batch edit names (?constraint_id=1,2&constraint_id=3), the readable ones."""
    out = []
    for value in ",".join(req.get_param_as_list("constraint_id") or ()).split(","):
        try:
            out.append(int(value))      # as the filter reads it (resources/common.param_ints)
        except ValueError:
            pass                        # the filter refuses it: a 400 naming it
    return out


def _route(template):
    """/nodes/{id:int}/status -> /nodes/{id}/status, as the API document names it."""
    if template is None:
        return None
    parts = []
    for part in template.rstrip("/").split("/"):
        if part.startswith("{") and ":" in part:
            part = part.split(":", 1)[0] + "}"
        parts.append(part)
    return "/".join(parts) or "/"


def needs(access):
    roles = " or ".join(access.roles)
    above = " or above" if access.roles[-1] in HUMAN_ROLES[:-1] else ""
    own = " (an artist: on its own jobs only)" if access.own and "artist" in access.roles else ""
    return f"this route needs the role {roles}{above}{own}"


def _csrf_of(req):
    """The CSRF secret an action carries: its X-CSRF-Token header, or a form's csrf field."""
    header = req.get_header("X-CSRF-Token")
    if header:
        return header
    if (req.content_type or "").startswith(falcon.MEDIA_URLENCODED):
        value = req.get_media().get("csrf")
        return value if isinstance(value, str) else None
    return None


def _unauthorized(req, access, reason):
    if req.method == "GET" and req.path.startswith("/ui/"):
        # A page of the monitor: the browser goes to the sign-in form, and back here after.
        return falcon.HTTPSeeOther("/ui/signin?" + falcon.to_query_str({"next": req.relative_uri}, prefix=False))
    return falcon.HTTPUnauthorized(
        title="Authentication required",
        description=f"{reason}: {needs(access)}; {HOW_TO}",
        challenges=['Bearer realm="puli"'])


def _forbidden(access, identity, why):
    return falcon.HTTPForbidden(
        title="Forbidden",
        description=f"{needs(access)}; the token of {identity.user} is {identity.role}: {why}")


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TARGETS = {"node": "nodes", "command": "commands", "share": "poolShares"}


class Audit:
    """Middleware: every state-changing request as an audit record — time, user, role, route,
    targets, outcome. The render nodes' heartbeats and reports, thousands a second, are not
    (their registrations are)."""

    def __init__(self, service):
        self.service = service

    def process_response(self, req, resp, resource, req_succeeded):
        access = getattr(req.context, "access", None)
        if req.method not in STATE_CHANGING or access is None or access.roles == ("viewer",):
            return
        route = _route(req.uri_template)
        if access.roles == (WORKER,) and not route.endswith("{name}"):
            return
        identity = getattr(req.context, "identity", None) or Identity("-", "none")
        params = getattr(req.context, "params", None) or {}
        targets = {}
        if "name" in params:
            targets["renderNodes"] = [params["name"]]
        if "id" in params:
            kind = access.own or "node"
            targets[_TARGETS.get(kind, "nodes")] = [params["id"]]
            job = self.service.job_of(kind, params["id"]) if kind in _TARGETS else None
            if job is not None:
                targets["jobs"] = [job[0]]
        acted_on = getattr(req.context, "jobs", None)
        if acted_on is None and access.own == "filter":
            acted_on = named_jobs(req)  # refused or failed: the jobs it named
        if acted_on:
            targets["jobs"] = list(acted_on)
        status = resp.status_code
        self.service.record({
            "time": self.service.now(), "user": identity.user, "role": identity.role,
            "method": req.method, "route": route, "path": req.relative_uri[:2000],
            "targets": targets, "status": status, "outcome": None if status < 400 else _error_title(resp)})


def _error_title(resp):
    try:
        body = json.loads(resp.data or b"{}")
        return f"{body.get('title', '')}: {body.get('description', '')}"[:500]
    except (ValueError, TypeError, AttributeError):
        return None
