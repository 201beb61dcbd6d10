"""The monitor's job pages: the jobs list (filters, sort, pages), a job (its tree, a task's
commands) and a command's log. Rows are gathered under the farm lock, rendered after it."""
import operator

import falcon

from ...model import lookup
from ...model.errors import NotFound
from ...model.status import ACTIVE, NodeStatus
from ...sorting import orderable
from .. import views
from ..resources import filters
from .access import may, page_context
from .templating import LIVE_HEADER, render

PAGE_SIZES = (25, 50, 100, 250)
COMMANDS_PER_PAGE = 100
MAX_OFFSET = 10_000_000


def _pool(job):
    return job.share.pool.name if job.share is not None else ""


# ?sort= name -> key over a job (no view is built for the jobs a page does not show)
SORTS = {
    "id": operator.attrgetter("id"),
    "name": lambda j: j.name.lower(),
    "user": lambda j: j.user,
    "prod": lambda j: orderable(j.tags.get("prod")),
    "shot": lambda j: orderable(j.tags.get("shot")),
    "pool": _pool,
    "status": lambda j: int(j.status),
    "completion": lambda j: j.completion,
    "priority": operator.attrgetter("priority"),
    "dispatchKey": operator.attrgetter("dispatch_key"),
    "allocatedRN": operator.attrgetter("active_count"),
    "creationTime": operator.attrgetter("creation_time"),
    "startTime": lambda j: orderable(j.start_time),
    "endTime": lambda j: orderable(j.end_time),
}


def int_param(req, name, default, low, high):
    """A paging parameter; a bad one falls back to the default (a page, not an API)."""
    try:
        value = int(req.get_param(name) or default)
    except ValueError:
        return default
    return min(max(value, low), high)


def _row(job, identity):
    """A job as the list shows it."""
    view = views.node(job)
    view["counts"] = list(job.counts)
    view["pool"] = _pool(job)
    view["may_act"] = may(identity, "PUT", "/nodes/{id}/paused", job.user)
    return view


class Jobs:
    """GET /ui/jobs: every job, filtered by the constraint_* fields puliquery knows."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        identity = req.context.identity
        error = None
        try:
            preds = filters.from_params(req, filters.JOB_UI)
        except falcon.HTTPBadRequest as exc:
            error, preds = exc.description, [lambda j: False]
        sort = req.get_param("sort") or "-id"
        descending = sort.startswith("-")
        key = SORTS.get(sort.lstrip("-"))
        if key is None:
            error, sort, descending, key = f"cannot sort on {sort!r}", "-id", True, SORTS["id"]
        limit = int_param(req, "limit", 50, 1, PAGE_SIZES[-1])
        offset = int_param(req, "offset", 0, 0, MAX_OFFSET)
        service = self.service
        preds = filters.off_lock(service, lambda farm: farm.root.children, preds)
        whole_page = not req.get_header(LIVE_HEADER)
        with service.lock:
            farm = service.farm
            jobs = farm.root.children
            total = len(jobs)
            picked = [j for j in jobs if all(p(j) for p in preds)] if preds else list(jobs)
            picked.sort(key=key, reverse=descending)
            rows = [_row(j, identity) for j in picked[offset:offset + limit]]
            pools = sorted(farm.pools)
            # The filter form's list of users: only when the whole page is drawn.
            users = sorted({j.user for j in jobs}) if whole_page else []
        query = {k: v for k, v in req.params.items() if k not in ("offset", "sort")}
        render(req, resp, "jobs.html", **page_context(req), rows=rows, matched=len(picked), total=total,
               offset=offset, limit=limit, sort=sort, query=query, error=error, pools=pools, users=users,
               page_sizes=PAGE_SIZES, sorts=SORTS, params=req.params,
               may_act=may(identity, "PUT", "/nodes/{id}/paused", identity.user),
               may_pool=may(identity, "PUT", "/nodes/{id}/pool", identity.user))


def _tree(job):
    """(depth, node view) of the job and everything below it, in order."""
    depth = {job.id: 0}
    out = []
    for node in job.walk():
        if node is not job:
            depth[node.id] = depth[node.parent.id] + 1
        view = views.node(node)
        view["counts"] = list(node.counts)
        view["dependsOn"] = [(d.target_id, d.target.name if d.target is not None else "(archived)",
                              [NodeStatus(int(s)).name for s in sorted(d.statuses)], d.satisfied)
                             for d in node.dependencies]
        out.append((depth[node.id], view))
    return out


class Job:
    """GET /ui/jobs/{id}: a job's tree and the commands of one of its tasks (?task=)."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        identity = req.context.identity
        task_id = int_param(req, "task", 0, 0, 2**62)
        offset = int_param(req, "offset", 0, 0, MAX_OFFSET)
        with self.service.lock:
            farm = self.service.farm
            node = farm.nodes.get(id)
            if node is None or node is farm.root:
                raise NotFound(f"no job {id} (it may have been archived)")
            job = node.job
            tree = _tree(job)
            tasks = [n for n in job.walk() if n.is_task]
            task = next((t for t in tasks if t.id == task_id), tasks[0] if tasks else None)
            commands = [views.command(c) for c in task.commands[offset:offset + COMMANDS_PER_PAGE]] if task else []
            command_count = len(task.commands) if task else 0
            owner = job.user
        render(req, resp, "job.html", **page_context(req), job=tree[0][1], tree=tree,
               task=views.node(task) if task else None, commands=commands, command_count=command_count,
               offset=offset, per_page=COMMANDS_PER_PAGE,
               may_act=may(identity, "PUT", "/nodes/{id}/paused", owner),
               may_pool=may(identity, "PUT", "/nodes/{id}/pool", owner),
               may_command=may(identity, "PUT", "/commands/{id}", owner))


class CommandLog:
    """GET /ui/commands/{id}/log: the page that tails and follows a command's log (its script
    reads GET /commands/{id}/log)."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        with self.service.lock:
            cmd = lookup.get_command(self.service.farm, id)
            command = views.command(cmd)
            running = cmd.status in ACTIVE
            job = cmd.task.job
            job_name = job.name
            job_id = job.id
        render(req, resp, "log.html", **page_context(req), command=command, running=running,
               job_id=job_id, job_name=job_name)


def routes(service):
    return [
        ("/ui/jobs", Jobs(service)),
        ("/ui/jobs/{id:int}", Job(service)),
        ("/ui/commands/{id:int}/log", CommandLog(service)),
    ]
