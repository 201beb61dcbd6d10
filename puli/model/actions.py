"""What users and workers do to the farm: job operations, registrations, heartbeats, reports.

Each function validates first and changes nothing when it refuses. Every status change goes
through Farm.set_status / finish / requeue.
"""
from . import limits
from .errors import Conflict, InvalidValue, NotFound, StaleAssignment
from .rendernodes import RenderNode
from .status import ACTIVE, FAILED, FINAL, FINAL_NODE, CommandStatus as CS

RETRYABLE = FAILED


# -- lookups -------------------------------------------------------------------------------------
def get_node(farm, node_id):
    node = farm.nodes.get(node_id)
    if node is None:
        raise NotFound(f"no node {node_id}")
    return node


def get_command(farm, command_id):
    cmd = farm.commands.get(command_id)
    if cmd is None:
        raise NotFound(f"no command {command_id}")
    return cmd


def get_render_node(farm, name):
    rn = farm.render_nodes.get(name.lower())
    if rn is None:
        raise NotFound(f"no render node {name}")
    return rn


def get_pool(farm, name):
    pool = farm.pools.get(name)
    if pool is None or pool.archived:
        raise NotFound(f"no pool {name}")
    return pool


def _commands(node):
    for task in node.tasks():
        yield from task.commands


# -- job operations ------------------------------------------------------------------------------
def pause(farm, node, paused, now, kill=False):
    """Pause (or resume) a subtree: nothing new starts; with kill, running commands go back to READY."""
    for n in node.walk():
        n.paused = paused
        farm.dirty.nodes.add(n)
        if n.is_task:
            farm._refresh_ready(n)
    if kill:
        for cmd in _commands(node):
            if cmd.status in ACTIVE:
                farm.requeue(cmd, now)
    farm.refresh_job(node.job)
    for task in node.tasks():
        farm.refresh_status(task, now)
    farm.refresh_status(node, now)


class Changes:
    """What a job operation did: how many commands it changed, and the running (or assigned)
    ones a restart left alone, since a restart never stops or reruns what runs."""

    __slots__ = ("changed", "left_alone")

    def __init__(self, changed=0):
        self.changed = changed
        self.left_alone = []            # commands in ACTIVE statuses, untouched

    def add(self, other):
        self.changed += other.changed
        self.left_alone.extend(other.left_alone)
        return self


def cancel(farm, node, now):
    """Cancel every unfinished command of the subtree; running ones are killed on their node."""
    changes = Changes()
    for cmd in _commands(node):
        if cmd.status not in FINAL:
            farm.stop_on_worker(cmd)
            cmd.assignment = 0
            farm.finish(cmd, CS.CANCELED, now, "canceled")
            changes.changed += 1
    return changes


def restart(farm, node, now, cascade=True, _seen=None):
    """Run the subtree again from scratch, except what is running: an ASSIGNED or RUNNING
    command is left alone (Puli 1.7 skips a running task), so a frame never runs twice.

    With cascade, the nodes that depend on it are restarted first, so none of them runs on
    the old result.
    """
    seen = _seen if _seen is not None else set()
    changes = Changes()
    if node.id in seen:
        return changes
    seen.add(node.id)
    if cascade:
        for n in node.walk():
            for dep in list(n.dependents):
                changes.add(restart(farm, dep.node, now, True, seen))
    for cmd in _commands(node):
        if cmd.status in ACTIVE:
            changes.left_alone.append(cmd)
        elif cmd.status != CS.READY or cmd.attempt or cmd.completion:
            farm.requeue(cmd, now, reset_attempts=True)
            changes.changed += 1
    return changes


def retry(farm, node, now, statuses=RETRYABLE):
    """Requeue only the commands in `statuses` (by default the failed ones); like a restart,
    it leaves what runs alone."""
    changes = Changes()
    for cmd in _commands(node):
        if cmd.status in statuses:
            if cmd.status in ACTIVE:
                changes.left_alone.append(cmd)
            else:
                farm.requeue(cmd, now, reset_attempts=True)
                changes.changed += 1
    return changes


def force_done(farm, node, now):
    changes = Changes()
    for cmd in _commands(node):
        if cmd.status != CS.DONE:
            _force_command_done(farm, cmd, now)
            changes.changed += 1
    return changes


def _force_command_done(farm, cmd, now):
    farm.stop_on_worker(cmd)
    cmd.assignment = 0
    farm.finish(cmd, CS.DONE, now, "set DONE by a user")


def set_node_status(farm, node, status, now, cascade=True, command_statuses=None):
    """Puli's PUT /nodes/<id>/status: 1 restarts (or retries given command statuses), 3 forces
    DONE, 5 cancels."""
    if status == 1:
        if command_statuses:
            return retry(farm, node, now, frozenset(command_statuses))
        return restart(farm, node, now, cascade)
    if status == 3:
        return force_done(farm, node, now)
    if status == 5:
        return cancel(farm, node, now)
    raise InvalidValue(f"status {status} cannot be set: use 1 (READY: restart), 3 (DONE) or 5 (CANCELED)")


def set_command_status(farm, cmd, status, now):
    """Puli's PUT /commands/<id> {status}: 1 restart, 5 force DONE, 8 cancel.

    A restart of a command that runs is refused: it would stop the run and start another."""
    if status == CS.READY:
        if cmd.status in ACTIVE:
            where = f" on {cmd.render_node.name}" if cmd.render_node is not None else ""
            raise Conflict(f"command {cmd.id} is {cmd.status.name}{where}: a restart never stops "
                           "a running command; cancel it first, or wait for its end")
        farm.requeue(cmd, now, reset_attempts=True)
    elif status == CS.DONE:
        if cmd.status != CS.DONE:
            _force_command_done(farm, cmd, now)
    elif status == CS.CANCELED:
        if cmd.status not in FINAL:
            farm.stop_on_worker(cmd)
            cmd.assignment = 0
            farm.finish(cmd, CS.CANCELED, now, "canceled")
    else:
        raise InvalidValue(f"a command's status can be set to 1 (READY), 5 (DONE) or 8 (CANCELED), not {status}")


def set_max_rn(farm, node, value):
    limits.integer("maxRN (-1 or 0 for no limit)", value, minimum=-1)
    value = value if value > 0 else -1
    if node.is_job:
        node.job.share.max_rn = value
        farm.dirty.shares.add(node.job.share)
    else:
        node.max_rn = value
    farm.dirty.nodes.add(node)
    farm.wake = True


def max_rn_of(node):
    return node.share.max_rn if node.is_job and node.share else node.max_rn


def set_pool(farm, job, pool_name, max_rn=None):
    """Move a job to another pool (a new pool share); its running commands finish where they are."""
    if not job.is_job:
        raise InvalidValue(f"node {job.id} is not a job: only jobs have a pool")
    pool = get_pool(farm, pool_name)
    old = job.share
    if old.pool is pool and max_rn is None:
        return old
    old.pool.jobs.pop(job, None)
    old.pool.shares.pop(old.id, None)
    farm.shares.pop(old.id, None)
    old.archived = True
    farm.dirty.shares.add(old)
    if max_rn is not None:
        limits.integer("maxRN (-1 or 0 for no limit)", max_rn, minimum=-1)
    job.share = farm.new_share(pool, job, old.max_rn if max_rn is None else (max_rn if max_rn > 0 else -1))
    farm.refresh_job(job)
    return job.share


_ATTRIBUTES = {
    "dispatch_key": lambda value: limits.number("dispatchKey", value),
    "priority": lambda value: limits.integer("priority", value),
    "name": lambda value: limits.text("name", value),
    "user": lambda value: limits.text("user", value),
    "strategy": lambda value: limits.text("strategy", value),
    "timer": lambda value: None if value is None else limits.number("timer", value),
}


def set_attribute(farm, node, field, value):
    """Edit one scheduling attribute of a node (dispatchKey, priority, name, user, ...)."""
    check = _ATTRIBUTES.get(field)
    if check is None:
        raise InvalidValue(f"{field} cannot be edited")
    value = check(value)
    if field == "name" and not value:
        raise InvalidValue("a name cannot be empty")
    setattr(node, field, value)
    farm.dirty.nodes.add(node)
    farm.wake = True


def set_tag(farm, node, key, value):
    tags = dict(node.tags, **{key: value})
    limits.json_text("tags", tags)
    node.tags = tags
    farm.dirty.nodes.add(node)


def set_task_field(farm, node, field, value):
    """Edit what a node hands its commands: environment, arguments, or (subtree) ram_use."""
    if field == "ram_use":
        limits.integer("ramUse", value, minimum=0)
    else:
        limits.json_text(field, value)
    targets = node.tasks() if field == "ram_use" else (node,)
    for n in targets:
        setattr(n, field, value)
        farm.dirty.nodes.add(n)
    farm.wake = True


def set_max_attempt(farm, node, value):
    limits.integer("maxAttempt", value, minimum=1)
    for task in node.tasks():
        task.max_attempt = value
        farm.dirty.nodes.add(task)


# -- render nodes --------------------------------------------------------------------------------
def register(farm, name, info, running, now, pools_from_config=None):
    """A worker (re)starts. Returns the ids of reported commands it must stop.

    `running` lists what the worker still runs: {id, assignment, status, completion, message}.
    Commands it still runs under their current assignment stay where they are (nothing runs
    twice); ours that it no longer has go back to the queue.
    """
    name = name.lower()
    _check_node_info(name, info)
    for item in running or ():
        _check_report(item)
    rn = farm.render_nodes.get(name)
    if rn is None:
        rn = RenderNode(farm.next_rn_id, name, create_date=now)
        farm.next_rn_id += 1
        farm.dirty.meta = True
        farm.render_nodes[name] = rn
    host, _, port = name.rpartition(":") if ":" in name else (name, "", "")
    rn.host = info.get("host") or host
    rn.port = info.get("port") or (int(port) if port else 8000)
    for key, attr in (("cores", "cores"), ("ram", "ram"), ("speed", "speed"),
                      ("puliversion", "puliversion"), ("caracteristics", "caracteristics")):
        if key in info:
            setattr(rn, attr, info[key])
    used_cores = sum(c.cores for c in rn.commands.values())
    used_ram = sum(c.ram for c in rn.commands.values())
    rn.free_cores = rn.cores - used_cores
    rn.free_ram = rn.ram - used_ram
    rn.register_date = now
    if "systemFreeRam" in info:
        rn.system_free_ram = info["systemFreeRam"]
    if pools_from_config is not None:
        set_render_node_pools(farm, rn, pools_from_config, create=False)
    else:
        set_render_node_pools(farm, rn, info.get("pools") or [])
    farm.dirty.render_nodes.add(rn)

    reported = {}
    for item in running or ():
        reported[item["id"]] = item
    stop = []
    for cmd in list(rn.commands.values()):
        item = reported.get(cmd.id)
        if item is None or item.get("assignment") != cmd.assignment:
            farm.requeue(cmd, now)      # the worker lost it (rebooted): run it again
    for cmd_id, item in reported.items():
        cmd = farm.commands.get(cmd_id)
        try:
            _check_fence(farm, cmd, rn, item.get("assignment"))
        except (StaleAssignment, NotFound):
            stop.append(cmd_id)
            continue
        _apply_report(farm, cmd, rn, item, now)
    touch(farm, rn, now)
    return stop


def _text_list(name, max_chars):
    def check(values):
        if not isinstance(values, list):
            raise InvalidValue(f"{name} must be a list of strings")
        for value in values:
            limits.text(name, value, max_chars)
    return check


# What a worker says of its node, as the store keeps it.
_NODE_INFO = {
    "host": lambda v: limits.text("host", v, limits.NAME_CHARS),
    "port": lambda v: limits.integer("port", v, 1, 65535),
    "cores": lambda v: limits.integer("cores", v, 1),
    "ram": lambda v: limits.integer("ram (MB)", v, 0),
    "speed": lambda v: limits.number("speed", v, 0),
    "puliversion": lambda v: limits.text("puliversion", v, limits.NAME_CHARS),
    "caracteristics": lambda v: limits.json_text("caracteristics", v),
    "systemFreeRam": lambda v: limits.integer("systemFreeRam (MB)", v, 0),
    "systemSwapPercentage": lambda v: limits.number("systemSwapPercentage", v, 0, 100),
    "pools": _text_list("pools", limits.NAME_CHARS),
}


def _check_node_info(name, info):
    limits.text("a render node's name", name, limits.NAME_CHARS)
    host, colon, port = name.rpartition(":")
    if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidValue(f"render node {name!r}: the part after ':' must be a port (1-65535)")
    for key, value in info.items():
        check = _NODE_INFO.get(key)
        if check is not None and value is not None:
            check(value)


def set_render_node_pools(farm, rn, names, create=True):
    """Put a render node in these pools (and always in `default`), and out of the others."""
    _set_pools(farm, rn, ["default", *names], create)


def _set_pools(farm, rn, names, create):
    pools = []
    for pool_name in dict.fromkeys(names):
        pool = farm.get_pool(pool_name, create=create)
        if pool is not None:
            pools.append(pool)
    for pool in rn.pools:
        if pool not in pools:
            pool.render_nodes.pop(rn.name, None)
            pool.free.pop(rn, None)
            farm.dirty.pools.add(pool)
    for pool in pools:
        if rn.name not in pool.render_nodes:
            pool.render_nodes[rn.name] = rn
            farm.dirty.pools.add(pool)
    rn.pools = pools
    farm.refresh_render_node(rn)


def set_pool_members(farm, pool, names):
    """Replace a pool's render nodes (Puli's PUT /pools/<name>/rendernodes)."""
    rns = []
    for name in names:
        rns.append(get_render_node(farm, name))
    for rn in list(pool.render_nodes.values()):
        if rn not in rns:
            _set_pools(farm, rn, [p.name for p in rn.pools if p is not pool], create=False)
    for rn in rns:
        if pool not in rn.pools:
            _set_pools(farm, rn, [p.name for p in rn.pools] + [pool.name], create=False)


def touch(farm, rn, now):
    rn.last_alive = now
    if not rn.alive or not rn.reachable:
        rn.alive = rn.reachable = True
        farm.refresh_render_node(rn)


def unreachable(farm, rn):
    """The worker did not take an assignment: give it nothing more until it is heard from."""
    rn.reachable = False
    farm.refresh_render_node(rn)


def heartbeat(farm, name, info, now):
    rn = get_render_node(farm, name)
    _check_node_info(rn.name, info)
    if "systemFreeRam" in info:
        rn.system_free_ram = info["systemFreeRam"]
    if "systemSwapPercentage" in info:
        rn.system_swap_percentage = info["systemSwapPercentage"]
    for key in ("cores", "ram", "speed", "puliversion", "caracteristics"):
        if key in info and getattr(rn, key) != info[key]:
            if key == "cores":
                rn.free_cores += info[key] - rn.cores
            elif key == "ram":
                rn.free_ram += info[key] - rn.ram
            setattr(rn, key, info[key])
            farm.dirty.render_nodes.add(rn)
    touch(farm, rn, now)
    farm.refresh_render_node(rn)
    return rn


def _check_fence(farm, cmd, rn, assignment):
    if cmd is None:
        raise NotFound("unknown command")
    if cmd.render_node is not rn or not cmd.assignment or cmd.assignment != assignment:
        raise StaleAssignment(f"command {cmd.id} is no longer assigned to {rn.name} under assignment {assignment}")
    if cmd.status not in ACTIVE and cmd.status not in FINAL:
        raise StaleAssignment(f"command {cmd.id} is {cmd.status.name}, not running on {rn.name}")


def command_update(farm, name, command_id, report, now):
    """A worker reports progress or the end of a command it runs.

    Refused (StaleAssignment) when the report's assignment is not the command's current one:
    the worker must then stop the command. A late report never overwrites a newer state.
    """
    rn = get_render_node(farm, name)
    cmd = get_command(farm, command_id)
    _check_report(report)
    touch(farm, rn, now)
    _check_fence(farm, cmd, rn, report.get("assignment"))
    _apply_report(farm, cmd, rn, report, now)
    return cmd


def _check_report(report):
    """Refuse what the store could not keep before anything of the report is applied."""
    status = report.get("status")
    if status is not None and status not in CS._value2member_map_:
        raise InvalidValue(f"status {status!r} is not a command status (0..8)")
    if report.get("completion") is not None:
        limits.number("completion", report["completion"])
    if report.get("stats") is not None:
        limits.json_text("stats", report["stats"])


def _apply_report(farm, cmd, rn, report, now):
    status = report.get("status")
    if status is not None:
        status = CS(status)
    if cmd.status in FINAL:
        return                          # a repeated final report: already applied
    if "message" in report and report["message"] is not None:
        cmd.message = str(report["message"])[:4096]
        farm.dirty.commands.add(cmd)
    if report.get("stats") is not None:
        cmd.stats = report["stats"]
        farm.dirty.commands.add(cmd)
    completion = report.get("completion")
    if completion is not None and status not in (CS.DONE,):
        farm.set_completion(cmd, min(max(float(completion), 0.0), 1.0))
    cmd.update_time = now
    if status is None or status == cmd.status:
        return
    if status == CS.RUNNING:
        farm.set_status(cmd, CS.RUNNING, now)
    elif status in (CS.DONE, CS.ERROR):
        farm.finish(cmd, status, now)
    elif status == CS.CANCELED:
        farm.requeue(cmd, now)          # killed on the node, not by a user: run it again
    elif status == CS.TIMEOUT:
        farm.finish(cmd, CS.ERROR, now)  # its max run time passed on the worker


def set_render_node_paused(farm, rn, paused, kill=False, now=0.0):
    rn.paused = paused
    if not paused:
        rn.quarantined = False
        rn.history.clear()
    if kill:
        for cmd in list(rn.commands.values()):
            farm.requeue(cmd, now)
    farm.dirty.render_nodes.add(rn)
    farm.refresh_render_node(rn)


def reset_render_node(farm, rn, now):
    """Stop what the node runs and put those commands back in the queue."""
    requeued = list(rn.commands)
    for cmd in list(rn.commands.values()):
        farm.requeue(cmd, now)
    return requeued


def set_performance(farm, rn, value):
    rn.performance = limits.number("performance", value)
    farm.dirty.render_nodes.add(rn)
    farm.wake = True


def set_quarantine(farm, rn, quarantined):
    rn.quarantined = quarantined
    if not quarantined:
        rn.history.clear()
    farm.dirty.render_nodes.add(rn)
    farm.refresh_render_node(rn)


def remove_render_node(farm, rn, now):
    for cmd in list(rn.commands.values()):
        farm.requeue(cmd, now)
    _set_pools(farm, rn, [], create=False)
    del farm.render_nodes[rn.name]
    farm.dirty.render_nodes.add(rn)
    rn.archived = True


# -- pools and licenses ----------------------------------------------------------------------------
def create_pool(farm, name):
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidValue(f"bad pool name {name!r}: use letters, digits, '.', '_' and '-'")
    limits.text("a pool's name", name, limits.NAME_CHARS)
    pool = farm.pools.get(name)
    if pool is not None and not pool.archived:
        raise Conflict(f"pool {name} already exists")
    if pool is not None:
        pool.archived = False
        farm.dirty.pools.add(pool)
        return pool
    return farm.get_pool(name)


def delete_pool(farm, pool):
    if pool.name == "default":
        raise Conflict("the default pool cannot be deleted")
    if pool.shares:
        raise Conflict(f"pool {pool.name} still holds jobs: {', '.join(str(s.node.id) for s in pool.shares.values())}")
    for rn in list(pool.render_nodes.values()):
        _set_pools(farm, rn, [p.name for p in rn.pools if p is not pool], create=False)
    pool.archived = True
    farm.dirty.pools.add(pool)


def set_license(farm, name, maximum):
    limits.text("a license's name", name, limits.NAME_CHARS)
    limits.integer("a license count", maximum, minimum=0)
    return farm.set_license(name, maximum)


def release_license(farm, name, rn_names):
    """A runner gives its tokens back early (Puli's DELETE /licenses/<name>)."""
    lic = farm.licenses.get(name)
    if lic is None:
        raise NotFound(f"no license {name}")
    wanted = {n.lower() for n in rn_names}
    for cmd_id, holder in list(lic.holders.items()):
        if holder in wanted:
            del lic.holders[cmd_id]
            lic.used -= 1
    farm.dirty.licenses.add(lic)
    farm.wake = True
    return lic


def archive_finished(farm, now, after):
    """Archive jobs finished (DONE or CANCELED) for longer than `after` seconds."""
    done = [job for job in farm.root.children
            if job.status in FINAL_NODE and job.end_time is not None and job.end_time + after <= now]
    for job in done:
        farm.archive(job)
    return len(done)
