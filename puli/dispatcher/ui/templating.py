"""The monitor's Jinja environment and how a page is answered: whole, or only its live part
(what the page's script asks for every few seconds), with an ETag so that an unchanged part
costs the browser nothing to take again."""
import datetime
import hashlib
import html
import os

import falcon
import jinja2

from ...model.status import CommandStatus, NodeStatus, RenderNodeStatus

HERE = os.path.dirname(__file__)
LIVE_HEADER = "X-Puli-Live"
HTML = "text/html; charset=utf-8"
# The pages run only the monitor's own script and style: nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def _when(value):
    if value is None:
        return "—"
    return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds):
    if seconds is None:
        return "—"
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _megabytes(value):
    if value is None:
        return "—"
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value} MB"


def _bytes(value):
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


_COUNT_LABELS = [(s.name.lower(), s.name, s.name[:3]) for s in CommandStatus]


def _nonzero_counts(counts):
    """(css class, status, short name, count) of the statuses a node has commands in."""
    return [(*_COUNT_LABELS[code], n) for code, n in enumerate(counts) if n]


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
    autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
ENV.filters.update(when=_when, duration=_duration, megabytes=_megabytes, bytes=_bytes,
                   nonzero_counts=_nonzero_counts)
ENV.globals.update(
    COMMAND_STATUSES=[(int(s), s.name) for s in CommandStatus],
    NODE_STATUSES=[(int(s), s.name) for s in NodeStatus],
    RN_STATUSES=[(int(s), s.name) for s in RenderNodeStatus])


def render(req, resp, name, status=200, **context):
    """Answer the page `name` with `context`; only its `live` block when the page's script
    asks (LIVE_HEADER), 304 when that is what the browser already has."""
    template = ENV.get_template(name)
    if req.get_header(LIVE_HEADER) and "live" in template.blocks:
        page = "".join(template.blocks["live"](template.new_context(context)))
        etag = hashlib.blake2b(page.encode(), digest_size=12).hexdigest()
        resp.etag = etag
        resp.cache_control = ("no-cache", "private")
        if req.if_none_match and any(tag == etag for tag in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
    else:
        page = template.render(context)
        resp.cache_control = ("no-store",)
    resp.status = status
    resp.content_type = HTML
    resp.text = page
    for header, value in SECURITY_HEADERS.items():
        resp.set_header(header, value)


def error_page(req, title, description):
    """An error as a monitor page: what went wrong in words, never a traceback."""
    identity = getattr(req.context, "identity", None)
    return ENV.get_template("error.html").render(
        title=title, description=description, me=identity, csrf=getattr(req.context, "csrf", None) or "",
        may_audit=False, signed_in=getattr(req.context, "csrf", None) is not None)


def redirect(resp, location, status=falcon.HTTP_303):
    """Send the browser to `location` (a path of this dispatcher), with a page saying so."""
    resp.status = status
    resp.location = location
    resp.content_type = HTML
    resp.text = f'<!doctype html><title>Puli</title><a href="{html.escape(location)}">continue</a>'
