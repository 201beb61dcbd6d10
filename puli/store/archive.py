"""Reading archived jobs and nodes back: they live only in the database once archived."""
import json

from ..model.farm import ROOT_ID
from ..model.limits import BIGINT_MAX
from ..model.status import N_COMMAND_STATUSES
from .rows import NODE_COLUMNS

_JSON_FIELDS = ("tags", "environment", "arguments", "requirements")
_TASK_ONLY = ("runner", "min_cores", "max_cores", "ram_use", "licenses", "max_attempt",
              "max_run_time", "validation_expression", "runner_packages", "watcher_packages")
_COLS = ", ".join(f"n.{c}" for c in NODE_COLUMNS)
# The job's latest pool share (a job moved between pools has archived older ones).
_SELECT = (f"SELECT {_COLS}, p.name, s.max_rn FROM nodes n"
           " LEFT JOIN pool_shares s ON s.id = (SELECT MAX(id) FROM pool_shares WHERE node_id = n.id)"
           " LEFT JOIN pools p ON p.id = s.pool_id")


def archived_node(cur, node_id):
    if not 0 < node_id <= BIGINT_MAX:
        return None                     # no row has it; the database would refuse the query
    row = cur.execute(f"{_SELECT} WHERE n.id = %s AND n.archived = 1", (node_id,)).fetchone()
    if row is None:
        return None
    node = _describe(row)
    node["children"] = [r[0] for r in cur.execute(
        "SELECT id FROM nodes WHERE parent_id = %s AND job_id = %s ORDER BY id",
        (node_id, node["job_id"])).fetchall()]
    tasks = _subtree_tasks(cur, node)
    _add_counts([node], {node["id"]: tasks}, cur)
    return node


def archived_jobs(cur, limit=100, offset=0):
    rows = cur.execute(f"{_SELECT} WHERE n.archived = 1 AND n.parent_id = %s ORDER BY n.id DESC LIMIT %s OFFSET %s",
                       (ROOT_ID, int(limit), int(offset))).fetchall()
    jobs = [_describe(row) for row in rows]
    if jobs:
        ids = [job["id"] for job in jobs]
        tasks = {job_id: [] for job_id in ids}
        marks = ", ".join(["%s"] * len(ids))
        for task_id, job_id in cur.execute(
                f"SELECT id, job_id FROM nodes WHERE job_id IN ({marks}) AND kind = 'Task'", ids).fetchall():
            tasks[job_id].append(task_id)
        _add_counts(jobs, tasks, cur)
    return jobs


def _describe(row):
    node = dict(zip(NODE_COLUMNS, row))
    pool, share_max_rn = row[len(NODE_COLUMNS):]
    node["type"] = node.pop("kind")
    node["paused"] = bool(node["paused"])
    node["archived"] = True
    for field in _JSON_FIELDS:
        node[field] = json.loads(node[field]) if node[field] else {}
    if node["type"] == "Task":
        node["licenses"] = [x for x in (node["licenses"] or "").split("&") if x]
        del node["strategy"]
    else:
        for field in _TASK_ONLY:
            del node[field]
    if node["parent_id"] == ROOT_ID:
        node["pool"] = pool
        node["max_rn"] = share_max_rn if share_max_rn is not None else node["max_rn"]
    return node


def _subtree_tasks(cur, node):
    """Ids of the tasks under `node` (a job's nodes all carry its job_id: one indexed read)."""
    if node["type"] == "Task":
        return [node["id"]]
    children = {}
    kinds = {}
    for node_id, parent_id, kind in cur.execute(
            "SELECT id, parent_id, kind FROM nodes WHERE job_id = %s", (node["job_id"],)).fetchall():
        children.setdefault(parent_id, []).append(node_id)
        kinds[node_id] = kind
    tasks, stack = [], [node["id"]]
    while stack:
        current = stack.pop()
        if kinds.get(current) == "Task":
            tasks.append(current)
        stack.extend(children.get(current, ()))
    return tasks


def _add_counts(nodes, tasks_of, cur):
    """Command counts per status and completion, as a live node reports them."""
    for node in nodes:
        counts = [0] * N_COMMAND_STATUSES
        total = 0.0
        tasks = tasks_of.get(node["id"], [])
        for i in range(0, len(tasks), 500):
            chunk = tasks[i:i + 500]
            marks = ", ".join(["%s"] * len(chunk))
            for status, count, completion in cur.execute(
                    f"SELECT status, COUNT(*), SUM(completion) FROM commands"
                    f" WHERE task_id IN ({marks}) GROUP BY status", chunk).fetchall():
                counts[status] += count
                total += completion or 0.0
        node["counts"] = counts
        n = sum(counts)
        node["command_count"] = n
        node["completion"] = total / n if n else 1.0
