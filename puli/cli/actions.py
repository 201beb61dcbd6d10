"""What puliquery does to the farm: actions on jobs (by ids or filters, reporting what changed),
and on render nodes, licenses and pools.
"""
import time

from .common import Failed, UsageError, api_path, connect, job_constraints, output


# -- jobs -----------------------------------------------------------------------------------------------
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


# -- render nodes, licenses and pools ------------------------------------------------------------------


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
    answers = [server.put(api_path("rendernodes", n, "paused"), {"paused": paused, "killproc": kill})
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
    lic = connect(args).put(api_path("licenses", args.name), {"maxlic": args.count})
    output(args).result(lic, [f"license {lic['name']}: {lic['used']} of {lic['max']} in use"], rows=[lic])


def cmd_pool_create(args):
    pool = connect(args).post(api_path("pools", args.name))
    output(args).result(pool, [f"created pool {pool['name']}"], rows=[pool])


def cmd_pool_delete(args):
    answer = connect(args).delete(api_path("pools", args.name))
    output(args).result(answer, [f"deleted pool {args.name}"], rows=[answer])


def cmd_pool_set_nodes(args):
    pool = connect(args).put(api_path("pools", args.name, "rendernodes"), {"renderNodes": args.rns})
    nodes = ", ".join(pool["renderNodes"]) or "no render node"
    output(args).result(pool, [f"pool {pool['name']}: {nodes}"], rows=[pool])
