"""What the signed-in user may do, read from the roles openapi.py declares for the API routes the
page's actions call: a page offers only those, and the API refuses the rest anyway."""
from .. import openapi

_ACCESS = openapi.access_table()


def may(identity, method, path, owner=None):
    """True when `identity` may call `method path` (an API route, as openapi.py names it) on a
    job of `owner` (an artist acts on its own jobs only)."""
    if identity is None:
        return False
    access = _ACCESS[(method, path)]
    for role in access.roles:
        if identity.admits(role):
            if role == "artist" and identity.role == "artist" and access.own:
                return owner == identity.user
            return True
    return False


def page_context(req):
    """What every page's frame shows: who is signed in, their CSRF token, the menu they get."""
    identity = req.context.identity
    return {
        "me": identity,
        "csrf": getattr(req.context, "csrf", ""),
        "may_audit": may(identity, "GET", "/audit"),
        "signed_in": getattr(req.context, "csrf", None) is not None,
    }
