"""Model objects to plain row tuples, in the column order the writes and the restore share.

Everything here runs under the farm lock (Store.snapshot) or on a job nobody else sees yet
(Store.insert_job): it only reads attributes, never does I/O.
"""
import json

from ..model.farm import ROOT_ID
from ..model.status import N_COMMAND_STATUSES, node_status

NODE_COLUMNS = ("id", "kind", "parent_id", "job_id", "name", "user", "priority", "dispatch_key",
                "max_rn", "paused", "tags", "environment", "arguments", "requirements", "timer",
                "creation_time", "start_time", "update_time", "end_time", "status", "strategy",
                "runner", "min_cores", "max_cores", "ram_use", "licenses", "max_attempt",
                "max_run_time", "validation_expression", "runner_packages", "watcher_packages",
                "archived")
COMMAND_COLUMNS = ("id", "task_id", "description", "status", "completion", "attempt", "start_time",
                   "update_time", "end_time", "render_node", "assignment", "cores", "ram", "message",
                   "stats", "args_json", "nb_frames", "archived")
COMMAND_STATS = COMMAND_COLUMNS.index("stats")
DEPENDENCY_COLUMNS = ("node_id", "target_id", "statuses")
POOL_COLUMNS = ("id", "name", "archived")
MEMBER_COLUMNS = ("pool_id", "render_node")
SHARE_COLUMNS = ("id", "pool_id", "node_id", "max_rn", "archived")
RENDER_NODE_COLUMNS = ("id", "name", "host", "port", "cores", "ram", "speed", "caracteristics",
                       "puliversion", "performance", "paused", "quarantined", "archived",
                       "create_date", "register_date", "token_id")
LICENSE_COLUMNS = ("name", "maximum")
META_COLUMNS = ("name", "value")
COUNTERS = ("next_node_id", "next_command_id", "next_share_id", "next_pool_id", "next_rn_id",
            "next_assignment")


class Rows:
    """One flush (or one submission) as row tuples, ready for executemany()."""

    __slots__ = ("nodes", "commands", "dependencies", "render_nodes", "pools", "members",
                 "member_pools", "shares", "licenses", "removed_licenses", "archived_jobs", "meta")

    def __init__(self):
        self.nodes = []
        self.commands = []              # the stats column still holds the object: see writes.py
        self.dependencies = []
        self.render_nodes = []
        self.pools = []
        self.members = []               # (pool id, render node name) of every pool in member_pools
        self.member_pools = []          # pool ids whose membership is rewritten whole
        self.shares = []
        self.licenses = []
        self.removed_licenses = []
        self.archived_jobs = []         # job ids
        self.meta = []                  # (counter name, value)


def _json(value):
    return json.dumps(value, separators=(",", ":"))


def node_row(node, status=None):
    task = node.is_task
    parent = node.parent
    return (
        node.id, "Task" if task else "TaskGroup", parent.id if parent is not None else ROOT_ID,
        node.job.id, node.name, node.user, node.priority, node.dispatch_key, node.max_rn,
        int(node.paused), _json(node.tags), _json(node.environment), _json(node.arguments),
        _json(node.requirements), node.timer, node.creation_time, node.start_time,
        node.update_time, node.end_time, int(node.status if status is None else status),
        None if task else node.strategy,
        node.runner if task else None,
        node.min_cores if task else None,
        node.max_cores if task else None,
        node.ram_use if task else None,
        node.lic if task else None,
        node.max_attempt if task else None,
        node.max_run_time if task else None,
        node.validation_expression if task else None,
        node.runner_packages if task else None,
        node.watcher_packages if task else None,
        int(node.archived),
    )


def command_row(cmd):
    rn = cmd.render_node
    task = cmd.task
    # A command of an archived job is archived too, whatever order the flushes come in.
    return (cmd.id, task.id, cmd.description, int(cmd.status), cmd.completion, cmd.attempt,
            cmd.start_time, cmd.update_time, cmd.end_time, rn.name if rn is not None else None,
            cmd.assignment, cmd.cores, cmd.ram, cmd.message, cmd.stats, cmd.args_json,
            cmd.nb_frames, int(cmd.archived or task.archived))


def share_row(share):
    return (share.id, share.pool.id, share.node.id, share.max_rn,
            int(share.archived or share.node.archived))


def pool_row(pool):
    return (pool.id, pool.name, int(pool.archived))


def render_node_row(rn):
    return (rn.id, rn.name, rn.host, rn.port, rn.cores, rn.ram, rn.speed, _json(rn.caracteristics),
            rn.puliversion, rn.performance, int(rn.paused), int(rn.quarantined), int(rn.archived),
            rn.create_date, rn.register_date, rn.token_id)


def statuses_text(statuses):
    return ",".join(str(int(s)) for s in sorted(statuses))


def snapshot(farm, dirty):
    """The rows of what `dirty` names, with the objects' current values (progress is coalesced
    for free: a dirty set holds each object once)."""
    rows = Rows()
    rows.commands = [command_row(cmd) for cmd in dirty.commands]
    root = farm.root                    # status changes reach the root too; it is not stored
    rows.nodes = [node_row(node) for node in dirty.nodes if node is not root]
    rows.render_nodes = [render_node_row(rn) for rn in dirty.render_nodes]
    for pool in dirty.pools:
        rows.pools.append(pool_row(pool))
        rows.member_pools.append(pool.id)
        rows.members.extend((pool.id, name) for name in pool.render_nodes)
    rows.shares = [share_row(share) for share in dirty.shares]
    rows.licenses = [(lic.name, lic.maximum) for lic in dirty.licenses]
    rows.removed_licenses = sorted(dirty.removed_licenses)
    rows.archived_jobs = [job.id for job in dirty.archived_jobs]
    if dirty.meta:
        rows.meta = [(name, getattr(farm, name)) for name in COUNTERS]
    return rows


def job_rows(job):
    """Every row of a freshly built job (see model/build.py), not yet published."""
    rows = Rows()
    statuses = _initial_statuses(job)
    max_node = max_command = 0
    for node in job.walk():
        rows.nodes.append(node_row(node, statuses[node]))
        max_node = max(max_node, node.id)
        for dep in node.dependencies:
            rows.dependencies.append((node.id, dep.target_id, statuses_text(dep.statuses)))
        if node.is_task:
            rows.commands.extend(command_row(cmd) for cmd in node.commands)
            if node.commands:
                max_command = max(max_command, node.commands[-1].id)
    share = job.share
    rows.shares.append(share_row(share))
    rows.pools.append(pool_row(share.pool))      # a pool the submission created
    # The counters this job proves: written as "at least", next to the farm's own flushes.
    rows.meta = [("next_node_id", max_node + 1), ("next_share_id", share.id + 1),
                 ("next_pool_id", share.pool.id + 1)]
    if max_command:
        rows.meta.append(("next_command_id", max_command + 1))
    return rows


def _initial_statuses(job):
    """The statuses Farm.publish will derive before any dependency blocks a command.

    Publish sets them without marking the nodes dirty; any later change (blocked included)
    goes through the dirty set, so storing these keeps the rows right.
    """
    counts = {}
    for node in reversed(list(job.walk())):
        c = [0] * N_COMMAND_STATUSES
        if node.is_task:
            for cmd in node.commands:
                c[cmd.status] += 1
        else:
            for child in node.children:
                for i, n in enumerate(counts[child]):
                    c[i] += n
        counts[node] = c
    return {node: node_status(c, node.paused) for node, c in counts.items()}
