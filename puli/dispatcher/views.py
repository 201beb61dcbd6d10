"""JSON views of model objects, in Puli's field names; statuses are ints with their name alongside.

Called under the farm lock: each builds plain dicts and lists only, so the response is
serialized after the lock is released. Times are seconds since the epoch.
"""
from ..model.job_operations import max_rn_of
from ..model.status import CommandStatus as CS, NodeStatus, RenderNodeStatus

READY, DONE = CS.READY, CS.DONE
# Status names by code: the model may hold a status as a plain int.
COMMAND_STATUS_NAMES = {int(s): s.name for s in CS}
NODE_STATUS_NAMES = {int(s): s.name for s in NodeStatus}
RENDER_NODE_STATUS_NAMES = {int(s): s.name for s in RenderNodeStatus}

# Fields of node() that /query may select with attr= (besides tags:<key>, pool, userDefinedMaxRn).
NODE_FIELDS = (
    "id", "name", "type", "parent", "job", "user", "priority", "dispatchKey", "maxRN",
    "allocatedRN", "optimalMaxRN", "status", "statusName", "completion", "creationTime",
    "startTime", "updateTime", "endTime", "readyCommandCount", "doneCommandCount",
    "commandCount", "tags", "paused", "timer", "averageTimeByFrame", "minTimeByFrame",
    "maxTimeByFrame", "dependencies", "archived", "poolName", "poolShareId", "userDefinedMaxRN",
    "maxAttempt", "strategy", "children", "runner", "lic", "ramUse", "minNbCores", "maxNbCores",
    "maxRunTime", "validationExpression", "runnerPackages", "watcherPackages", "environment",
    "arguments", "requirements",
)

COMMAND_FIELDS = (
    "id", "description", "task", "job", "status", "statusName", "completion", "attempt",
    "message", "renderNode", "assignment", "startTime", "updateTime", "endTime", "creationTime",
    "nbFrames", "avgTimeByFrame", "stats",
)

RENDER_NODE_FIELDS = (
    "id", "name", "host", "port", "cores", "coresNumber", "freeCores", "freeCoresNumber",
    "ramSize", "freeRam", "speed", "status", "statusName", "caracteristics", "pools",
    "puliversion", "systemFreeRam", "systemSwapPercentage", "lastAliveTime", "createDate",
    "registerDate", "performance", "paused", "quarantined", "excluded", "isRegistered",
    "commands",
)


def _frame_times(node):
    """(average, min, max) seconds per frame of the DONE commands below `node`."""
    if node.is_task:
        t = node.avg_times
        return (t[1] / t[0], t[2], t[3]) if t else (None, None, None)
    count = total = 0
    low = high = None
    for task in node.tasks():
        t = task.avg_times
        if t:
            count += t[0]
            total += t[1]
            low = t[2] if low is None else min(low, t[2])
            high = t[3] if high is None else max(high, t[3])
    return (total / count, low, high) if count else (None, None, None)


def node(n, detail=False):
    """A job, TaskGroup or Task. `detail` adds a task's command ids."""
    counts = n.counts
    avg, low, high = _frame_times(n)
    # The farm root's stored status is not kept up to date by the model; derive it (O(1)).
    status = int(n.status if n.parent is not None else n.derive_status())
    out = {
        "id": n.id,
        "name": n.name,
        "type": "Task" if n.is_task else "TaskGroup",
        "parent": n.parent.id if n.parent is not None else None,
        "job": n.job.id if n.parent is not None else None,
        "user": n.user,
        "priority": n.priority,
        "dispatchKey": n.dispatch_key,
        "maxRN": max_rn_of(n),
        "allocatedRN": n.active_count,
        "optimalMaxRN": 0,
        "status": status,
        "statusName": NODE_STATUS_NAMES[status],
        "completion": n.completion,
        "creationTime": n.creation_time,
        "startTime": n.start_time,
        "updateTime": n.update_time,
        "endTime": n.end_time,
        "readyCommandCount": counts[READY],
        "doneCommandCount": counts[DONE],
        "commandCount": sum(counts),
        "tags": dict(n.tags),
        "paused": n.paused,
        "timer": n.timer,
        "averageTimeByFrame": avg,
        "minTimeByFrame": low,
        "maxTimeByFrame": high,
        "dependencies": [d.as_wire() for d in n.dependencies],
        "environment": dict(n.environment),
        "arguments": dict(n.arguments),
        "requirements": dict(n.requirements),
        "archived": False,
    }
    if n.is_job and n.share is not None:
        share = n.share
        out["poolName"] = share.pool.name
        out["poolShareId"] = share.id
        out["userDefinedMaxRN"] = share.user_defined
    if n.is_task:
        out.update({
            "maxAttempt": n.max_attempt,
            "runner": n.runner,
            "lic": n.lic,
            "ramUse": n.ram_use,
            "minNbCores": n.min_cores,
            "maxNbCores": n.max_cores,
            "maxRunTime": n.max_run_time,
            "validationExpression": n.validation_expression,
            "runnerPackages": n.runner_packages,
            "watcherPackages": n.watcher_packages,
        })
        if detail:
            out["commands"] = [c.id for c in n.commands]
    else:
        out["strategy"] = n.strategy
        out["maxAttempt"] = None
        out["children"] = [c.id for c in n.children]
    return out


def command(cmd, detail=False):
    """A command; `detail` adds its arguments (parsed from their stored JSON)."""
    status = int(cmd.status)
    rn = cmd.render_node
    task = cmd.task
    avg = None
    if status == DONE and cmd.start_time is not None and cmd.end_time is not None:
        avg = (cmd.end_time - cmd.start_time) / max(cmd.nb_frames, 1)
    out = {
        "id": cmd.id,
        "description": cmd.description,
        "task": task.id,
        "job": task.job.id,
        "status": status,
        "statusName": COMMAND_STATUS_NAMES[status],
        "completion": cmd.completion,
        "attempt": cmd.attempt,
        "message": cmd.message,
        "renderNode": rn.name if rn is not None else None,
        "assignment": cmd.assignment,
        "startTime": cmd.start_time,
        "updateTime": cmd.update_time,
        "endTime": cmd.end_time,
        "creationTime": task.creation_time,
        "nbFrames": cmd.nb_frames,
        "avgTimeByFrame": avg,
        "stats": cmd.stats,
    }
    if detail:
        out["arguments"] = cmd.arguments
    return out


LEFT_ALONE_LISTED = 100


def left_alone(cmds):
    """What a restart left running: how many, and the first of them (a big job may run
    thousands at once)."""
    return {
        "leftAlone": len(cmds),
        "leftAloneCommands": [
            {"id": c.id, "status": int(c.status), "statusName": COMMAND_STATUS_NAMES[int(c.status)],
             "renderNode": c.render_node.name if c.render_node is not None else None}
            for c in cmds[:LEFT_ALONE_LISTED]],
    }


def render_node(rn):
    status = int(rn.status)
    return {
        "id": rn.id,
        "name": rn.name,
        "host": rn.host,
        "port": rn.port,
        "cores": rn.cores,
        "coresNumber": rn.cores,
        "freeCores": rn.free_cores,
        "freeCoresNumber": rn.free_cores,
        "ramSize": rn.ram,
        "freeRam": rn.free_ram,
        "speed": rn.speed,
        "status": status,
        "statusName": RENDER_NODE_STATUS_NAMES[status],
        "caracteristics": dict(rn.caracteristics),
        "pools": [p.name for p in rn.pools],
        "puliversion": rn.puliversion,
        "systemFreeRam": rn.system_free_ram,
        "systemSwapPercentage": rn.system_swap_percentage,
        "lastAliveTime": rn.last_alive,
        "createDate": rn.create_date,
        "registerDate": rn.register_date,
        "performance": rn.performance,
        "paused": rn.paused,
        "quarantined": rn.quarantined,
        "excluded": rn.quarantined,
        "isRegistered": rn.register_date is not None,
        "commands": list(rn.commands),
    }


def pool(p):
    return {
        "id": p.id,
        "name": p.name,
        "renderNodes": list(p.render_nodes),
        "poolShares": list(p.shares),
    }


def pool_share(share):
    return {
        "id": share.id,
        "pool": share.pool.name,
        "poolName": share.pool.name,
        "node": share.node.id,
        "nodeId": share.node.id,
        "maxRN": share.max_rn,
        "allocatedRN": share.allocated,
        "userDefinedMaxRN": share.user_defined,
    }


def license(lic):
    return lic.as_wire()


_ARCHIVED_NAMES = {
    "parent_id": "parent", "job_id": "job", "dispatch_key": "dispatchKey", "max_rn": "maxRN",
    "creation_time": "creationTime", "start_time": "startTime", "update_time": "updateTime",
    "end_time": "endTime", "min_cores": "minNbCores", "max_cores": "maxNbCores",
    "ram_use": "ramUse", "max_attempt": "maxAttempt", "max_run_time": "maxRunTime",
    "validation_expression": "validationExpression", "runner_packages": "runnerPackages",
    "watcher_packages": "watcherPackages", "command_count": "commandCount", "pool": "poolName",
}


def archived_node(row):
    """An archived node as the store describes it, in the live node's field names."""
    out = {_ARCHIVED_NAMES.get(k, k): v for k, v in row.items()}
    counts = out.pop("counts", None)
    if counts:
        out["readyCommandCount"] = counts[READY]
        out["doneCommandCount"] = counts[DONE]
        out.setdefault("commandCount", sum(counts))
    if isinstance(out.get("licenses"), list):
        out["lic"] = "&".join(out.pop("licenses"))
    status = out.get("status")
    if isinstance(status, int) and status in NODE_STATUS_NAMES:
        out["statusName"] = NODE_STATUS_NAMES[status]
    out["archived"] = True
    return out
