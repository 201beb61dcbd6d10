"""/licenses/: license counters as JSON (Puli 1.7 answered a Python repr)."""
from ...model import pool_admin
from ...model.errors import NotFound
from .. import views
from .common import BadField, field, read_body, str_list


def _license(farm, name):
    lic = farm.licenses.get(name)
    if lic is None:
        raise NotFound(f"no license {name}")
    return lic


class Licenses:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            resp.media = {"licenses": [views.license(lic) for lic in self.service.farm.licenses.values()]}


class License:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, name):
        with self.service.lock:
            resp.media = views.license(_license(self.service.farm, name))

    def on_put(self, req, resp, name):
        """{maxlic}: set (or create) the counter's number of tokens."""
        maximum = field(read_body(req), "maxlic", int, minimum=0)
        with self.service.lock:
            media = views.license(pool_admin.set_license(self.service.farm, name, maximum))
        self.service.changed()
        resp.media = media

    def on_delete(self, req, resp, name):
        """{rns: "host:port,..."}: give back the tokens those render nodes hold (a runner
        that is done with its license before its command ends)."""
        rns = str_list(read_body(req), "rns")
        if not rns:
            raise BadField("rns", "'rns' must name render nodes: \"host:port,host:port\" or a list")
        with self.service.lock:
            media = views.license(pool_admin.release_license(self.service.farm, name, rns))
        self.service.changed()
        resp.media = media


def routes(service):
    return [
        ("/licenses", Licenses(service)),
        ("/licenses/{name}", License(service)),
    ]
