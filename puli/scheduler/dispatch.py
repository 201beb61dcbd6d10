"""The dispatch pass: give free render-node slots to ready commands, pool by pool.

Pure code over the farm model. A pass only looks at pools that have both a free render node
and a job with dispatchable work, so its cost follows free slots and eligible jobs, never the
number of commands.

Order within a pool (Puli's rules, made work-conserving):
1. jobs whose pool share has a user-defined maxRN are served first, by dispatchKey (highest
   first) then age, each up to its maxRN;
2. the other jobs share what is left in proportion to their dispatchKey: a slot goes to the job
   with the fewest running commands per unit of weight, where weight is
   ``dispatchKey - min(dispatchKey) + 1`` over the pool's competing jobs. A job that cannot use
   its share leaves it to the others instead of leaving render nodes idle.
Within a job, tasks are tried in submission order; a task that fits no free node this pass is
skipped (requirements are per task) and its siblings get their chance.
"""
import heapq

from ..model.status import CommandStatus

READY = CommandStatus.READY


def dispatch(farm, now):
    """Run one pass; return how many commands were assigned (messages are in farm.outbox)."""
    farm.wake = False
    assigned = 0
    for pool in list(farm.pools.values()):
        if pool.free and pool.jobs:
            assigned += _dispatch_pool(farm, pool, now)
    return assigned


def _dispatch_pool(farm, pool, now):
    heap = []
    fair = []
    for job in pool.jobs:
        cap = job.share.max_rn
        if cap > 0:
            if job.active_count < cap:
                heap.append((0, -job.dispatch_key, job.id, job))
        else:
            fair.append(job)
    if fair:
        floor = min(job.dispatch_key for job in fair) - 1
        for job in fair:
            weight = job.dispatch_key - floor
            heap.append((1, job.active_count / weight, job.id, job))
    heapq.heapify(heap)
    nodes = sorted(pool.free, key=_node_order)
    cursor = _Cursor(nodes)
    unfit = set()                       # tasks that fit no free node of this pool this pass
    assigned = 0
    while heap and cursor.left():
        group, _, job_id, job = heap[0]
        found = _find(farm, job, cursor, unfit, now)
        if found is None:
            heapq.heappop(heap)
            continue
        cmd, rn, cores = found
        farm.assign(cmd, rn, cores, now)
        assigned += 1
        if not job.ready_tasks or job.paused:
            heapq.heappop(heap)
        elif group == 0:
            if job.active_count >= job.share.max_rn:
                heapq.heappop(heap)
        else:
            weight = job.dispatch_key - floor
            heapq.heapreplace(heap, (1, job.active_count / weight, job_id, job))
    return assigned


def _node_order(rn):
    return (-rn.performance, rn.id)


class _Cursor:
    """The pool's free nodes, best first; nodes that fill up are skipped for good."""

    __slots__ = ("nodes", "start")

    def __init__(self, nodes):
        self.nodes = nodes
        self.start = 0

    def left(self):
        nodes = self.nodes
        while self.start < len(nodes):
            rn = nodes[self.start]
            if rn.free_cores > 0 and rn.dispatchable:
                return True
            self.start += 1
        return False

    def __iter__(self):
        nodes = self.nodes
        for i in range(self.start, len(nodes)):
            yield nodes[i]


def _find(farm, job, cursor, unfit, now):
    """The first (command, render node, cores) of this job that can start now, or None."""
    limit = farm.job_rn_error_limit
    rn_errors = job.rn_errors
    for task in job.ready_tasks:
        if task in unfit or task.paused:
            continue
        if not _may_start(task, job, now):
            continue
        if task.licenses and not _licenses_free(farm, task.licenses):
            continue
        ready = task.ready
        while ready and ready[0].status != READY:
            ready.popleft()
        if not ready:
            continue
        need = task.min_cores
        ram = task.ram_use
        requirements = task.requirements
        for rn in cursor:
            free = rn.free_cores
            if free <= 0 or not rn.dispatchable:
                continue
            if need == 0:
                if rn.commands:
                    continue
                cores = rn.cores
            elif free < need:
                continue
            else:
                cores = free if task.max_cores == 0 else min(free, task.max_cores)
            if ram and rn.usable_ram < ram:
                continue
            if requirements and not rn.matches(requirements):
                continue
            if limit and rn_errors and rn_errors.get(rn.name, 0) >= limit:
                continue
            return ready.popleft(), rn, cores
        unfit.add(task)
    return None


def _may_start(task, job, now):
    """Timers of the task and its groups, and the maxRN of those below the job (the job's own
    maxRN is its pool share's)."""
    node = task
    while node is not None:
        if node.timer is not None and node.timer > now:
            return False
        if node is not job and node.max_rn > 0 and node.active_count >= node.max_rn:
            return False
        if node is job:
            return True
        node = node.parent
    return True


def _licenses_free(farm, names):
    licenses = farm.licenses
    for name in names:
        lic = licenses.get(name)
        if lic is None or lic.used >= lic.maximum:
            return False
    return True
