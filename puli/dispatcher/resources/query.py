"""Batch query and edit (puliquery's routes): filter jobs, commands or render nodes with
repeatable ``constraint_*`` parameters (OR within one key, AND across keys), pick fields with
``attr=``, and edit every filtered job at once.

An edit refuses to run without a constraint, and an unknown ``constraint_*`` is an error
rather than ignored: a misspelled filter must never widen an edit to the whole farm.
"""
import time

import falcon

from ...model import job_operations
from ...model.status import NodeStatus
from .. import views
from .common import (BadField, command_statuses, field, int_list, node_statuses, param_ints,
                     param_strs, parse_date, read_body, regex, str_list)

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

JOB_CONSTRAINTS = ("constraint_id", "constraint_status", "constraint_user", "constraint_prod",
                   "constraint_name", "constraint_pool", "constraint_creationtime",
                   "constraint_starttime", "constraint_endtime")
COMMAND_CONSTRAINTS = ("constraint_id", "constraint_command", "constraint_status", "constraint_starttime")
RN_CONSTRAINTS = ("constraint_status", "constraint_name", "constraint_host", "constraint_pool",
                  "constraint_speed", "constraint_ramsize", "constraint_coresnumber")


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


def _check_constraints(req, known):
    for key in req.params:
        if key.startswith("constraint_") and key not in known:
            raise BadField(key, f"unknown constraint {key!r}; known: {', '.join(known)}")


def _flag(req, name):
    """A flag parameter: ?tree, ?tree=1, ?tree=true are on; ?tree=0 and ?tree=false are off."""
    if name in req.params:
        return req.get_param_as_bool(name)
    return name in falcon.uri.parse_query_string(req.query_string, keep_blank=True)


def _first_date(req, name):
    values = param_strs(req, name)
    return parse_date(name, values[0]) if values else None


def job_filters(req):
    """Predicates over jobs from the request's job constraints."""
    _check_constraints(req, JOB_CONSTRAINTS)
    preds = []
    ids = set(param_ints(req, "constraint_id"))
    if ids:
        preds.append(lambda j: j.id in ids)
    statuses = node_statuses("constraint_status", param_ints(req, "constraint_status"))
    if statuses:
        preds.append(lambda j: j.status in statuses)
    users = set(param_strs(req, "constraint_user"))
    if users:
        preds.append(lambda j: j.user in users)
    prods = set(param_strs(req, "constraint_prod"))
    if prods:
        preds.append(lambda j: str(j.tags.get("prod", "")) in prods)
    pools = set(param_strs(req, "constraint_pool"))
    if pools:
        preds.append(lambda j: j.share is not None and j.share.pool.name in pools)
    names = param_strs(req, "constraint_name")
    if names:
        rx = regex("constraint_name", names)
        preds.append(lambda j: rx.match(j.name) is not None)
    since = _first_date(req, "constraint_creationtime")
    if since is not None:
        preds.append(lambda j: j.creation_time >= since)
    started = _first_date(req, "constraint_starttime")
    if started is not None:
        preds.append(lambda j: j.start_time is not None and j.start_time >= started)
    ended = _first_date(req, "constraint_endtime")
    if ended is not None:
        preds.append(lambda j: j.end_time is not None and j.end_time >= ended)
    return preds


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


def _jobs_answer(service, preds, pick, attach, started):
    """The query envelope of the jobs matching every predicate: rows, or trees when `attach`."""
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
        _check_constraints(req, COMMAND_CONSTRAINTS)
        attrs = param_strs(req, "attr") or COMMAND_ATTRS
        _check_attrs(attrs, views.COMMAND_FIELDS, extra=("arguments",))
        node_ids = param_ints(req, "constraint_id")
        command_ids = set(param_ints(req, "constraint_command"))
        statuses = command_statuses("constraint_status", param_ints(req, "constraint_status"))
        start = param_strs(req, "constraint_starttime")
        after = before = None
        if start:
            text = start[0]
            if text[:1] in "<>" and text:
                when = parse_date("constraint_starttime", text[1:])
                after, before = (when, None) if text[0] == ">" else (None, when)
            else:
                after = parse_date("constraint_starttime", text)
        offset = req.get_param_as_int("offset", min_value=0, default=0)
        limit = req.get_param_as_int("limit", min_value=0)
        detail = "arguments" in attrs

        def wanted(c):
            if command_ids and c.id not in command_ids:
                return False
            if statuses and c.status not in statuses:
                return False
            if after is not None and (c.start_time is None or c.start_time < after):
                return False
            if before is not None and (c.start_time is None or c.start_time > before):
                return False
            return True

        with self.service.lock:
            farm = self.service.farm
            if node_ids:
                nodes = [farm.nodes[i] for i in dict.fromkeys(node_ids) if i in farm.nodes]
                cmds = (c for n in nodes for t in n.tasks() for c in t.commands)
            else:
                cmds = iter(farm.commands.values())
            matched = [c for c in cmds if wanted(c)]
            matched = matched[offset:offset + limit] if limit is not None else matched[offset:]
            items = []
            for c in matched:
                view = views.command(c, detail)
                items.append({a: view.get(a) for a in attrs})
            total = len(farm.commands)
        resp.media = _envelope(items, total, started)


def _compare(name, spec, kind):
    """Puli's +x (greater than), -x (less than), x (equal).

    An unencoded "+" arrives as a space: it means greater than too.
    """
    try:
        if spec[:1] in ("+", " "):
            value = kind(spec[1:])
            return lambda v: v is not None and v > value
        if spec[:1] == "-":
            value = kind(spec[1:])
            return lambda v: v is not None and v < value
        value = kind(spec)
        return lambda v: v == value
    except ValueError:
        raise BadField(name, f"{spec!r}: use +N (more than), -N (less than) or N (equal)") from None


def rn_filters(req):
    _check_constraints(req, RN_CONSTRAINTS)
    preds = []
    statuses = set(param_ints(req, "constraint_status"))
    if statuses:
        preds.append(lambda rn: int(rn.status) in statuses)
    names = param_strs(req, "constraint_name")
    if names:
        rx_name = regex("constraint_name", names)
        preds.append(lambda rn: rx_name.match(rn.name) is not None)
    hosts = param_strs(req, "constraint_host")
    if hosts:
        rx_host = regex("constraint_host", hosts)
        preds.append(lambda rn: rx_host.match(rn.host) is not None)
    pools = set(param_strs(req, "constraint_pool"))
    if pools:
        preds.append(lambda rn: any(p.name in pools for p in rn.pools))
    for key, attr, kind in (("constraint_speed", "speed", float), ("constraint_ramsize", "ram", int),
                            ("constraint_coresnumber", "cores", int)):
        for spec in param_strs(req, key):
            test = _compare(key, spec, kind)
            preds.append(lambda rn, test=test, attr=attr: test(getattr(rn, attr)))
    return preds


class RenderNodeQuery:
    """GET /query/rn: render nodes as rows of the attr= fields."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        started = time.perf_counter()
        preds = rn_filters(req)
        attrs = param_strs(req, "attr") or RN_ATTRS
        _check_attrs(attrs, views.RENDER_NODE_FIELDS, ("caracteristics:",))
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
        preds = []
        ids = set(int_list(body, "id", []))
        if ids:
            preds.append(lambda j: j.id in ids)
        names = str_list(body, "name", [])
        if names:
            rx = regex("name", names)
            preds.append(lambda j: rx.match(j.name) is not None)
        pools = set(str_list(body, "pool", []))
        if pools:
            preds.append(lambda j: j.share is not None and j.share.pool.name in pools)
        statuses = node_statuses("status", int_list(body, "status", []))
        if statuses:
            preds.append(lambda j: j.status in statuses)
        users = set(str_list(body, "user", []))
        if users:
            preds.append(lambda j: j.user in users)
        tags = field(body, "tags", dict, {})
        for key, values in tags.items():
            if not isinstance(values, list):
                raise BadField(f"tags.{key}", f"'tags.{key}' must be a list of values")
        if tags:
            wanted = {k: {str(v) for v in vs} for k, vs in tags.items()}
            preds.append(lambda j: any(str(j.tags.get(k)) in vs for k, vs in wanted.items() if k in j.tags))
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
        body = read_body(req, required=False)
        preds = []
        ids = set(int_list(body, "id", []))
        if ids:
            preds.append(lambda rn: rn.id in ids)
        for key, attr in (("name", "name"), ("host", "host")):
            patterns = str_list(body, key, [])
            if patterns:
                rx = regex(key, patterns)
                preds.append(lambda rn, rx=rx, attr=attr: rx.match(getattr(rn, attr)) is not None)
        statuses = set(int_list(body, "status", []))
        if statuses:
            preds.append(lambda rn: int(rn.status) in statuses)
        versions = set(str_list(body, "version", []))
        if versions:
            preds.append(lambda rn: rn.puliversion in versions)
        pools = set(str_list(body, "pool", []))
        if pools:
            preds.append(lambda rn: any(p.name in pools for p in rn.pools))
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
        service = self.service
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

