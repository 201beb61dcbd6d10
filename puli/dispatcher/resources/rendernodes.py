"""/rendernodes/: list, read, remove, pause, reset, quarantine and rank render nodes.

POST /rendernodes/<name>/ (registration) is the worker's: see worker_protocol.
"""
from ...model import lookup, render_node_admin, worker_protocol
from ...model.errors import NotFound
from .. import views
from .common import BadField, field, read_body
from .worker_protocol import Registration, token_id


class RenderNodes:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            resp.media = {"rendernodes": [views.render_node(rn)
                                          for rn in self.service.farm.render_nodes.values()]}


class RenderNode(Registration):
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, name):
        with self.service.lock:
            resp.media = views.render_node(lookup.get_render_node(self.service.farm, name))

    def on_delete(self, req, resp, name):
        """Forget a render node; its commands go back to the queue."""
        service = self.service
        now = service.now()
        with service.lock:
            rn = lookup.get_render_node(service.farm, name)
            render_node_admin.remove_render_node(service.farm, rn, now)
        service.changed()
        resp.media = {"name": rn.name, "removed": True}


class Paused:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, name):
        """{paused, killproc}: a paused node takes no new work; killproc requeues what it runs.
        Resuming also lifts a quarantine. Sent by operators and by the worker itself."""
        body = read_body(req)
        paused = field(body, "paused", bool)
        kill = field(body, "killproc", bool, False)
        service = self.service
        now = service.now()
        with service.lock:
            rn = lookup.get_render_node(service.farm, name)
            worker_protocol.check_binding(rn, token_id(req))
            render_node_admin.set_render_node_paused(service.farm, rn, paused, kill=kill, now=now)
            media = views.render_node(rn)
        service.changed()
        resp.media = media


class Reset:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, name):
        """Stop what the node runs and put those commands back in the queue."""
        read_body(req, required=False)
        service = self.service
        now = service.now()
        with service.lock:
            farm = service.farm
            rn = lookup.get_render_node(farm, name)
            requeued = render_node_admin.reset_render_node(farm, rn, now)
            media = {"name": rn.name, "requeued": requeued}
        service.changed()
        resp.media = media


def _names(farm, names):
    missing = [n for n in names if n.lower() not in farm.render_nodes]
    if missing:
        raise NotFound(f"no render node {', '.join(missing)}; nothing was changed")
    return [farm.render_nodes[n.lower()] for n in names]


class Quarantine:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp):
        """{quarantine: bool, rns: [names]}: put nodes in quarantine or release them."""
        body = read_body(req)
        quarantine = field(body, "quarantine", bool)
        names = field(body, "rns", list)
        if not all(isinstance(n, str) for n in names):
            raise BadField("rns", "'rns' must be a list of render node names")
        service = self.service
        with service.lock:
            farm = service.farm
            rns = _names(farm, names)
            for rn in rns:
                render_node_admin.set_quarantine(farm, rn, quarantine)
            media = {"quarantine": quarantine, "rns": [rn.name for rn in rns]}
        service.changed()
        resp.media = media


class Performance:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp):
        """{name: performance, ...}: the dispatcher fills the best-performing nodes first."""
        body = read_body(req)
        values = {name: field(body, name, float) for name in body}
        service = self.service
        with service.lock:
            farm = service.farm
            rns = _names(farm, list(values))
            for rn, value in zip(rns, values.values()):
                render_node_admin.set_performance(farm, rn, value)
            media = {rn.name: rn.performance for rn in rns}
        service.changed()
        resp.media = media


def routes(service):
    return [
        ("/rendernodes", RenderNodes(service)),
        ("/rendernodes/quarantine", Quarantine(service)),
        ("/rendernodes/performance", Performance(service)),
        ("/rendernodes/{name}", RenderNode(service)),
        ("/rendernodes/{name}/paused", Paused(service)),
        ("/rendernodes/{name}/reset", Reset(service)),
    ]
