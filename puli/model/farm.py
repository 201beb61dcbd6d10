"""The farm: every job, command, render node, pool and license, with the indices dispatch needs.

This is the one place where a command changes status. Each transition updates the counters of
the command's ancestors (O(depth)), the ready indices the scheduler reads, the resources of its
render node and licenses, the dirty sets the store flushes, and the dependencies waiting on a
node whose status changed. No I/O here: messages for workers go to `outbox`, and the timings
the dispatcher's metrics show (ready -> running, a node's idle gap) to two bounded buffers it
drains (`take_timings`).
"""
import heapq
from collections import deque

from .dirty import Dirty
from . import chunking
from .jobs import TaskGroup, new_command
from .licenses import License
from .outbox import Assign, Stop
from .pools import DEFAULT_POOL, Pool, PoolShare
from .quotas import Quotas
from .rendernodes import RenderNode
from .status import ACTIVE, FAILED, FINAL_NODE, N_COMMAND_STATUSES, CommandStatus as CS, NodeStatus

ROOT_ID = 1
# Timings kept between two drains by the dispatcher; past this the oldest go (a farm nobody
# drains, in a benchmark or a test, stays bounded).
TIMINGS = 100_000


class Farm:
    def __init__(self, rn_timeout=30.0, retry_delay=20.0, job_rn_error_limit=3, quarantine_threshold=3,
                 retry_timeouts=False):
        self.rn_timeout = rn_timeout
        self.retry_delay = retry_delay
        # A TIMEOUT (its render node went silent) waits for an operator, as in Puli 1.7,
        # unless the farm retries it like an ERROR.
        self.retried = FAILED if retry_timeouts else frozenset({CS.ERROR})
        self.job_rn_error_limit = job_rn_error_limit
        self.quarantine_threshold = quarantine_threshold
        self.quotas = Quotas()          # the dispatcher sets its settings' (service.py)
        self.root = TaskGroup(ROOT_ID, "graphs")
        self.nodes = {ROOT_ID: self.root}
        self.commands = {}
        self.render_nodes = {}
        self.pools = {}
        self.shares = {}
        self.licenses = {}
        self.next_node_id = ROOT_ID + 1
        self.next_command_id = 1
        self.next_share_id = 1
        self.next_pool_id = 1
        self.next_rn_id = 1
        self.next_assignment = 1
        self.dirty = Dirty()
        self.outbox = []                # Assign and Stop messages for workers (outbox.py)
        self.retries = []               # heap of (due, command id, attempt)
        self.wake = True                # something happened that a dispatch pass may act on
        self.job_counts = [0] * len(NodeStatus)  # jobs by status, kept as they change
        self.ended = [0] * N_COMMAND_STATUSES   # commands that became final, by status, since the start
        self.waits = deque(maxlen=TIMINGS)      # seconds from READY to RUNNING, per run
        self.idle_gaps = deque(maxlen=TIMINGS)  # seconds a node sat empty before its next assignment
        self.get_pool(DEFAULT_POOL)

    # -- ids --------------------------------------------------------------------------------
    def allocate_ids(self, nodes, commands):
        """Reserve id ranges; ids are never reused, even when a submission fails to commit."""
        first_node, first_command = self.next_node_id, self.next_command_id
        self.next_node_id += nodes
        self.next_command_id += commands
        self.dirty.meta = True
        return first_node, first_command

    # -- pools and licenses -------------------------------------------------------------------
    def get_pool(self, name, create=True):
        pool = self.pools.get(name)
        if pool is None and create:
            pool = Pool(self.next_pool_id, name)
            self.next_pool_id += 1
            self.pools[name] = pool
            self.dirty.pools.add(pool)
        return pool

    def new_share(self, pool, job, max_rn=-1, register=True):
        share = PoolShare(self.next_share_id, pool, job, max_rn)
        self.next_share_id += 1
        self.dirty.meta = True
        if register:
            self.shares[share.id] = share
            pool.shares[share.id] = share
            self.dirty.shares.add(share)
        return share

    def set_license(self, name, maximum):
        lic = self.licenses.get(name)
        if lic is None:
            lic = self.licenses[name] = License(name, maximum)
        lic.maximum = maximum
        self.dirty.licenses.add(lic)
        self.dirty.removed_licenses.discard(name)
        self.wake = True
        return lic

    def release_tokens(self, lic, rn_names):
        """Give back the tokens of `lic` held on these render nodes (a runner done with them)."""
        for cmd_id, holder in list(lic.holders.items()):
            if holder in rn_names:
                del lic.holders[cmd_id]
                lic.used -= 1
        self.dirty.licenses.add(lic)
        self.wake = True

    # -- render nodes ------------------------------------------------------------------------------
    def add_render_node(self, name, now):
        rn = RenderNode(self.next_rn_id, name, create_date=now)
        self.next_rn_id += 1
        self.dirty.meta = True
        self.render_nodes[name] = rn
        return rn

    def place(self, rn, pools):
        """Make `pools` the render node's pools (the indices of free nodes follow)."""
        for pool in rn.pools:
            if pool not in pools:
                pool.render_nodes.pop(rn.name, None)
                pool.free.pop(rn, None)
                self.dirty.pools.add(pool)
        for pool in pools:
            if rn.name not in pool.render_nodes:
                pool.render_nodes[rn.name] = rn
                self.dirty.pools.add(pool)
        rn.pools = pools
        self.refresh_render_node(rn)

    # -- jobs ----------------------------------------------------------------------------------
    def publish(self, job, now):
        """Link a built job (see build.py) into the farm: indices, counters, dependencies."""
        root = self.root
        job.parent = root
        root.children.append(job)
        job.ready_tasks = {}
        job.rn_errors = {}
        pool = job.share.pool
        for node in job.walk():
            self.nodes[node.id] = node
            if node.is_task:
                node.ready = deque(c for c in node.commands if c.status == CS.READY)
                for cmd in node.commands:
                    self.commands[cmd.id] = cmd
                    node.counts[cmd.status] += 1
                    node.completion_sum += cmd.completion
                    cmd.ready_time = None   # (the store's restore makes commands without __init__)
                for cmd in node.ready:  # submitted (or restored) READY: waiting since then
                    cmd.ready_time = cmd.update_time or now
        # Counters bottom-up, then the root once.
        for node in reversed(list(job.walk())):
            if not node.is_task:
                for child in node.children:
                    for i, n in enumerate(child.counts):
                        node.counts[i] += n
                    node.completion_sum += child.completion_sum
        for i, n in enumerate(job.counts):
            root.counts[i] += n
        root.completion_sum += job.completion_sum
        pool.shares[job.share.id] = job.share
        self.shares[job.share.id] = job.share
        for node in job.walk():
            node.status = node.derive_status()
        root.status = root.derive_status()
        self.job_counts[job.status] += 1
        for node in job.walk():
            for dep in node.dependencies:
                self._link_dependency(dep)
        self._refresh_blocked(job, now)
        for task in job.tasks():
            self.refresh_ready(task)
            if task.max_attempt > 1:
                for cmd in task.commands:
                    if cmd.status in self.retried and cmd.attempt < task.max_attempt:
                        heapq.heappush(self.retries, ((cmd.end_time or now) + self.retry_delay, cmd.id, cmd.attempt))
        self.wake = True

    def _link_dependency(self, dep):
        target = self.nodes.get(dep.target_id)
        dep.target = target
        if target is not None:
            target.dependents.append(dep)
            dep.satisfied = target.status in dep.statuses
        # An unknown target is an archived job: `satisfied` keeps what the store restored.
        if not dep.satisfied:
            dep.node.unsatisfied += 1

    def archive(self, job):
        """Take a finished job out of memory; the store marks its rows archived."""
        root = self.root
        root.children.remove(job)
        for i, n in enumerate(job.counts):
            root.counts[i] -= n
        root.completion_sum -= job.completion_sum
        root.status = root.derive_status()
        self.job_counts[job.status] -= 1
        for node in job.walk():
            del self.nodes[node.id]
            node.archived = True
            for dep in node.dependents:
                dep.target = None       # the dependent keeps its last verdict
            for dep in node.dependencies:
                if dep.target is not None:
                    dep.target.dependents.remove(dep)
            if node.is_task:
                for cmd in node.commands:
                    del self.commands[cmd.id]
                    cmd.archived = True
        share = job.share
        share.archived = True
        share.pool.shares.pop(share.id, None)
        share.pool.jobs.pop(job, None)
        self.shares.pop(share.id, None)
        self.dirty.archived_jobs.append(job)

    # -- the transition -------------------------------------------------------------------------
    def set_status(self, cmd, new, now):
        """Move a command to `new`: the only place a command's status changes."""
        old = cmd.status
        if old == new:
            return
        cmd.status = new
        cmd.update_time = now
        self.dirty.commands.add(cmd)
        rn = cmd.render_node
        if (old == CS.RUNNING or new == CS.RUNNING) and rn is not None and cmd.id in rn.commands:
            rn.running += (new == CS.RUNNING) - (old == CS.RUNNING)
        if old in ACTIVE and new not in ACTIVE:
            self._release(cmd, now)
        task = cmd.task
        if new == CS.READY:
            task.ready.append(cmd)
            cmd.ready_time = now
        elif new == CS.RUNNING:
            self.run_started(cmd, now)
        elif new >= CS.DONE and old < CS.DONE:
            self.ended[new] += 1
        ready_before = task.counts[CS.READY]
        node = task
        while node is not None:
            counts = node.counts
            counts[old] -= 1
            counts[new] += 1
            status = node.derive_status()
            if status != node.status:
                self._node_status_changed(node, status, now)
            node = node.parent
        if (ready_before == 0) != (task.counts[CS.READY] == 0):
            self.refresh_ready(task)
        if new == CS.RUNNING and old == CS.ASSIGNED and cmd.render_node is not None:
            self.refresh_render_node(cmd.render_node)     # ASSIGNED -> WORKING

    def run_started(self, cmd, now):
        """A worker's first report of a run (RUNNING, or already its end): the wait since
        READY is over."""
        if cmd.ready_time is not None:
            self.waits.append(now - cmd.ready_time)
            cmd.ready_time = None

    def set_completion(self, cmd, value):
        delta = value - cmd.completion
        if delta:
            cmd.completion = value
            self.dirty.commands.add(cmd)
            node = cmd.task
            while node is not None:
                node.completion_sum += delta
                node = node.parent

    def _node_status_changed(self, node, status, now):
        old = node.status
        node.status = status
        node.update_time = now
        if node.parent is self.root and node.ready_tasks is not None:
            self.job_counts[old] -= 1
            self.job_counts[status] += 1
        self.dirty.nodes.add(node)
        if status in FINAL_NODE:
            node.end_time = now
        elif old in FINAL_NODE:
            node.end_time = None
        if status == NodeStatus.RUNNING and node.start_time is None:
            node.start_time = now
        for dep in node.dependents:
            satisfied = status in dep.statuses
            if satisfied != dep.satisfied:
                dep.satisfied = satisfied
                dependent = dep.node
                dependent.unsatisfied += -1 if satisfied else 1
                if dependent.unsatisfied == (0 if satisfied else 1):
                    self._refresh_blocked(dependent, now)

    def refresh_status(self, node, now):
        """Re-derive statuses from `node` up after a flag (paused) changed."""
        while node is not None:
            status = node.derive_status()
            if status != node.status:
                self._node_status_changed(node, status, now)
            node = node.parent

    def _refresh_blocked(self, top, now):
        """A dependency verdict changed above these tasks: block or release their commands."""
        for task in top.tasks():
            blocked = task.blocked()
            want, other = (CS.BLOCKED, CS.READY) if blocked else (CS.READY, CS.BLOCKED)
            if task.counts[other]:
                for cmd in task.commands:
                    if cmd.status == other:
                        self.set_status(cmd, want, now)
        self.wake = True

    # -- dispatch indices ---------------------------------------------------------------------
    def refresh_ready(self, task):
        job = task.job
        if job.ready_tasks is None:
            return                      # not published yet
        if task.counts[CS.READY] and not task.paused:
            ready = job.ready_tasks
            if task not in ready:
                last = next(reversed(ready), None)
                ready[task] = None
                if last is not None and last.id > task.id:
                    # Back in the queue out of order: tasks are tried in submission order.
                    job.ready_tasks = dict.fromkeys(sorted(ready, key=_by_id))
        else:
            job.ready_tasks.pop(task, None)
        self.refresh_job(job)

    def refresh_job(self, job):
        pool = job.share.pool
        if job.ready_tasks and not job.paused:
            if job not in pool.jobs:
                pool.jobs[job] = None
                self.wake = True
        else:
            pool.jobs.pop(job, None)

    def refresh_render_node(self, rn):
        """Keep a node's status and its place among its pools' free nodes up to date."""
        rn.status = rn.derive_status()
        dispatchable = rn.dispatchable
        if not dispatchable:
            rn.idle_since = None        # down, paused or quarantined: not waiting for work
        free = dispatchable and rn.free_cores > 0
        for pool in rn.pools:
            if free:
                if rn not in pool.free:
                    pool.free[rn] = None
                    self.wake = True
            else:
                pool.free.pop(rn, None)

    # -- resources ------------------------------------------------------------------------------
    def assign(self, cmd, rn, cores, now):
        """Give a READY command to a render node (the scheduler chose both)."""
        task = cmd.task
        cmd.assignment = self.next_assignment
        self.next_assignment += 1
        cmd.render_node = rn
        cmd.cores = cores
        cmd.ram = task.ram_use
        cmd.start_time = now
        cmd.end_time = None
        cmd.message = ""
        if rn.idle_since is not None:
            self.idle_gaps.append(now - rn.idle_since)
            rn.idle_since = None
        self.hold(cmd, rn)
        self.set_status(cmd, CS.ASSIGNED, now)
        self.refresh_render_node(rn)
        self.outbox.append(Assign(rn, cmd, cmd.assignment))

    def hold(self, cmd, rn):
        rn.commands[cmd.id] = cmd
        if cmd.status == CS.RUNNING:
            rn.running += 1
        rn.free_cores -= cmd.cores
        rn.free_ram -= cmd.ram
        for name in cmd.task.licenses:
            lic = self.licenses.get(name)
            if lic is not None and cmd.id not in lic.holders:
                lic.holders[cmd.id] = rn.name
                lic.used += 1

    def _release(self, cmd, now):
        rn = cmd.render_node
        if rn is not None and rn.commands.pop(cmd.id, None) is not None:
            rn.free_cores += cmd.cores
            rn.free_ram += cmd.ram
            if not rn.commands:
                rn.idle_since = now
            self.refresh_render_node(rn)
        for name in cmd.task.licenses:
            lic = self.licenses.get(name)
            if lic is not None and lic.holders.pop(cmd.id, None) is not None:
                lic.used -= 1
                self.wake = True

    def stop_on_worker(self, cmd):
        """Tell the command's worker to kill it, fenced by its current assignment."""
        if cmd.status in ACTIVE and cmd.render_node is not None:
            self.outbox.append(Stop(cmd.render_node, cmd.id, cmd.assignment))

    def requeue(self, cmd, now, reset_attempts=False, may_run=True):
        """Back to READY (or BLOCKED) for a fresh run; any worker report on the old run is stale.
        `may_run` False: the worker never had the run (its assignment was refused or never
        sent), so there is nothing to stop there."""
        if may_run:
            self.stop_on_worker(cmd)
        cmd.assignment = 0
        cmd.start_time = cmd.end_time = None
        cmd.message = ""
        if reset_attempts:
            cmd.attempt = 0
        self.set_completion(cmd, 0.0)
        self.set_status(cmd, CS.BLOCKED if cmd.task.blocked() else CS.READY, now)

    def cancel(self, cmd, now, message="canceled"):
        """A user cancels the command: its run, if any, is stopped on its worker and over."""
        self.stop_on_worker(cmd)
        cmd.assignment = 0
        self.finish(cmd, CS.CANCELED, now, message)

    def force_done(self, cmd, now):
        """A user declares the command DONE: its run, if any, is stopped and over."""
        self.stop_on_worker(cmd)
        cmd.assignment = 0
        self.finish(cmd, CS.DONE, now, "set DONE by a user")

    def finish(self, cmd, status, now, message=None):
        """A run ended: DONE, ERROR, TIMEOUT or CANCELED (by the user)."""
        if message is not None:
            cmd.message = message
        cmd.end_time = now
        rn = cmd.render_node
        if status == CS.DONE:
            self.set_completion(cmd, 1.0)
        if status in (CS.DONE, CS.ERROR, CS.TIMEOUT) and cmd.status in ACTIVE:
            cmd.attempt += 1
        was_active = cmd.status in ACTIVE
        self.set_status(cmd, status, now)
        task = cmd.task
        if status == CS.DONE and was_active and cmd.start_time is not None:
            per_frame = (now - cmd.start_time) / max(cmd.nb_frames, 1)
            t = task.avg_times
            task.avg_times = [1, per_frame, per_frame, per_frame] if t is None else \
                [t[0] + 1, t[1] + per_frame, min(t[2], per_frame), max(t[3], per_frame)]
        if was_active and rn is not None and status != CS.CANCELED:
            self._record_outcome(rn, task.job, status in FAILED)
        if status == CS.DONE and was_active and "openjdChunks" in task.arguments:
            chunking.recut(self, task, now)
        if status in self.retried and cmd.attempt < task.max_attempt:
            heapq.heappush(self.retries, (now + self.retry_delay, cmd.id, cmd.attempt))

    def add_command(self, task, description, args_json, nb_frames, now):
        """A new READY command of a published task (adaptive chunks cut smaller)."""
        first = self.allocate_ids(0, 1)[1]
        cmd = new_command(first, task, description, args_json, nb_frames)
        self.commands[cmd.id] = cmd
        cmd.update_time = cmd.ready_time = now
        task.ready.append(cmd)
        node = task
        while node is not None:
            node.counts[CS.READY] += 1
            status = node.derive_status()
            if status != node.status:
                self._node_status_changed(node, status, now)
            node = node.parent
        self.dirty.commands.add(cmd)
        self.refresh_ready(task)
        return cmd

    def _record_outcome(self, rn, job, failed):
        if failed and job.rn_errors is not None:
            job.rn_errors[rn.name] = job.rn_errors.get(rn.name, 0) + 1
        limit = self.quarantine_threshold
        if limit <= 0:
            return
        # One entry per job, the latest: errors of a single bad job do not condemn the node.
        history = [h for h in rn.history if h[0] != job.id]
        history.append((job.id, failed))
        rn.history = history = deque(history[-limit:])
        if len(history) >= limit and all(f for _, f in history) and not rn.quarantined:
            rn.quarantined = True
            self.dirty.render_nodes.add(rn)
            self.refresh_render_node(rn)

    def process_retries(self, now):
        """Put failed commands whose retry delay has passed back in the queue."""
        retries = self.retries
        while retries and retries[0][0] <= now:
            _, cmd_id, attempt = heapq.heappop(retries)
            cmd = self.commands.get(cmd_id)
            if cmd is not None and cmd.status in FAILED and cmd.attempt == attempt:
                self.requeue(cmd, now)

    def check_liveness(self, now):
        """Render nodes silent for rn_timeout become UNKNOWN and their commands TIMEOUT.

        A timed-out assignment is over: the worker's late reports on it are refused, so one
        run never counts twice nor turns into a second outcome.
        """
        deadline = now - self.rn_timeout
        for rn in self.render_nodes.values():
            if rn.alive and rn.last_alive < deadline:
                rn.alive = False
                for cmd in list(rn.commands.values()):
                    cmd.assignment = 0
                    self.finish(cmd, CS.TIMEOUT, now, f"render node {rn.name} silent for more than {self.rn_timeout:g} s")
                self.refresh_render_node(rn)

    def archive_finished(self, now, after):
        """Archive the jobs finished (DONE or CANCELED) for longer than `after` seconds."""
        done = [job for job in self.root.children
                if job.status in FINAL_NODE and job.end_time is not None and job.end_time + after <= now]
        for job in done:
            self.archive(job)
        return len(done)

    def take_outbox(self):
        out, self.outbox = self.outbox, []
        return out

    def take_timings(self):
        """(ready -> running seconds, idle gaps of nodes) since the last call."""
        waits, gaps = self.waits, self.idle_gaps
        self.waits, self.idle_gaps = deque(maxlen=TIMINGS), deque(maxlen=TIMINGS)
        return waits, gaps

    def take_dirty(self):
        dirty, self.dirty = self.dirty, Dirty()
        return dirty


def _by_id(node):
    return node.id


__all__ = ["Farm", "ROOT_ID"]
