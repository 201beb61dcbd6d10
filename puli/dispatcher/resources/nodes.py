"""The job tree: /nodes/ reads and the job operations (status, pause, cancel, edits, pool)."""
from ...model import job_operations, lookup
from ...model.errors import NotFound
from ...sorting import orderable
from .. import views
from .common import (MAX_OFFSET, BadField, command_statuses, field, job_node, param_ints, param_strs,
                     read_body)


class Root:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        """The farm's root node (id 1); its children are the jobs."""
        with self.service.lock:
            resp.media = views.node(self.service.farm.root)


class Node:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        """A node; an archived one comes from the store, with "archived": true."""
        service = self.service
        with service.lock:
            node = service.farm.nodes.get(id)
            if node is not None:
                resp.media = views.node(node)
                return
        archived = service.store.archived_node(id) if service.store is not None else None
        if archived is None:
            raise NotFound(f"no node {id}")
        resp.media = views.archived_node(archived)


def _sort_key(name):
    if name.startswith("tags:"):
        tag = name[5:]
        return lambda view: orderable(view["tags"].get(tag))
    return lambda view: orderable(view.get(name))


class Children:
    """Puli's children listing, with its filters, sort and pagination."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        ids = set(param_ints(req, "id"))
        statuses = set(param_ints(req, "status"))
        users = set(param_strs(req, "user"))
        days = req.get_param_as_float("days", min_value=0)
        tags = {k[5:]: set(param_strs(req, k)) for k in req.params if k.startswith("tags:")}
        sort = req.get_param("sortField") or "id"
        reverse = sort.startswith("-")
        sort = sort.lstrip("-")
        if not sort.startswith("tags:") and sort not in views.NODE_FIELDS:
            raise BadField("sortField", f"cannot sort on {sort!r}: use a node field or tags:<key>")
        raw_offset = req.get_param("offset") or "0"
        limit = req.get_param_as_int("limit", min_value=0, max_value=MAX_OFFSET, default=25)
        if raw_offset != "last":
            try:
                offset = int(raw_offset)
                if not 0 <= offset <= MAX_OFFSET:
                    raise ValueError
            except ValueError:
                raise BadField("offset", "offset must be a non-negative integer or 'last'") from None
        since = self.service.now() - days * 86400 if days is not None else None
        with self.service.lock:
            node = lookup.get_node(self.service.farm, id)
            children = [] if node.is_task else node.children
            picked = [
                c for c in children
                if (not ids or c.id in ids)
                and (not statuses or int(c.status) in statuses)
                and (not users or c.user in users)
                and (since is None or c.creation_time >= since)
                and all(str(c.tags.get(k, "")) in v for k, v in tags.items())
            ]
            items = [views.node(c) for c in picked]
        if sort != "id" or reverse:
            items.sort(key=_sort_key(sort), reverse=reverse)
        total = len(items)
        if raw_offset == "last":
            offset = max(0, total - limit)
        resp.media = {
            "children": items[offset:offset + limit],
            "total": total,
            "offset": offset,
            "limit": limit,
        }


def _changed(node, changes):
    """Under the lock: the answer of an operation (its job_operations.Changes)."""
    status = int(node.status)
    return {"id": node.id, "changed": changes.changed, "status": status,
            "statusName": views.NODE_STATUS_NAMES[status], **views.left_alone(changes.left_alone)}


class Status:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Restart (1), force DONE (3) or cancel (5) a subtree; ?cmdStatus= retries only
        commands in those statuses. A restart leaves running commands alone and says which."""
        body = read_body(req)
        status = field(body, "status", int)
        cascade = field(body, "cascade", bool, True)
        cmd_statuses = command_statuses("cmdStatus", param_ints(req, "cmdStatus"))
        service = self.service
        now = service.now()
        with service.lock:
            node = job_node(service.farm, id)
            changes = job_operations.set_node_status(service.farm, node, status, now, cascade=cascade,
                                              command_statuses=cmd_statuses or None)
            media = _changed(node, changes)
        service.changed()
        resp.media = media


class Paused:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Pause or resume a subtree: nothing new starts; running commands go on."""
        paused = field(read_body(req), "paused", bool)
        self._apply(resp, id, paused, kill=False)

    def _apply(self, resp, id, paused, kill):
        service = self.service
        now = service.now()
        with service.lock:
            node = job_node(service.farm, id)
            job_operations.pause(service.farm, node, paused, now, kill=kill)
            media = views.node(node)
        service.changed()
        resp.media = media


class PauseKill(Paused):
    def on_put(self, req, resp, id):
        """Pause a subtree and kill its running commands (they go back to READY)."""
        read_body(req, required=False)
        self._apply(resp, id, True, kill=True)


class Cancel:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Cancel every unfinished command of the subtree (running ones are killed)."""
        read_body(req, required=False)
        service = self.service
        now = service.now()
        with service.lock:
            node = job_node(service.farm, id)
            media = _changed(node, job_operations.cancel(service.farm, node, now))
        service.changed()
        resp.media = media


class Pool:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Move a job to another pool, optionally with a new maxRN."""
        body = read_body(req)
        pool_name = field(body, "poolName", str)
        max_rn = field(body, "maxRN", int, None, minimum=-1, nullable=True)
        service = self.service
        with service.lock:
            node = job_node(service.farm, id)
            job_operations.set_pool(service.farm, node, pool_name, max_rn)
            media = views.node(node)
        service.changed()
        resp.media = media


def set_timer(farm, node, value):
    # A group's timer holds every task below it (dispatch reads the timers up the tree).
    job_operations.set_attribute(farm, node, "timer", value)


def _set_prod(farm, node, value):
    job_operations.set_tag(farm, node, "prod", value)


# wire name -> (kind, apply(farm, node, value), extra field() options)
FIELDS = {
    "name": (str, lambda farm, node, v: job_operations.set_attribute(farm, node, "name", v), {}),
    "priority": (int, lambda farm, node, v: job_operations.set_attribute(farm, node, "priority", v), {}),
    "dispatchKey": (float, lambda farm, node, v: job_operations.set_attribute(farm, node, "dispatch_key", v), {}),
    "maxRN": (int, job_operations.set_max_rn, {"minimum": -1}),
    "user": (str, lambda farm, node, v: job_operations.set_attribute(farm, node, "user", v), {}),
    "prod": (str, _set_prod, {}),
    "maxAttempt": (int, job_operations.set_max_attempt, {"minimum": 1}),
    "timer": (float, set_timer, {"nullable": True}),
    "strategy": (str, lambda farm, node, v: job_operations.set_attribute(farm, node, "strategy", v), {}),
}


class Attribute:
    """PUT /nodes/<id>/<field> {<field>: value}: edit one attribute; answers the node."""

    def __init__(self, service, name):
        self.service = service
        self.name = name

    def on_put(self, req, resp, id):
        kind, apply, options = FIELDS[self.name]
        value = field(read_body(req), self.name, kind, **options)
        service = self.service
        with service.lock:
            node = job_node(service.farm, id)
            apply(service.farm, node, value)
            media = views.node(node)
        service.changed()
        resp.media = media


def routes(service):
    out = [
        ("/nodes", Root(service)),
        ("/nodes/{id:int}", Node(service)),
        ("/nodes/{id:int}/children", Children(service)),
        ("/nodes/{id:int}/status", Status(service)),
        ("/nodes/{id:int}/paused", Paused(service)),
        ("/nodes/{id:int}/pauseKill", PauseKill(service)),
        ("/nodes/{id:int}/cancel", Cancel(service)),
        ("/nodes/{id:int}/pool", Pool(service)),
    ]
    out += [(f"/nodes/{{id:int}}/{name}", Attribute(service, name)) for name in FIELDS]
    return out

