"""The monitor's farm pages: render nodes, pools and their shares, licenses, the audit trail."""
import falcon

from ...model.status import RenderNodeStatus
from .. import views
from ..resources import filters
from .access import may, page_context
from .jobs import MAX_OFFSET, int_param
from .templating import render

NODES_PER_PAGE = 200
AUDIT_RECORDS = 200


def _node_row(rn, now):
    view = views.render_node(rn)
    view["usedCores"] = rn.cores - rn.free_cores
    view["usedRam"] = rn.ram - rn.free_ram
    view["gpus"] = rn.caracteristics.get("gpus") or []
    view["silentFor"] = now - rn.last_alive if rn.last_alive else None
    view["running"] = sorted((c.id, c.task.job.id) for c in rn.commands.values())
    return view


class RenderNodes:
    """GET /ui/rendernodes: every render node, filtered by status, pool and name."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        error = None
        try:
            preds = filters.from_params(req, filters.RN_UI)
        except falcon.HTTPBadRequest as exc:
            error, preds = exc.description, [lambda rn: False]
        offset = int_param(req, "offset", 0, 0, MAX_OFFSET)
        service = self.service
        preds = filters.off_lock(service, lambda farm: farm.render_nodes.values(), preds)
        now = service.now()
        with service.lock:
            farm = service.farm
            nodes = sorted(farm.render_nodes.values(), key=lambda rn: rn.name)
            picked = [rn for rn in nodes if all(p(rn) for p in preds)]
            rows = [_node_row(rn, now) for rn in picked[offset:offset + NODES_PER_PAGE]]
            by_status = [0] * len(RenderNodeStatus)
            for rn in nodes:
                by_status[int(rn.status)] += 1
            pools = sorted(farm.pools)
        identity = req.context.identity
        query = {k: v for k, v in req.params.items() if k != "offset"}
        render(req, resp, "rendernodes.html", **page_context(req), rows=rows, matched=len(picked),
               total=len(nodes), by_status=by_status, offset=offset, per_page=NODES_PER_PAGE, query=query,
               params=req.params, pools=pools, error=error,
               may_pause=may(identity, "PUT", "/rendernodes/{name}/paused"),
               may_quarantine=may(identity, "PUT", "/rendernodes/quarantine"))


class Pools:
    """GET /ui/pools: pools, their render nodes and the jobs' shares of them."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            farm = self.service.farm
            pools = []
            for name in sorted(farm.pools):
                pool = farm.pools[name]
                nodes = pool.render_nodes.values()
                shares = [dict(views.pool_share(s), jobName=s.node.name, user=s.node.user)
                          for s in pool.shares.values()]
                pools.append({"name": name, "nodes": len(pool.render_nodes),
                              "alive": sum(1 for rn in nodes if rn.alive),
                              "cores": sum(rn.cores for rn in nodes),
                              "freeCores": sum(rn.free_cores for rn in nodes if rn.alive),
                              "shares": shares})
        render(req, resp, "pools.html", **page_context(req), pools=pools)


class Licenses:
    """GET /ui/licenses: every license counter and who holds it."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            licenses = [views.license(lic) for _, lic in sorted(self.service.farm.licenses.items())]
        render(req, resp, "licenses.html", **page_context(req), licenses=licenses)


class Audit:
    """GET /ui/audit: who did what, newest first (?user=)."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        user = (req.get_param("user") or "").strip() or None
        records = self.service.audit_trail(user=user, limit=AUDIT_RECORDS)
        render(req, resp, "audit.html", **page_context(req), records=records, user=user or "")


def routes(service):
    return [
        ("/ui/rendernodes", RenderNodes(service)),
        ("/ui/pools", Pools(service)),
        ("/ui/licenses", Licenses(service)),
        ("/ui/audit", Audit(service)),
    ]
