"""Batch query and edit (puliquery's routes): filter jobs, commands or render nodes (filters.py),
pick fields with ``attr=``, and edit every filtered job at once; an edit refuses to run without
a constraint.
"""
import time

import falcon

from ...model import job_operations
from ...model.status import NodeStatus
from .. import views
from . import filters
from .common import MAX_OFFSET, BadField, field, param_ints, param_strs, read_body

JOB_ATTRS = ["id", "user", "name", "tags:prod", "tags:shot", "status", "completion",
             "dispatchKey", "startTime", "creationTime", "endTime", "updateTime",
             "averageTimeByFrame", "maxTimeByFrame", "minTimeByFrame", "maxRN", "optimalMaxRN",
             "allocatedRN", "maxAttempt", "commandCount", "readyCommandCount", "doneCommandCount"]
COMMAND_ATTRS = ["id", "task", "description", "renderNode", "nbFrames", "avgTimeByFrame",
                 "status", "startTime", "endTime", "updateTime", "creationTime", "completion",
                 "attempt", "message"]
RN_ATTRS = ["id", "name", "host", "port", "ramSize", "coresNumber", "speed", "status",
            "lastAliveTime", "createDate", "registerDate", "puliversion", "pools",
            "systemFreeRam", "systemSwapPercentage"]


def _envelope(items, total, started):
    return {
        "summary": {
            "count": len(items),
            "totalInDispatcher": total,
            "requestTime": time.perf_counter() - started,
            "requestDate": time.ctime(),
        },
        "items": items,
    }


def _flag(req, name):
    """A flag parameter: ?tree, ?tree=1, ?tree=true are on; ?tree=0 and ?tree=false are off."""
    if name in req.params:
        return req.get_param_as_bool(name)
    return name in falcon.uri.parse_query_string(req.query_string, keep_blank=True)


def job_filters(req):
    """Predicates over jobs from the request's job constraints."""
    return filters.from_params(req, filters.JOB_QUERY)


def _matching(jobs, preds):
    return [j for j in jobs if all(p(j) for p in preds)]


def _check_attrs(attrs, known, prefixes=(), extra=()):
    for attr in attrs:
        if attr in known or attr in extra or any(attr.startswith(p) for p in prefixes):
            continue
        raise BadField("attr", f"unknown attribute {attr!r}")


def _pick_node(node, attrs):
    view = views.node(node)
    out = {}
    for attr in attrs:
        if attr.startswith("tags:"):
            out[attr[5:]] = node.tags.get(attr[5:], "")
        elif attr == "pool":
            out[attr] = view.get("poolName")
        elif attr == "userDefinedMaxRn":
            out[attr] = view.get("userDefinedMaxRN", False)
        else:
            out[attr] = view.get(attr)
    return out


def _tree(job, pick, attach):
    """The item of `job` with its descendants nested (iteratively: trees can be deep)."""
    top = pick(job)
    items = {job.id: top}
    for node in job.walk():
        if node is job:
            attach(top, None, node)
            continue
        item = pick(node)
        attach(items[node.parent.id], item, node)
        items[node.id] = item
    return top


def _jobs_of(farm):
    return farm.root.children


def _render_nodes_of(farm):
    return farm.render_nodes.values()


def _jobs_answer(service, preds, pick, attach, started):
    """The query envelope of the jobs matching every predicate: rows, or trees when `attach`."""
    preds = filters.off_lock(service, _jobs_of, preds)
    with service.lock:
        jobs = service.farm.root.children
        total = len(jobs)
        picked = _matching(jobs, preds)
        items = [_tree(j, pick, attach) if attach else pick(j) for j in picked]
    return _envelope(items, total, started)


class JobQuery:
    """GET /query: jobs (children of the root) as rows of the attr= fields."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        started = time.perf_counter()
        preds = job_filters(req)
        attrs = param_strs(req, "attr") or JOB_ATTRS
        _check_attrs(attrs, views.NODE_FIELDS, ("tags:",), ("pool", "userDefinedMaxRn"))
        tree = _flag(req, "tree")

        def pick(node):
            return _pick_node(node, attrs)

        def attach(parent_item, item, node):
            if item is None:
                if not node.is_task:
                    parent_item["items"] = []
                return
            if not node.is_task:
                item["items"] = []
            parent_item["items"].append(item)

        resp.media = _jobs_answer(self.service, preds, pick, attach if tree else None, started)


class CommandQuery:
    """GET /query/command: commands of the jobs (or any nodes) in constraint_id, or all."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        started = time.perf_counter()
        preds = filters.from_params(req, filters.COMMAND_QUERY, extra=("id",))
        attrs = param_strs(req, "attr") or COMMAND_ATTRS
        _check_attrs(attrs, views.COMMAND_FIELDS, extra=("arguments",))
        node_ids = param_ints(req, "constraint_id")
        offset = req.get_param_as_int("offset", min_value=0, max_value=MAX_OFFSET, default=0)
        limit = req.get_param_as_int("limit", min_value=0, max_value=MAX_OFFSET)
        detail = "arguments" in attrs

        with self.service.lock:
            farm = self.service.farm
            if node_ids:
                nodes = [farm.nodes[i] for i in dict.fromkeys(node_ids) if i in farm.nodes]
                cmds = (c for n in nodes for t in n.tasks() for c in t.commands)
            else:
                cmds = iter(farm.commands.values())
            matched = [c for c in cmds if all(p(c) for p in preds)]
            matched = matched[offset:offset + limit] if limit is not None else matched[offset:]
            items = []
            for c in matched:
                view = views.command(c, detail)
                items.append({a: view.get(a) for a in attrs})
            total = len(farm.commands)
        resp.media = _envelope(items, total, started)


class RenderNodeQuery:
    """GET /query/rn: render nodes as rows of the attr= fields."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        started = time.perf_counter()
        preds = filters.from_params(req, filters.RN_QUERY)
        attrs = param_strs(req, "attr") or RN_ATTRS
        _check_attrs(attrs, views.RENDER_NODE_FIELDS, ("caracteristics:",))
        preds = filters.off_lock(self.service, _render_nodes_of, preds)
        with self.service.lock:
            rns = self.service.farm.render_nodes.values()
            total = len(rns)
            items = []
            for rn in rns:
                if all(p(rn) for p in preds):
                    view = views.render_node(rn)
                    item = {}
                    for attr in attrs:
                        if attr.startswith("caracteristics:"):
                            item[attr[15:]] = rn.caracteristics.get(attr[15:], "")
                        else:
                            item[attr] = view.get(attr)
                    items.append(item)
        resp.media = _envelope(items, total, started)


class JobSearch:
    """POST /query/job {id, name, pool, status, tags, user, recursive}: full job objects."""

    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        started = time.perf_counter()
        body = read_body(req, required=False)
        preds = filters.from_body(body, filters.JOB_SEARCH)
        recursive = field(body, "recursive", bool, True)

        def pick(node):
            item = views.node(node)
            item["children"] = []
            return item

        def attach(parent_item, item, node):
            target = parent_item if item is None else item
            if node.is_task:
                target["task"] = {"id": node.id, "name": node.name, "runner": node.runner,
                                  "commands": [views.command(c) for c in node.commands]}
            if item is not None:
                parent_item["children"].append(item)

        resp.media = _jobs_answer(self.service, preds, pick, attach if recursive else None, started)


class RenderNodeSearch:
    """POST /query/rendernode {id, name, status, host, version, pool}: full render nodes."""

    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        started = time.perf_counter()
        preds = filters.from_body(read_body(req, required=False), filters.RN_SEARCH)
        preds = filters.off_lock(self.service, _render_nodes_of, preds)
        with self.service.lock:
            rns = self.service.farm.render_nodes.values()
            total = len(rns)
            items = [views.render_node(rn) for rn in rns if all(p(rn) for p in preds)]
        resp.media = _envelope(items, total, started)


# -- edits -------------------------------------------------------------------------------------------
_SETTABLE = (int(NodeStatus.READY), int(NodeStatus.DONE), int(NodeStatus.CANCELED))


def _edit_status(req):
    value = req.get_param_as_int("update_status", required=True)
    if value not in _SETTABLE:
        raise BadField("update_status", f"update_status must be 1 (restart), 3 (DONE) or 5 (cancel), not {value}")

    def apply(farm, job, now):
        if int(job.status) == value:
            return job_operations.Changes()
        return job_operations.set_node_status(farm, job, value, now)  # cancelling a DONE job changes nothing
    return apply


def _edit_maxrn(req):
    value = req.get_param_as_int("value", required=True, min_value=-1)
    wanted = value if value > 0 else -1

    def apply(farm, job, now):
        if job_operations.max_rn_of(job) == wanted:
            return job_operations.Changes()
        job_operations.set_max_rn(farm, job, value)
        return job_operations.Changes(1)
    return apply


def _edit_prio(req):
    value = req.get_param_as_float("value", required=True)

    def apply(farm, job, now):
        if job.dispatch_key == value:
            return job_operations.Changes()
        job_operations.set_attribute(farm, job, "dispatch_key", value)
        return job_operations.Changes(1)
    return apply


def _edit_pause(paused):
    def parse(req):
        def apply(farm, job, now):
            if job.paused == paused:
                return job_operations.Changes()
            job_operations.pause(farm, job, paused, now)
            return job_operations.Changes(1)
        return apply
    return parse


EDITS = {
    "/edit/status": _edit_status,
    "/edit/maxrn": _edit_maxrn,
    "/edit/prio": _edit_prio,
    "/pause": _edit_pause(True),
    "/resume": _edit_pause(False),
}


class Edit:
    """PUT /edit/...?constraint_...: apply one edit to every filtered job; a restart says which
    running commands it left alone."""

    def __init__(self, service, parse):
        self.service = service
        self.parse = parse

    def on_put(self, req, resp):
        started = time.perf_counter()
        preds = job_filters(req)
        if not preds:
            raise falcon.HTTPBadRequest(
                title="No constraint",
                description="give at least one constraint (constraint_id, constraint_user, ...): "
                            "an edit never applies to every job at once")
        apply = self.parse(req)
        only_user = getattr(req.context, "only_user", None)
        if only_user is not None:       # an artist's edit acts on its own jobs (auth.py)
            preds.append(lambda j: j.user == only_user)
        service = self.service
        preds = filters.off_lock(service, _jobs_of, preds)
        now = service.now()
        with service.lock:
            farm = service.farm
            jobs = farm.root.children
            total = len(jobs)
            picked = _matching(jobs, preds)
            edited, left_alone = [], []
            for job in picked:
                changes = apply(farm, job, now)
                if changes.changed:
                    edited.append(job.id)
                left_alone += changes.left_alone
            left = views.left_alone(left_alone)
        req.context.jobs = edited       # for the audit trail
        service.changed()
        resp.media = {
            "summary": {
                "editedCount": len(edited),
                "filteredCount": len(picked),
                "totalInDispatcher": total,
                "requestTime": time.perf_counter() - started,
                "requestDate": time.ctime(),
                **left,
            },
            "editedJobs": edited,
        }


def routes(service):
    out = [
        ("/query", JobQuery(service)),
        ("/query/command", CommandQuery(service)),
        ("/query/rn", RenderNodeQuery(service)),
        ("/query/job", JobSearch(service)),
        ("/query/rendernode", RenderNodeSearch(service)),
    ]
    out += [(path, Edit(service, parse)) for path, parse in EDITS.items()]
    return out

