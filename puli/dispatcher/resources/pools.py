"""/pools/ and /poolshares/: pools of render nodes, and the shares that place jobs in them.

With pools_backend: file, pools come from the configuration: their edits answer 409.
Moving a job to a pool and changing its maxRN work with either backend.
"""
from ...model import job_operations, lookup, pool_admin
from ...model.errors import NotFound
from .. import views
from .common import BadField, field, job_node, read_body, refuse_if_pools_from_file


class Pools:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            resp.media = {"pools": {p.name: views.pool(p) for p in self.service.farm.pools.values()
                                    if not p.archived}}


class Pool:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, name):
        with self.service.lock:
            resp.media = views.pool(lookup.get_pool(self.service.farm, name))

    def on_post(self, req, resp, name):
        """Create an empty pool (409 if it exists)."""
        refuse_if_pools_from_file(self.service)
        with self.service.lock:
            pool = pool_admin.create_pool(self.service.farm, name)
            media = views.pool(pool)
        self.service.changed()
        resp.status = 201
        resp.location = f"/pools/{pool.name}"
        resp.media = media

    def on_delete(self, req, resp, name):
        """Delete a pool that holds no job; its render nodes leave it."""
        refuse_if_pools_from_file(self.service)
        with self.service.lock:
            farm = self.service.farm
            pool_admin.delete_pool(farm, lookup.get_pool(farm, name))
        self.service.changed()
        resp.media = {"name": name, "deleted": True}


class PoolRenderNodes:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, name):
        """{renderNodes: [names]}: replace the pool's render nodes."""
        refuse_if_pools_from_file(self.service)
        names = field(read_body(req), "renderNodes", list)
        if not all(isinstance(n, str) for n in names):
            raise BadField("renderNodes", "'renderNodes' must be a list of render node names")
        with self.service.lock:
            farm = self.service.farm
            pool = lookup.get_pool(farm, name)
            pool_admin.set_pool_members(farm, pool, names)
            media = views.pool(pool)
        self.service.changed()
        resp.media = media


class PoolShares:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        with self.service.lock:
            resp.media = {"poolShares": [views.pool_share(s) for s in self.service.farm.shares.values()]}

    def on_post(self, req, resp):
        """{poolName, nodeId, maxRN?}: move a job to a pool (a new pool share)."""
        body = read_body(req)
        pool_name = field(body, "poolName", str)
        node_id = field(body, "nodeId", int)
        max_rn = field(body, "maxRN", int, None, minimum=-1, nullable=True)
        with self.service.lock:
            farm = self.service.farm
            job = job_node(farm, node_id)
            before = job.share
            share = job_operations.set_pool(farm, job, pool_name, max_rn)
            media = views.pool_share(share)
        self.service.changed()
        resp.status = 200 if share is before else 201
        resp.location = f"/poolshares/{share.id}"
        resp.media = media


class PoolShare:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        with self.service.lock:
            resp.media = views.pool_share(_share(self.service.farm, id))

    def on_post(self, req, resp, id):
        """{maxRN}: how many of the job's commands may run at once (-1 or 0: its fair share)."""
        max_rn = field(read_body(req), "maxRN", int, minimum=-1)
        with self.service.lock:
            farm = self.service.farm
            share = _share(farm, id)
            job_operations.set_max_rn(farm, share.node, max_rn)
            media = views.pool_share(share)
        self.service.changed()
        resp.media = media

    on_put = on_post


def _share(farm, share_id):
    share = farm.shares.get(share_id)
    if share is None:
        raise NotFound(f"no pool share {share_id}")
    return share


def routes(service):
    return [
        ("/pools", Pools(service)),
        ("/pools/{name}", Pool(service)),
        ("/pools/{name}/rendernodes", PoolRenderNodes(service)),
        ("/poolshares", PoolShares(service)),
        ("/poolshares/{id:int}", PoolShare(service)),
    ]
