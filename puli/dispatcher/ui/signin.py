"""Signing in to the monitor with a token, signing out, and the monitor's own assets."""
import os
import secrets

import falcon

from .. import sessions
from ..auth import Unauthenticated
from .templating import HERE, redirect, render

STATIC = os.path.join(HERE, "static")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
MAX_TOKEN = 200


def _next(value):
    """Where to go after signing in: a monitor page of this dispatcher, nowhere else."""
    if isinstance(value, str) and value.startswith("/ui/") and "//" not in value and "\\" not in value:
        return value
    return "/ui/jobs"


def _cookie(req, resp, name, value, max_age):
    resp.set_cookie(name, value, max_age=max_age, path="/", secure=req.scheme == "https",
                    http_only=True, same_site="Strict")


class SignIn:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        self._form(req, resp, _next(req.get_param("next")))

    def _form(self, req, resp, next_page, error=None, status=200):
        secret = secrets.token_urlsafe(24)
        _cookie(req, resp, sessions.SIGNIN_COOKIE, secret, 3600)
        req.context.csrf = None
        render(req, resp, "signin.html", status=status, me=None, csrf="", may_audit=False, signed_in=False,
               signin_csrf=secret, next_page=next_page, error=error)

    def on_post(self, req, resp):
        form = req.get_media() if (req.content_type or "").startswith(falcon.MEDIA_URLENCODED) else {}
        next_page = _next(form.get("next"))
        if not sessions.same_secret(form.get("csrf"), req.cookies.get(sessions.SIGNIN_COOKIE)):
            self._form(req, resp, next_page, "the sign-in form expired: try again", status=400)
            return
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        if not token or len(token) > MAX_TOKEN:
            self._form(req, resp, next_page, "paste your Puli token (puli_…)", status=400)
            return
        try:
            session_id, identity = self.service.sessions.sign_in(token)
        except Unauthenticated as exc:
            self._form(req, resp, next_page, f"that token does not sign in: {exc}", status=401)
            return
        req.context.identity = identity             # the audit trail says who signed in
        resp.unset_cookie(sessions.SIGNIN_COOKIE, path="/")
        _cookie(req, resp, sessions.COOKIE, session_id, int(sessions.IDLE))
        redirect(resp, next_page)


class SignOut:
    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        session_id = req.cookies.get(sessions.COOKIE)
        if session_id:
            self.service.sessions.sign_out(session_id)
        resp.unset_cookie(sessions.COOKIE, path="/")
        redirect(resp, "/ui/signin")


class Home:
    def on_get(self, req, resp):
        redirect(resp, "/ui/jobs", falcon.HTTP_302)


class Static:
    """The monitor's stylesheet and script, from the package (farm networks are offline)."""

    def __init__(self):
        self.files = {name for name in os.listdir(STATIC) if os.path.splitext(name)[1] in STATIC_TYPES}

    def on_get(self, req, resp, name):
        if name not in self.files:
            raise falcon.HTTPNotFound(title="Not found", description=f"no asset {name!r}")
        with open(os.path.join(STATIC, name), "rb") as f:
            resp.data = f.read()
        resp.content_type = STATIC_TYPES[os.path.splitext(name)[1]]
        resp.cache_control = ("private", "max-age=300")


def routes(service):
    return [
        ("/ui", Home()),
        ("/ui/signin", SignIn(service)),
        ("/ui/signout", SignOut(service)),
        ("/ui/static/{name}", Static()),
    ]

