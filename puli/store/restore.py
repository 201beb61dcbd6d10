"""Rebuild the farm from the database at start: live rows only, streamed, straight into model objects.

A million commands must come back in seconds and stay under 1 KiB each, so the command loop
is written for speed and memory: no per-row dict, no json parsing (arguments stay text),
shared objects for repeated values (statuses, 0.0/1.0, messages, core and RAM sizes).
Derived state (counters, statuses, ready indices, blocked flags, the retry heap) is not read:
Farm.publish rebuilds it exactly as it does for a submission.
"""
import gc
import json
import sys

from ..model.farm import ROOT_ID
from ..model.jobs import Command, Task, TaskGroup, new_dependency
from ..model.licenses import License
from ..model.pools import Pool, PoolShare
from ..model.rendernodes import RenderNode
from ..model.status import CommandStatus, NodeStatus
from .rows import COMMAND_COLUMNS, COUNTERS, NODE_COLUMNS, RENDER_NODE_COLUMNS

_COMMAND_STATUS = tuple(CommandStatus)
_NODE_STATUS = {int(s): s for s in NodeStatus}
_ACTIVE = frozenset(int(s) for s in (CommandStatus.ASSIGNED, CommandStatus.RUNNING, CommandStatus.FINISHING))
_DONE = int(CommandStatus.DONE)
_ZERO, _ONE = 0.0, 1.0


def load(cur, farm, now):
    """Restore every live row into `farm` (a fresh Farm) through cursor `cur` (one transaction)."""
    was_enabled = gc.isenabled()
    # A million new container objects would trigger dozens of full collections, each walking
    # everything built so far; nothing here makes garbage cycles.
    gc.disable()
    try:
        _load(cur, farm, now)
    finally:
        if was_enabled:
            gc.enable()


def _load(cur, farm, now):
    counters = _read_counters(cur)
    stored_pools = _load_pools(cur, farm)
    _load_render_nodes(cur, farm, now)
    _load_licenses(cur, farm)
    nodes, jobs = _load_nodes(cur, farm)
    active, max_assignment = _load_commands(cur, farm, nodes)
    repaired = _load_shares(cur, farm, nodes, jobs)
    _load_dependencies(cur, nodes)

    for job in jobs:                    # id order: a cross-job dependency's target comes first
        farm.publish(job, now)
    orphans = []
    for cmd in active:
        rn = cmd.render_node
        if rn is not None and farm.render_nodes.get(rn.name) is rn:
            farm.hold(cmd, rn)         # its resources and license tokens, as when assigned
        else:
            orphans.append(cmd)
    for rn in farm.render_nodes.values():
        farm.refresh_render_node(rn)

    counters["next_assignment"] = max(counters.get("next_assignment", 0), max_assignment + 1)
    for name in COUNTERS:
        setattr(farm, name, max(getattr(farm, name), counters.get(name, 0)))

    # Restoring changed nothing the database does not already hold: start with a clean slate,
    # then keep what the restore itself decided.
    farm.take_dirty()
    dirty = farm.dirty
    dirty.pools.update(p for p in farm.pools.values() if p.id not in stored_pools)
    if repaired:
        dirty.shares.update(repaired)
        dirty.meta = True
    for cmd in orphans:
        # Active on a render node that no longer exists: nobody will report on it.
        cmd.render_node = None
        farm.requeue(cmd, now)
    farm.outbox.clear()


def _read_counters(cur):
    counters = dict(cur.execute("SELECT name, value FROM meta").fetchall())
    for name, table in (("next_node_id", "nodes"), ("next_command_id", "commands"),
                        ("next_share_id", "pool_shares"), ("next_pool_id", "pools"),
                        ("next_rn_id", "render_nodes")):
        # Archived rows count too: ids are never reused.
        top = cur.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
        counters[name] = max(counters.get(name, 0), (top or 0) + 1)
    return counters


def _load_pools(cur, farm):
    """Pools (the default one the Farm made keeps its object); returns the ids stored."""
    stored = set()
    for pool_id, name in cur.execute("SELECT id, name FROM pools WHERE archived = 0 ORDER BY id").fetchall():
        pool = farm.pools.get(name)
        if pool is None:
            pool = farm.pools[name] = Pool(pool_id, name)
        pool.id = pool_id
        stored.add(pool_id)
    return stored


def _load_render_nodes(cur, farm, now):
    cols = ", ".join(RENDER_NODE_COLUMNS)
    for (rn_id, name, host, port, cores, ram, speed, caracteristics, puliversion, performance,
         paused, quarantined, _archived, create_date, register_date, token_id) in cur.execute(
            f"SELECT {cols} FROM render_nodes WHERE archived = 0 ORDER BY id").fetchall():
        rn = RenderNode(rn_id, name, host, port, cores, ram, speed,
                        json.loads(caracteristics) if caracteristics else {}, puliversion, create_date)
        rn.register_date = register_date
        rn.token_id = token_id
        rn.performance = performance
        rn.paused = bool(paused)
        rn.quarantined = bool(quarantined)
        # Alive until proven silent: a node that does not report within rn_timeout is timed
        # out by Farm.check_liveness, and its commands with it.
        rn.alive = True
        rn.last_alive = now
        farm.render_nodes[name] = rn
    by_id = {pool.id: pool for pool in farm.pools.values()}
    for pool_id, name in cur.execute("SELECT pool_id, render_node FROM pool_members ORDER BY id").fetchall():
        pool, rn = by_id.get(pool_id), farm.render_nodes.get(name)
        if pool is not None and rn is not None and name not in pool.render_nodes:
            pool.render_nodes[name] = rn
            rn.pools.append(pool)
    for rn in farm.render_nodes.values():
        rn.pools.sort(key=lambda p: p.id)       # "default" (the farm's first pool) first


def _load_licenses(cur, farm):
    for name, maximum in cur.execute("SELECT name, maximum FROM licenses").fetchall():
        farm.licenses[name] = License(name, maximum)


def _load_nodes(cur, farm):
    """TaskGroups and Tasks, linked to their parents; returns (nodes by id, jobs in id order)."""
    nodes = {}
    jobs = []
    root = farm.root
    intern = sys.intern
    pending = []
    cols = ", ".join(NODE_COLUMNS)
    cur.execute(f"SELECT {cols} FROM nodes WHERE archived = 0 AND id <> %s ORDER BY id", (ROOT_ID,))
    for rows in cur.chunks():
        for row in rows:
            parent_id = row[2]
            parent = root if parent_id == ROOT_ID else nodes.get(parent_id)
            if parent is None:
                pending.append(row)     # parents have smaller ids; this only guards odd data
                continue
            node = _make_node(row, parent, intern)
            nodes[node.id] = node
            if parent is root:
                jobs.append(node)
            else:
                parent.children.append(node)
    while pending:
        left = []
        for row in pending:
            parent = nodes.get(row[2])
            if parent is None:
                left.append(row)
                continue
            node = _make_node(row, parent, intern)
            nodes[node.id] = node
            parent.children.append(node)
        if len(left) == len(pending):
            break                       # parents gone (archived): these nodes are unreachable
        pending = left
    return nodes, jobs


def _make_node(row, parent, intern):
    (node_id, kind, _parent_id, _job_id, name, user, priority, dispatch_key, max_rn, paused, tags,
     environment, arguments, requirements, timer, creation_time, start_time, update_time, end_time,
     status, strategy, runner, min_cores, max_cores, ram_use, licenses, max_attempt, max_run_time,
     validation_expression, runner_packages, watcher_packages, _archived) = row
    common = dict(parent=parent, user=intern(user), priority=priority, dispatch_key=dispatch_key,
                  max_rn=max_rn, tags=_obj(tags), environment=_obj(environment),
                  arguments=_obj(arguments), requirements=_obj(requirements), timer=timer,
                  creation_time=creation_time)
    if kind == "Task":
        node = Task(node_id, name, runner=intern(runner or ""), min_cores=min_cores,
                    max_cores=max_cores, ram_use=ram_use,
                    licenses=tuple(intern(x) for x in (licenses or "").split("&") if x),
                    max_attempt=max_attempt, max_run_time=_number(max_run_time),
                    validation_expression=validation_expression or "",
                    runner_packages=runner_packages or "", watcher_packages=watcher_packages or "",
                    **common)
    else:
        node = TaskGroup(node_id, name, strategy=strategy or "", **common)
    node.paused = bool(paused)
    node.start_time = start_time
    node.update_time = update_time
    node.end_time = end_time
    node.status = _NODE_STATUS.get(status, NodeStatus.DONE)   # publish derives it again
    return node


def _load_commands(cur, farm, nodes):
    """Commands, appended to their tasks in id order. Returns (active commands, top assignment)."""
    new = Command.__new__
    status_of = _COMMAND_STATUS
    active_codes = _ACTIVE
    done = _DONE
    zero, one = _ZERO, _ONE
    render_nodes = farm.render_nodes
    gone = {}                           # name -> stand-in for a removed render node
    shared = {"": ""}                   # repeated messages and sizes share one object
    share = shared.setdefault
    active = []
    top_assignment = 0
    task_id = None
    task = append = None
    cols = ", ".join(COMMAND_COLUMNS)
    cur.execute(f"SELECT {cols} FROM commands WHERE archived = 0 ORDER BY id")
    for rows in cur.chunks():
        if len(shared) > 100_000:
            shared.clear()              # mostly unique messages: sharing them only costs
            shared[""] = ""
        for (cid, tid, description, status, completion, attempt, start_time, update_time, end_time,
             rn_name, assignment, cores, ram, message, stats, args_json, nb_frames, _a) in rows:
            if tid != task_id:
                task_id = tid
                task = nodes.get(tid)
                if task is None or not task.is_task:
                    task = None         # its task is gone: the row is unreachable
                    continue
                append = task.commands.append
            elif task is None:
                continue
            cmd = new(Command)
            cmd.id = cid
            cmd.task = task
            cmd.description = description
            cmd.status = status_of[status]
            cmd.completion = zero if completion == 0.0 else one if completion == 1.0 else completion
            cmd.attempt = attempt
            cmd.start_time = start_time
            cmd.update_time = update_time
            cmd.end_time = end_time
            if rn_name is None:
                cmd.render_node = None
            else:
                rn = render_nodes.get(rn_name)
                if rn is None:
                    rn = gone.get(rn_name)
                    if rn is None:
                        rn = gone[rn_name] = _gone_render_node(rn_name)
                cmd.render_node = rn
            cmd.assignment = assignment
            if assignment > top_assignment:
                top_assignment = assignment
            cmd.cores = share(cores, cores)
            cmd.ram = share(ram, ram)
            cmd.message = share(message, message)
            cmd.stats = json.loads(stats) if stats is not None else None
            cmd.args_json = args_json
            cmd.nb_frames = nb_frames
            cmd.archived = False
            append(cmd)
            if status in active_codes:
                active.append(cmd)
            elif status == done and start_time is not None and end_time is not None:
                _count_time(task, cmd)
    return active, top_assignment


def _count_time(task, cmd):
    """Task.avg_times is not stored: rebuild it from the commands that ran to DONE."""
    per_frame = (cmd.end_time - cmd.start_time) / max(cmd.nb_frames, 1)
    t = task.avg_times
    if t is None:
        task.avg_times = [1, per_frame, per_frame, per_frame]
    else:
        t[0] += 1
        t[1] += per_frame
        if per_frame < t[2]:
            t[2] = per_frame
        if per_frame > t[3]:
            t[3] = per_frame


def _gone_render_node(name):
    """A stand-in that keeps the name a finished command ran on after its node was removed."""
    rn = RenderNode(0, name)
    rn.archived = True
    return rn


def _load_shares(cur, farm, nodes, jobs):
    """Each job's live pool share; a job without one goes to the default pool (returned)."""
    by_id = {pool.id: pool for pool in farm.pools.values()}
    for share_id, pool_id, node_id, max_rn in cur.execute(
            "SELECT id, pool_id, node_id, max_rn FROM pool_shares WHERE archived = 0 ORDER BY id").fetchall():
        job, pool = nodes.get(node_id), by_id.get(pool_id)
        if job is not None and pool is not None and job.parent is farm.root:
            job.share = PoolShare(share_id, pool, job, max_rn)
    repaired = []
    for job in jobs:
        if job.share is None:
            job.share = farm.new_share(farm.get_pool("default"), job, register=False)
            repaired.append(job.share)
    return repaired


def _load_dependencies(cur, nodes):
    cur.execute(
        "SELECT d.node_id, d.target_id, d.statuses, t.archived, t.status"
        " FROM dependencies d JOIN nodes n ON n.id = d.node_id LEFT JOIN nodes t ON t.id = d.target_id"
        " WHERE n.archived = 0 ORDER BY d.id")
    for node_id, target_id, statuses, target_archived, target_status in cur.fetchall():
        node = nodes.get(node_id)
        if node is None:
            continue
        dep = new_dependency(node, target_id, [int(s) for s in statuses.split(",") if s])
        if target_archived:
            # Not loaded: publish keeps this verdict (an archived job's status is final).
            dep.satisfied = target_status in dep.statuses


def _obj(text):
    return json.loads(text) if text else {}


def _number(value):
    """An integral float back to int (the column is DOUBLE, the model had an int)."""
    return int(value) if value is not None and float(value).is_integer() else value
