"""puliquery: look at the farm and act on it — jobs, commands, render nodes, pools, licenses, logs.

Each subcommand is a short function: parse -> one or two dispatcher calls -> render. The
functions below the parser (`show_jobs`, `edit_jobs`, ...) are what the Puli-era pul_* names
call too (puli.cli.pul), so both speak the same API the same way.
"""
import argparse
import sys
import time
from urllib.parse import quote

from ..client.server import Server, ServerUnreachable
from ..model.status import FINAL
from . import render
from .common import (Failed, UsageError, Unreachable, add_common_options, add_job_filters,
                     command_status_codes, comparison, connect, epoch_param, job_constraints,
                     output, rn_status_codes, run, sort_items)

PROG = "puliquery"

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


# -- acting on jobs ----------------------------------------------------------------------------------
class JobEdit:
    """An action on jobs: a batch route of the dispatcher (atomic, one request) or, where the
    dispatcher has none, one request per matching job (`per_job`)."""

    def __init__(self, report, route=None, params=(), value_param=None, per_job=None):
        self.report = report
        self.route = route
        self.params = list(params)
        self.value_param = value_param
        self.per_job = per_job


# A per-job edit answers (commands or jobs changed, running commands it left alone).
def _retry(server, job, value, cascade):
    # TIMEOUT is a failed run too: the job shows ERROR for either.
    answer = server.put(f"/nodes/{job['id']}/status", {"status": 1},
                        params=[("cmdStatus", "7"), ("cmdStatus", "6")])
    return answer["changed"], answer.get("leftAloneCommands", [])


def _restart_alone(server, job, value, cascade):
    answer = server.put(f"/nodes/{job['id']}/status", {"status": 1, "cascade": False})
    return answer["changed"], answer.get("leftAloneCommands", [])


def _set_pool(server, job, value, cascade):
    if job.get("pool") == value:
        return 0, []
    server.put(f"/nodes/{job['id']}/pool", {"poolName": value})
    return 1, []


JOB_EDITS = {
    "pause": JobEdit("paused {jobs}", "/pause"),
    "resume": JobEdit("resumed {jobs}", "/resume"),
    "cancel": JobEdit("canceled {jobs}", "/edit/status", [("update_status", "5")]),
    "restart": JobEdit("restarted {jobs}", "/edit/status", [("update_status", "1")]),
    "restart-alone": JobEdit("restarted {jobs} (not their dependents)", per_job=_restart_alone),
    "retry": JobEdit("retried {commands} in {jobs}", per_job=_retry),
    "done": JobEdit("forced DONE on {jobs}", "/edit/status", [("update_status", "3")]),
    "status": JobEdit("set status {value} on {jobs}", "/edit/status", value_param="update_status"),
    "set-prio": JobEdit("set dispatchKey {value} on {jobs}", "/edit/prio", value_param="value"),
    "set-maxrn": JobEdit("set maxRN {value} on {jobs}", "/edit/maxrn", value_param="value"),
    "set-pool": JobEdit("moved {jobs} to pool {value}", per_job=_set_pool),
}


def _matching_jobs(server, constraints, extra_attrs=()):
    params = list(constraints) + [("attr", "id")] + [("attr", a) for a in extra_attrs]
    return server.get("/query", params)


def _check_ids(server, constraints):
    """Refuse job ids that name no job before anything changes."""
    ids = [int(v) for k, v in constraints if k == "constraint_id"]
    if not ids:
        return
    found = {item["id"] for item in
             _matching_jobs(server, [("constraint_id", str(i)) for i in ids])["items"]}
    missing = [str(i) for i in dict.fromkeys(ids) if i not in found]
    if missing:
        raise Failed(f"no job {', '.join(missing)}; nothing was changed")


def _per_job(server, edit, constraints, value, cascade):
    answer = _matching_jobs(server, constraints, ["pool"])
    started = time.perf_counter()
    changed, edited, left_alone = 0, [], []
    for job in answer["items"]:
        count, left = edit.per_job(server, job, value, cascade)
        left_alone += left
        if count:
            changed += count
            edited.append(job["id"])
    summary = dict(answer["summary"], editedCount=len(edited), filteredCount=len(answer["items"]),
                   changedCommands=changed, requestTime=time.perf_counter() - started,
                   leftAlone=len(left_alone), leftAloneCommands=left_alone)
    summary.pop("count", None)
    return {"summary": summary, "editedJobs": edited}


def _jobs_text(ids):
    noun = "job" if len(ids) == 1 else "jobs"
    return f"{len(ids)} {noun}: {', '.join(map(str, ids))}" if ids else f"0 {noun}"


def edit_jobs(server, out, action, constraints, value=None, cascade=True):
    """Apply one action to the jobs the constraints select; report what changed."""
    if not constraints:
        raise UsageError("give job ids or at least one filter (--user, --status, --name, ...): "
                         "an action never applies to every job at once")
    edit = JOB_EDITS["restart-alone" if action == "restart" and not cascade else action]
    _check_ids(server, constraints)
    if edit.per_job:
        answer = _per_job(server, edit, constraints, value, cascade)
    else:
        params = list(constraints) + edit.params
        if edit.value_param:
            params.append((edit.value_param, str(value)))
        answer = server.put(edit.route, params=params)
    edited = answer["editedJobs"]
    summary = answer["summary"]
    changed = summary.get("changedCommands", 0)
    commands = f"{changed} failed command{'' if changed == 1 else 's'}"
    lines = [edit.report.format(jobs=_jobs_text(edited), value=value, commands=commands)]
    left = summary["filteredCount"] - len(edited)
    if left:
        lines.append(f"{left} {'other ' if edited else ''}matching job{'s' if left > 1 else ''} "
                     f"left as {'it was' if left == 1 else 'they were'}")
    running = summary.get("leftAlone", 0)
    if running:
        ids = ", ".join(str(c["id"]) for c in summary.get("leftAloneCommands", []))
        more = "" if running == len(summary.get("leftAloneCommands", [])) else ", ..."
        lines.append(f"{running} running command{'' if running == 1 else 's'} left alone ({ids}{more}): "
                     "a restart never stops what runs; cancel them to run them again")
    out.result(answer, lines, rows=[{"id": i} for i in edited])
    if not summary["filteredCount"]:
        raise Failed("no job matches; nothing was changed")


def job_action(action, value_of=None):
    """The handler of a job action subcommand."""
    def handler(args):
        value = value_of(args) if value_of else None
        cascade = not getattr(args, "no_cascade", False)
        edit_jobs(connect(args), output(args), action, job_constraints(args, args.restrictions),
                  value, cascade)
    return handler


# -- acting on render nodes, licenses and pools --------------------------------------------------------
def _path(*parts):
    return "/" + "/".join(quote(str(p), safe=":") for p in parts)


def _known_rns(server, names):
    known = {item["name"] for item in server.get("/query/rn", [("attr", "name")])["items"]}
    missing = [n for n in names if n.lower() not in known]
    if missing:
        raise Failed(f"no render node {', '.join(missing)}; nothing was changed")
    return [n.lower() for n in names]


def cmd_rn_pause(args, paused=True):
    server, out = connect(args), output(args)
    names = _known_rns(server, args.names)
    kill = paused and args.kill
    answers = [server.put(_path("rendernodes", n, "paused"), {"paused": paused, "killproc": kill})
               for n in names]
    verb = ("paused and emptied" if kill else "paused") if paused else "resumed"
    out.result(answers, [f"{verb} render node {n}" for n in names], rows=[{"name": n} for n in names])


def cmd_rn_resume(args):
    cmd_rn_pause(args, paused=False)


def cmd_quarantine(args, quarantine=True):
    server, out = connect(args), output(args)
    answer = server.put("/rendernodes/quarantine", {"quarantine": quarantine, "rns": args.names})
    verb = "put in quarantine" if quarantine else "released from quarantine"
    out.result(answer, [f"{verb}: {', '.join(answer['rns'])}"], rows=[{"name": n} for n in answer["rns"]])


def cmd_unquarantine(args):
    cmd_quarantine(args, quarantine=False)


def cmd_license(args):
    lic = connect(args).put(_path("licenses", args.name), {"maxlic": args.count})
    output(args).result(lic, [f"license {lic['name']}: {lic['used']} of {lic['max']} in use"], rows=[lic])


def cmd_pool_create(args):
    pool = connect(args).post(_path("pools", args.name))
    output(args).result(pool, [f"created pool {pool['name']}"], rows=[pool])


def cmd_pool_delete(args):
    answer = connect(args).delete(_path("pools", args.name))
    output(args).result(answer, [f"deleted pool {args.name}"], rows=[answer])


def cmd_pool_set_nodes(args):
    pool = connect(args).put(_path("pools", args.name, "rendernodes"), {"renderNodes": args.rns})
    nodes = ", ".join(pool["renderNodes"]) or "no render node"
    output(args).result(pool, [f"pool {pool['name']}: {nodes}"], rows=[pool])


# -- logs ------------------------------------------------------------------------------------------------
def _worker_of(server, rn_name):
    rn = server.get(_path("rendernodes", rn_name))
    return rn_name, Server(f"http://{rn['host']}:{rn['port']}")


def _read_log(worker, command_id, params):
    name, client = worker
    try:
        text, headers = client.get_text(f"/commands/{command_id}/log", params)
    except ServerUnreachable as exc:
        raise Unreachable(f"cannot reach the worker {name} at {client.url} for the log: {exc.reason}") from None
    size = {k.lower(): v for k, v in headers.items()}.get("x-log-size")
    return text, int(size) if size is not None else None


def follow_log(server, command_id, stream, follow=False, tail=None, poll=0.5):
    """Print a command's log as its worker serves it; with `follow`, go on until the command ends."""
    cmd = server.get(f"/commands/{command_id}")
    while cmd["renderNode"] is None:
        if not follow:
            raise Failed(f"command {command_id} has not run yet ({cmd['statusName']}): no log")
        time.sleep(poll)
        cmd = server.get(f"/commands/{command_id}")
    worker = _worker_of(server, cmd["renderNode"])
    params = {"tail": tail} if tail is not None else {}
    while True:
        ended = cmd["status"] in FINAL
        text, size = _read_log(worker, command_id, params)
        stream.write(text)
        stream.flush()
        if not follow or ended:
            return
        if size is not None:
            params = {"offset": size}
        time.sleep(poll)
        cmd = server.get(f"/commands/{command_id}")
        if cmd["renderNode"] and cmd["renderNode"] != worker[0]:
            worker = _worker_of(server, cmd["renderNode"])
            params = {}
            stream.write(f"--- command {command_id} now runs on {worker[0]} ---\n")


def cmd_log(args):
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail takes a number of lines (0 or more)")
    follow_log(connect(args), args.command, sys.stdout, args.follow, args.tail)


# -- the command line --------------------------------------------------------------------------------
def _subparser(subs, name, func, help, **kw):
    parser = subs.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kw)
    add_common_options(parser, suppress=True)
    parser.set_defaults(func=func)
    return parser


def _listing_options(parser, sorted_by="id"):
    parser.add_argument("-a", "--attribute", action="append", metavar="FIELD",
                        help="show this field of the API instead of the default columns (repeatable)")
    parser.add_argument("--sort", metavar="FIELD", help=f"sort on a field or column (default: {sorted_by})")
    parser.add_argument("-r", "--reverse", action="store_true", help="reverse the order")


def _job_targets(parser):
    parser.add_argument("restrictions", nargs="*", metavar="JOB",
                        help="job ids (a word that is not a number is a user, as in Puli)")
    add_job_filters(parser)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Look at the Puli farm and act on it. Without a subcommand: jobs.",
        epilog="Exit status: 0 done, 1 refused by the dispatcher or nothing matched, 2 usage "
               "error, 3 dispatcher (or worker) unreachable.")
    add_common_options(parser)
    subs = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    p = _subparser(subs, "jobs", cmd_jobs, "list jobs (the default)")
    _job_targets(p)
    _listing_options(p)
    p.add_argument("-t", "--tree", action="store_true", help="show the task groups and tasks under each job")
    p.add_argument("-l", "--long", action="store_true", help="more columns: pool, command counts, attempts")

    p = _subparser(subs, "job", cmd_job, "show one job: its tasks and its commands")
    p.add_argument("job", type=int, metavar="ID")

    p = _subparser(subs, "commands", cmd_commands, "list commands")
    p.add_argument("jobs", nargs="*", type=int, metavar="JOB", help="commands of these jobs (or any node)")
    p.add_argument("--job", action="append", type=int, default=[], metavar="ID", help="same as JOB")
    p.add_argument("--id", action="append", type=int, default=[], metavar="ID", help="command id")
    p.add_argument("--status", action="append", default=[],
                   help="command status, name or number (repeatable)")
    p.add_argument("--started-after", metavar="WHEN", help="'YYYY-mm-dd[ HH:MM[:SS]]' or 2h, 3d ago")
    p.add_argument("--started-before", metavar="WHEN")
    p.add_argument("--limit", type=int, metavar="N", help="at most N commands")
    _listing_options(p)

    p = _subparser(subs, "rn", cmd_rn, "list render nodes")
    p.add_argument("names", nargs="*", metavar="NAME", help="name (host:port) regular expression")
    p.add_argument("--name", action="append", default=[], metavar="REGEX", help="same as NAME")
    p.add_argument("--status", action="append", default=[], help="render node status, name or number")
    p.add_argument("--pool", action="append", default=[])
    p.add_argument("--cores", action="append", default=[], metavar="[+-]N",
                   help="+N more than N cores, -N fewer, N exactly")
    p.add_argument("--ram", action="append", default=[], metavar="[+-]MB", help="RAM in MB, same form")
    p.add_argument("--speed", action="append", default=[], metavar="[+-]GHZ", help="CPU GHz, same form")
    _listing_options(p, "name")

    _subparser(subs, "pools", cmd_pools, "list pools and their render nodes")
    p = _subparser(subs, "poolshares", cmd_poolshares, "list pool shares (which job runs in which pool)")
    p.add_argument("--pool", action="append", default=[])
    _subparser(subs, "licenses", cmd_licenses, "list license counters")

    actions = [
        ("pause", "pause jobs: nothing new starts, running commands go on", None),
        ("resume", "resume paused jobs", None),
        ("cancel", "cancel jobs (their running commands are killed)", None),
        ("restart", "restart jobs from scratch, and the jobs that depend on them", None),
        ("retry", "restart only the failed (ERROR, TIMEOUT) commands of jobs", None),
        ("done", "force jobs DONE", None),
        ("set-prio", "set the priority (dispatchKey) of jobs", ("VALUE", float)),
        ("set-dispatchkey", "same as set-prio", ("VALUE", float)),
        ("set-maxrn", "set how many commands of each job may run at once (-1: no limit)", ("VALUE", int)),
        ("set-pool", "move jobs to another pool", ("POOL", str)),
    ]
    for name, help, value in actions:
        action = "set-prio" if name == "set-dispatchkey" else name
        p = _subparser(subs, name, job_action(action, (lambda a: _value_text(a.value)) if value else None),
                       help + "; give job ids or filters",
                       epilog="Acting by filter needs at least one filter: never every job by accident.")
        if value:
            p.add_argument("value", metavar=value[0], type=value[1])
        _job_targets(p)
        if name == "restart":
            p.add_argument("--no-cascade", action="store_true",
                           help="leave the jobs that depend on these alone")

    p = _subparser(subs, "rn-pause", cmd_rn_pause, "pause render nodes: they take no new work")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--kill", action="store_true", help="also stop what they run (it goes back to the queue)")
    p = _subparser(subs, "rn-resume", cmd_rn_resume, "resume render nodes (lifts a quarantine too)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "quarantine", cmd_quarantine, "put render nodes in quarantine")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "unquarantine", cmd_unquarantine, "release render nodes from quarantine")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "license", cmd_license, "set the number of tokens of a license (creates it)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("count", metavar="COUNT", type=int)
    p = _subparser(subs, "pool-create", cmd_pool_create, "create an empty pool")
    p.add_argument("name", metavar="NAME")
    p = _subparser(subs, "pool-delete", cmd_pool_delete, "delete a pool that holds no job")
    p.add_argument("name", metavar="NAME")
    p = _subparser(subs, "pool-set-nodes", cmd_pool_set_nodes, "set the render nodes of a pool")
    p.add_argument("name", metavar="NAME")
    p.add_argument("rns", nargs="+", metavar="RN")

    p = _subparser(subs, "log", cmd_log, "print a command's log, from the worker that ran it")
    p.add_argument("command", type=int, metavar="COMMAND_ID")
    p.add_argument("-f", "--follow", action="store_true", help="go on printing until the command ends")
    p.add_argument("-n", "--tail", type=int, metavar="N", help="start with the last N lines")
    return parser, subs


def _value_text(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_default_subcommand(argv, subs):
    """`puliquery [options] [restrictions]` means `puliquery [options] jobs [restrictions]`."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help"):
            return argv
        if word == "--server":
            i += 2
            continue
        if word.startswith("--server=") or word in ("--json", "--csv"):
            i += 1
            continue
        break
    if i < len(argv) and argv[i] in subs.choices:
        return argv
    return argv[:i] + ["jobs"] + argv[i:]


def main(argv=None):
    parser, subs = build_parser()
    argv = _with_default_subcommand(list(sys.argv[1:] if argv is None else argv), subs)
    args = parser.parse_args(argv)
    return run(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
