"""What users do to jobs and their nodes: pause, cancel, restart, retry, force DONE, and edits of
their scheduling attributes.

Each function validates first and changes nothing when it refuses. Every status change goes
through the Farm (set_status, finish, requeue, cancel, force_done).
"""
from . import limits
from .errors import Conflict, InvalidValue
from .lookup import get_pool
from .status import ACTIVE, FAILED, FINAL, CommandStatus as CS, NodeStatus as NS


RETRYABLE = FAILED


def _commands(node):
    for task in node.tasks():
        yield from task.commands


def pause(farm, node, paused, now, kill=False):
    """Pause (or resume) a subtree: nothing new starts; with kill, running commands go back to READY."""
    for n in node.walk():
        n.paused = paused
        farm.dirty.nodes.add(n)
        if n.is_task:
            farm.refresh_ready(n)
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
            farm.cancel(cmd, now)
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
    """Declare every command of the subtree DONE; running ones are stopped on their node."""
    changes = Changes()
    for cmd in _commands(node):
        if cmd.status != CS.DONE:
            farm.force_done(cmd, now)
            changes.changed += 1
    return changes


def set_node_status(farm, node, status, now, cascade=True, command_statuses=None):
    """Puli's PUT /nodes/<id>/status, a node status as the wish: READY restarts (or retries the
    commands in `command_statuses`), DONE forces DONE, CANCELED cancels."""
    if status == NS.READY:
        if command_statuses:
            return retry(farm, node, now, frozenset(command_statuses))
        return restart(farm, node, now, cascade)
    if status == NS.DONE:
        return force_done(farm, node, now)
    if status == NS.CANCELED:
        return cancel(farm, node, now)
    raise InvalidValue(f"status {status} cannot be set: use {NS.READY:d} (READY: restart), "
                       f"{NS.DONE:d} (DONE) or {NS.CANCELED:d} (CANCELED)")


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
            farm.force_done(cmd, now)
    elif status == CS.CANCELED:
        if cmd.status not in FINAL:
            farm.cancel(cmd, now)
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
    if max_rn is not None:
        limits.integer("maxRN (-1 or 0 for no limit)", max_rn, minimum=-1)
    old = job.share
    if old.pool is pool and max_rn is None:
        return old
    old.pool.jobs.pop(job, None)
    old.pool.shares.pop(old.id, None)
    farm.shares.pop(old.id, None)
    old.archived = True
    farm.dirty.shares.add(old)
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
