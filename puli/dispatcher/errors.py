"""The API's errors: every error is a JSON body, and domain errors become HTTP statuses here only.

InvalidGraph / InvalidValue -> 400, TooLarge -> 413, QueueFull -> 429, NotFound -> 404, Conflict -> 409, StaleAssignment -> 409 with
``"stop": true`` (the worker must stop that command), data the database refused -> 400, the
database unreachable -> 503, anything unexpected -> 500 (logged with its traceback). Bodies are ``{"title": ..., "description": ...}``.
"""
import json
import logging

import falcon

from ..model import errors as domain

log = logging.getLogger("puli.dispatcher.api")


class BadField(falcon.HTTPBadRequest):
    """A request field (body key or query parameter) is missing or holds a bad value."""

    def __init__(self, field, description):
        super().__init__(title=f"Bad value for {field}", description=description)
        self.field = field

    def to_dict(self, obj_type=dict):
        out = super().to_dict(obj_type)
        out["field"] = self.field
        return out


class BadBody(falcon.HTTPBadRequest):
    def __init__(self, description):
        super().__init__(title="Bad request body", description=description)


class StaleReport(falcon.HTTPConflict):
    """409 telling a worker that the command it reports on is no longer its to run."""

    def __init__(self, description):
        super().__init__(title="Stale assignment", description=description)

    def to_dict(self, obj_type=dict):
        out = super().to_dict(obj_type)
        out["stop"] = True
        return out


class ReadOnlyPools(falcon.HTTPConflict):
    def __init__(self):
        super().__init__(
            title="Pools come from the configuration file",
            description="pools_backend is 'file': edit the 'pools' setting of the dispatcher "
                        "configuration and restart it, or switch pools_backend to 'db'")


_DOMAIN = (
    # most specific first; each maps to (HTTPError class, title)
    (domain.StaleAssignment, None, None),
    (domain.TooLarge, falcon.HTTPContentTooLarge, "Graph too large"),
    (domain.QueueFull, falcon.HTTPTooManyRequests, "Queue full"),
    (domain.InvalidGraph, falcon.HTTPBadRequest, "Invalid graph"),
    (domain.InvalidValue, falcon.HTTPBadRequest, "Invalid value"),
    (domain.NotFound, falcon.HTTPNotFound, "Not found"),
    (domain.Forbidden, falcon.HTTPForbidden, "Forbidden"),
    (domain.Conflict, falcon.HTTPConflict, "Conflict"),
    (domain.FarmError, falcon.HTTPBadRequest, "Refused"),
)


def _domain_error(req, resp, ex, params):
    for cls, http, title in _DOMAIN:
        if isinstance(ex, cls):
            if http is None:
                raise StaleReport(str(ex))
            raise http(title=title, description=str(ex))


def is_store_error(ex):
    """A failure of the database layer (puli.store's StoreError, matched by name: the store
    package is optional here and may not import)."""
    return any(cls.__name__ == "StoreError" for cls in type(ex).__mro__)


def _unexpected(req, resp, ex, params):
    if is_store_error(ex) and getattr(ex, "refused", False):
        # The database is up but would not take this request's data: the request's fault.
        log.warning("%s %s: refused by the database: %s", req.method, req.path, ex)
        raise falcon.HTTPBadRequest(title="Refused by the database", description=str(ex))
    if is_store_error(ex):
        log.warning("%s %s: database unavailable: %s", req.method, req.path, ex)
        raise falcon.HTTPServiceUnavailable(
            title="Database unavailable", description=f"the database could not be reached: {ex}",
            retry_after=5)
    log.error("%s %s failed", req.method, req.path, exc_info=ex)
    raise falcon.HTTPInternalServerError(
        title="Internal error",
        description=f"unexpected {type(ex).__name__} while handling {req.method} {req.path}; "
                    "the dispatcher log has the details")


def _serialize(req, resp, exc):
    body = exc.to_dict()
    if "description" not in body:
        if isinstance(exc, falcon.HTTPRouteNotFound):
            body["description"] = f"no route {req.path}"
        elif isinstance(exc, falcon.HTTPMethodNotAllowed):
            allowed = (exc.headers or {}).get("Allow", "")
            body["description"] = f"{req.method} is not allowed on {req.path}; allowed: {allowed}"
        else:
            body["description"] = body["title"]
    if req.path.startswith("/ui/"):
        from .ui import templating      # the monitor's: the error as a page of its own
        resp.text = templating.error_page(req, body["title"], body["description"])
        resp.content_type = templating.HTML
        return
    resp.data = json.dumps(body).encode()
    resp.content_type = falcon.MEDIA_JSON


def install(app):
    """Register the handlers and the serializer on a falcon.App."""
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(domain.FarmError, _domain_error)
