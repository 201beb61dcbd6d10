"""The web monitor's sign-in sessions: a browser signs in once with a token, then carries a
session cookie (random, HttpOnly, SameSite=Strict, Secure behind TLS) instead of the token.

A session holds the digest of the token it was opened with, never the token, and asks the
token store at every request (auth.Tokens caches for RECHECK seconds), so that a revoked or
expired token ends its sessions too. Each session has its CSRF secret, which the pages put in
their forms and send as X-CSRF-Token with every action. Sessions live in the dispatcher's
memory: a restarted dispatcher asks its monitors to sign in again.
"""
import hmac
import secrets
import threading
from collections import OrderedDict

from . import auth            # (auth imports this module: names are read at call time)

COOKIE = "puli_session"
SIGNIN_COOKIE = "puli_signin"       # the sign-in form's own CSRF secret (double submit)
IDLE = 12 * 3600.0                  # s a session lasts without a request
MAX_SESSIONS = 10_000               # the oldest go first beyond this


class Session:
    __slots__ = ("token_digest", "csrf", "seen")

    def __init__(self, token_digest, csrf, seen):
        self.token_digest = token_digest
        self.csrf = csrf
        self.seen = seen


class Sessions:
    def __init__(self, tokens, clock):
        self.tokens = tokens
        self.clock = clock
        self.lock = threading.Lock()
        self.open = OrderedDict()           # digest of the session id -> Session, oldest first

    def sign_in(self, token):
        """(session id, identity) for a valid token; Unauthenticated otherwise."""
        identity = self.tokens.identify(token)
        if identity.role == "worker":
            raise auth.Unauthenticated("a worker token cannot sign in to the monitor")
        session_id = secrets.token_urlsafe(32)
        with self.lock:
            while len(self.open) >= MAX_SESSIONS:
                self.open.popitem(last=False)
            self.open[auth.digest(session_id)] = Session(auth.digest(token), secrets.token_urlsafe(24), self.clock())
        return session_id, identity

    def identify(self, session_id):
        """(identity, csrf secret) of an open session; Unauthenticated when it is not one (any
        more), or when its token was revoked or has expired."""
        key = auth.digest(session_id)
        now = self.clock()
        with self.lock:
            session = self.open.get(key)
            if session is not None and now - session.seen > IDLE:
                del self.open[key]
                session = None
            if session is None:
                raise auth.Unauthenticated("no session (sign in again)")
            session.seen = now
            self.open.move_to_end(key)
        try:
            return self.tokens.identify_digest(session.token_digest), session.csrf
        except auth.Unauthenticated:
            self.sign_out(session_id)
            raise

    def sign_out(self, session_id):
        with self.lock:
            self.open.pop(auth.digest(session_id), None)


def same_secret(given, expected):
    """Constant-time comparison of two secrets; a missing one (or a form's repeated field, a
    list) never matches."""
    return (isinstance(given, str) and isinstance(expected, str) and bool(given) and bool(expected)
            and hmac.compare_digest(given.encode(), expected.encode()))
