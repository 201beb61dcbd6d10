"""What puliquery shows: jobs, one job, commands, render nodes, pools, pool shares, licenses.

Each `cmd_*` is a subcommand: parse -> one dispatcher call -> render; the `show_*` functions are
what the Puli-era pul_* names call too (puli.cli.pul).
"""
import time

from . import render
from .common import (UsageError, command_status_codes, comparison, connect, epoch_param,
                     job_constraints, output, rn_status_codes, sort_items)


# -- jobs --------------------------------------------------------------------------------------------
JOB_FIELDS = ["id", "name", "user", "tags:prod", "tags:shot", "status", "completion", "dispatchKey",
              "maxRN", "allocatedRN", "maxAttempt", "pool", "paused", "commandCount",
              "readyCommandCount", "doneCommandCount", "creationTime", "startTime", "endTime",
              "updateTime", "averageTimeByFrame", "minTimeByFrame", "maxTimeByFrame"]


# Column headers accepted by --sort, besides the fields themselves.
JOB_SORT_ALIASES = {"st": "status", "owner": "user", "%": "completion", "prio": "dispatchKey",
                    "priority": "dispatchKey", "maxrn": "maxRN", "alloc": "allocatedRN",
                    "submitted": "creationTime", "start": "startTime", "end": "endTime",
                    "cmds": "commandCount", "attempt": "maxAttempt"}


def show_jobs(server, out, constraints, attrs=None, tree=False, sort=None, reverse=False, long=False):
    params = list(constraints) + [("attr", a) for a in (attrs or JOB_FIELDS)]
    if tree:
        params.append(("tree", "1"))
    started = time.perf_counter()
    answer = server.get("/query", params)
    elapsed = (time.perf_counter() - started) * 1000
    items = sort_items(answer["items"], sort, reverse, JOB_SORT_ALIASES)
    rows = render.flatten_tree(items) if tree else items
    if attrs:
        columns = render.columns_for([a[5:] if a.startswith("tags:") else a for a in attrs],
                                     render.NODE_STATUS)
    else:
        columns = render.LONG_JOB_COLUMNS if long else render.JOB_COLUMNS
    summary = answer["summary"]
    footer = f"{summary['count']} of {summary['totalInDispatcher']} jobs in {elapsed:.0f} ms"
    out.items(rows, columns, footer, raw=items)


def cmd_jobs(args):
    show_jobs(connect(args), output(args), job_constraints(args, args.restrictions),
              args.attribute, args.tree, args.sort, args.reverse, args.long)


# -- one job -----------------------------------------------------------------------------------------
def show_job(server, out, job_id):
    job = server.get(f"/nodes/{job_id}")
    if job.get("archived"):
        tree = {"tasks": [], "commands": []}
    else:
        tree = server.get(f"/tasks/{job_id}/tree")
    if out.fmt == "json":
        out.json({"job": job, "tasks": tree["tasks"], "commands": tree["commands"]})
        return
    if out.fmt == "csv":
        out.csv(tree["commands"])
        return
    for line in render.job_summary(job, out.paint):
        out.write(line)
    if job.get("archived"):
        out.write("  (archived: its tasks and commands are no longer in the dispatcher)")
        return
    out.write()
    out.table(render.tree_rows(job["id"], tree["tasks"]), render.TASK_COLUMNS)
    out.write()
    out.table(tree["commands"], render.COMMAND_COLUMNS)


def cmd_job(args):
    show_job(connect(args), output(args), args.job)


# -- commands ----------------------------------------------------------------------------------------
COMMAND_FIELDS = ["id", "job", "task", "description", "status", "completion", "attempt",
                  "renderNode", "startTime", "endTime", "updateTime", "message"]


def show_commands(server, out, constraints, attrs=None, sort=None, reverse=False, limit=None):
    params = list(constraints) + [("attr", a) for a in (attrs or COMMAND_FIELDS)]
    if limit is not None:
        params.append(("limit", str(limit)))
    started = time.perf_counter()
    answer = server.get("/query/command", params)
    elapsed = (time.perf_counter() - started) * 1000
    items = sort_items(answer["items"], sort, reverse, {"st": "status", "desc": "description",
                                                         "%": "completion", "att": "attempt"})
    columns = render.columns_for(attrs, render.COMMAND_STATUS) if attrs else render.COMMAND_COLUMNS
    summary = answer["summary"]
    footer = f"{summary['count']} of {summary['totalInDispatcher']} commands in {elapsed:.0f} ms"
    out.items(items, columns, footer)


def command_constraints(args):
    out = [("constraint_id", str(j)) for j in args.jobs + args.job]
    out += [("constraint_command", str(c)) for c in args.id]
    out += [("constraint_status", str(s)) for s in command_status_codes(args.status)]
    if args.started_after:
        out.append(("constraint_starttime", ">" + epoch_param(args.started_after)))
    if args.started_before:
        out.append(("constraint_starttime", "<" + epoch_param(args.started_before)))
    if args.started_after and args.started_before:
        raise UsageError("give --started-after or --started-before, not both")
    return out


def cmd_commands(args):
    show_commands(connect(args), output(args), command_constraints(args), args.attribute,
                  args.sort, args.reverse, args.limit)


# -- render nodes, pools, pool shares, licenses ------------------------------------------------------
RN_FIELDS = ["id", "name", "host", "port", "status", "coresNumber", "freeCoresNumber", "ramSize",
             "freeRam", "systemFreeRam", "speed", "puliversion", "systemSwapPercentage",
             "lastAliveTime", "createDate", "registerDate", "pools", "paused", "quarantined",
             "performance"]
RN_SORT_ALIASES = {"st": "status", "host": "name", "cores": "coresNumber", "free": "freeCoresNumber",
                   "ram": "ramSize", "ghz": "speed", "version": "puliversion",
                   "last ping": "lastAliveTime", "quarantine": "quarantined"}


def show_rns(server, out, constraints, attrs=None, sort=None, reverse=False):
    """Render nodes, by name unless told otherwise (and the name is shown)."""
    if sort is None and (not attrs or "name" in attrs):
        sort = "name"
    params = list(constraints) + [("attr", a) for a in (attrs or RN_FIELDS)]
    started = time.perf_counter()
    answer = server.get("/query/rn", params)
    elapsed = (time.perf_counter() - started) * 1000
    items = sort_items(answer["items"], sort, reverse, RN_SORT_ALIASES)
    columns = render.columns_for(attrs, render.RN_STATUS) if attrs else render.RN_COLUMNS
    summary = answer["summary"]
    footer = f"{summary['count']} of {summary['totalInDispatcher']} render nodes in {elapsed:.0f} ms"
    out.items(items, columns, footer)


def rn_constraints(args):
    out = [("constraint_name", n) for n in args.names + args.name]
    out += [("constraint_status", str(s)) for s in rn_status_codes(args.status)]
    out += [("constraint_pool", p) for p in args.pool]
    for key, values in (("constraint_coresnumber", args.cores), ("constraint_ramsize", args.ram),
                        ("constraint_speed", args.speed)):
        out += [(key, comparison(v)) for v in values]
    return out


def cmd_rn(args):
    show_rns(connect(args), output(args), rn_constraints(args), args.attribute, args.sort, args.reverse)


def cmd_pools(args):
    pools = connect(args).get("/pools")["pools"]
    items = sorted(pools.values(), key=lambda p: p["name"])
    output(args).items(items, render.POOL_COLUMNS, f"{len(items)} pools")


def cmd_poolshares(args):
    items = connect(args).get("/poolshares")["poolShares"]
    if args.pool:
        items = [s for s in items if s["poolName"] in args.pool]
    output(args).items(sorted(items, key=lambda s: s["id"]), render.POOLSHARE_COLUMNS,
                       f"{len(items)} pool shares")


def cmd_licenses(args):
    items = sorted(connect(args).get("/licenses")["licenses"], key=lambda lic: lic["name"])
    output(args).items(items, render.LICENSE_COLUMNS, f"{len(items)} licenses")


def cmd_audit(args):
    """Who did what, newest first (wranglers and admins)."""
    params = [(k, str(v)) for k, v in (("user", args.user), ("since", args.since), ("job", args.job),
                                        ("limit", args.limit)) if v is not None]
    items = connect(args).get("/audit", params)["records"]
    output(args).items(items, render.AUDIT_COLUMNS, f"{len(items)} audit records")
