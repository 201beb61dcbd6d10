"""The running dispatcher: the farm under one lock, its dispatch loop, write-behind and worker messages.

HTTP handlers mutate the farm with `with service.lock:` (briefly, no I/O inside) and call
`service.changed()` afterwards; the loop thread then runs a dispatch pass and delivers what
the farm put in its outbox. No network or database I/O ever happens under the lock.
"""
import gc
import logging
import secrets
import threading
import time
from collections import deque

from .. import notify
from ..model import worker_protocol
from ..model.build import build_job
from ..model.dirty import Dirty
from ..model.graph import parse_graph
from ..model.quotas import Pending, Quotas, check_queues
from ..model.status import CommandStatus as CS
from ..scheduler.dispatch import dispatch
from . import delivery
from .auth import Tokens
from .metrics import Metrics
from .senders import Senders
from .sessions import Sessions
from .settings import load_settings

log = logging.getLogger("puli.dispatcher")

HELD_RETRY = 30.0   # s between two tries of a row the database refused, while it does not change
AUDIT_PURGE = 3600.0  # s between two purges of audit records older than audit_retention
AUDIT_MEMORY = 10_000  # audit records kept in memory without a database
STATUS_INTERVAL = 5.0  # s between two refreshes of the status line systemd shows (when it changed)
SENDERS = 64        # threads delivering to workers (each node is served by one at a time)


class HeldRow:
    """A change the database refused: its item, kept to be written alone later."""

    __slots__ = ("kind", "key", "item", "reason", "since", "next_try")

    def __init__(self, kind, key, item, reason, now):
        self.kind = kind            # the farm's dirty set it came from ("nodes", "commands", ...)
        self.key = key
        self.item = item
        self.reason = reason
        self.since = now
        self.next_try = now + HELD_RETRY


class Service:
    def __init__(self, farm, store=None, settings=None, clock=time.time):
        """`settings`: the dispatcher's (settings.load_settings()); None means the defaults."""
        self.farm = farm
        self.store = store
        self.settings = settings = settings if settings is not None else load_settings()
        self.now = clock
        self.lock = threading.RLock()
        self.started_at = clock()
        self.ready = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = []
        self._sender = Senders(self._send, self._undelivered, threads=SENDERS)
        self.worker_timeout = settings.worker_request_timeout
        self.dispatch_interval = settings.dispatch_interval
        self.flush_interval = settings.flush_interval
        self.archive_after = settings.archive_after
        self.last_pass = {"assigned": 0, "seconds": 0.0, "at": 0.0}
        # pulistats: passes, seconds, longest, assigned since the last stats sample (sampler.py).
        self.pass_totals = [0, 0.0, 0.0, 0]
        self.sampler = None
        self.db_error = None
        self.held = {}                  # (kind, key) -> HeldRow: what the database refused
        self._writing = False
        # Durability, as workers see it: a change made now is committed once `flushed` reaches
        # write_token(); `epoch` names this dispatcher's life (a restarted one has another,
        # and its workers register again to hand it back what it may have lost).
        self.epoch = secrets.token_hex(8)
        self.flushes = 0                # flushes begun
        self.flushed = 0                # the last flush all of whose changes are committed
        self._flush_lock = threading.Lock()   # one flush at a time, in the order they took their changes
        self.tokens = Tokens(store, clock)
        self.sessions = Sessions(self.tokens, clock)     # the web monitor's sign-ins
        farm.quotas = Quotas(settings.max_graph_commands, settings.max_graph_tasks,
                             settings.max_queued_commands, settings.max_queued_commands_per_user,
                             settings.max_queued_jobs_per_user, settings.max_stats_bytes)
        self._pending = Pending()       # submissions checked against the queues, not yet published
        self.worker_tls = delivery.tls_context(settings.worker_ca_file)
        # Audit records not written yet (the flusher writes them); without a store, the last ones.
        self._audit_lock = threading.Lock()
        self._audit = [] if store is not None else deque(maxlen=AUDIT_MEMORY)
        self._purged_at = 0.0
        self.metrics = Metrics(self)    # GET /metrics
        # Changes taken by a flush were made after the flush before it took its own: the age
        # of the oldest one a commit wrote is counted from then (metrics' flush lag).
        self._changes_since = self.started_at
        self._unwritten_since = None    # the oldest changes a failed flush gave back

    # -- lifecycle ----------------------------------------------------------------------------
    def restore(self):
        """Load the farm from the store; the long-lived model then leaves the GC's sight."""
        if self.store is not None:
            with self.lock:
                self.store.load(self.farm, self.now())
        gc.collect()
        gc.freeze()

    def start(self):
        """Start the loop and the flusher, then tell systemd we are ready."""
        for target, name in ((self._loop, "puli-dispatch"), (self._flush_loop, "puli-flush")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        from .sampler import Sampler     # pulistats: the farm sample every stats_interval
        self.sampler = Sampler(self)
        self.sampler.start()
        self.ready = True
        notify.ready(self.summary())

    def stop(self):
        """Stop the threads and write everything that is still dirty."""
        notify.stopping()
        self._stopping.set()
        self._wake.set()
        if self.sampler is not None:    # pulistats
            self.sampler.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._sender.shutdown()         # what waits is sent, each within its deadline
        if self.store is not None:
            self.flush()
            self.store.close()

    def changed(self):
        """Something a dispatch pass or a worker message may follow from happened."""
        self._wake.set()

    # -- submission -------------------------------------------------------------------------------
    def submit(self, payload, owner=None, default_user=None):
        """Validate, commit, then publish a graph; nothing is visible until it is committed.
        `owner`: the job's user whatever the graph says; `default_user`: when it says none."""
        if isinstance(payload, dict) and (owner is not None or (default_user and not payload.get("user"))):
            payload = dict(payload, user=owner or default_user)
        quotas = self.farm.quotas
        spec = parse_graph(payload, quotas.graph_commands, quotas.graph_tasks)
        now = self.now()
        user = owner if owner is not None else spec.nodes[spec.root].fields["user"] or spec.user
        commands = spec.command_count
        with self.lock:
            check_queues(self.farm, quotas, self._pending, user, commands)   # before the pool is made
            job = build_job(self.farm, spec, now)
            job.user = user
            self._pending.add(user, commands)
        try:
            if self.store is not None:
                self.store.insert_job(job)
        except BaseException:
            with self.lock:
                self._pending.remove(user, commands)
            raise
        with self.lock:
            self._pending.remove(user, commands)
            self.farm.publish(job, now)
        self.changed()
        return job

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self):
        tick = min(self.dispatch_interval, 1.0)
        last_pass = last_housekeeping = last_archive = last_status = 0.0
        shown = None                    # the status line systemd has
        metrics = self.metrics
        while not self._stopping.is_set():
            woke = self._wake.wait(tick)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                now = self.now()
                with self.lock:
                    farm = self.farm
                    if now - last_housekeeping >= 1.0:
                        farm.process_retries(now)
                        farm.check_liveness(now)
                        last_housekeeping = now
                    if now - last_archive >= 60.0:  # scans every job: once a minute is plenty
                        farm.archive_finished(now, self.archive_after)
                        last_archive = now
                    if woke or farm.wake or now - last_pass >= self.dispatch_interval:
                        started = time.perf_counter()
                        assigned = dispatch(farm, now)
                        self.last_pass = {"assigned": assigned, "seconds": time.perf_counter() - started, "at": now}
                        totals = self.pass_totals   # pulistats: pass timings between samples
                        totals[0] += 1
                        totals[1] += self.last_pass["seconds"]
                        totals[2] = max(totals[2], self.last_pass["seconds"])
                        totals[3] += assigned
                        last_pass = now
                        metrics.dispatch_pass.observe(self.last_pass["seconds"])
                        if assigned:
                            metrics.assignments.inc(assigned)
                    timings = farm.take_timings() if farm.waits or farm.idle_gaps else None
                    messages = [delivery.message(m) for m in farm.take_outbox()]
                    line = None
                    if now - last_status >= STATUS_INTERVAL:
                        line, last_status = self.summary(), now
                if timings is not None:
                    metrics.observe_timings(timings)
                if any(m.kind == "assign" for m in messages):
                    self.make_durable()
                self._deliver(messages)
                if line is not None and self.problems():
                    # What systemctl status shows first: e.g. the database being down.
                    line = f"degraded ({'; '.join(p.split(':')[0] for p in self.problems())}): {line}"
                if line is not None and line != shown:
                    notify.status(line)
                    shown = line
                notify.watchdog()
            except Exception:                 # keep dispatching: one bad pass must not stop the farm
                log.exception("dispatch loop iteration failed")

    def drain_timings(self):
        """The model's timings into the histograms (a scrape shows them up to now)."""
        with self.lock:
            timings = self.farm.take_timings()
        self.metrics.observe_timings(timings)

    def make_durable(self):
        """Commit the assignments before they go out: a dispatcher restarted after a crash then
        knows every run a worker may hold, and never hands the same frame to another node.
        While the database is down they go out all the same (the farm keeps working); only a
        crash during that outage could then lose track of them."""
        if self.store is not None:
            self.flush()                # a failure is logged (once per outage) and retried

    def write_token(self):
        """Under the lock: the flush that will commit the changes made now (0: no database,
        nothing to wait for). A worker keeps a command's end until `flushed` reaches it."""
        return self.flushes + 1 if self.store is not None else 0

    def _deliver(self, messages):
        for msg in messages:
            self._sender.submit(msg)

    def _send(self, msg):
        """On a sender thread (senders.py): deliver one message; whether the worker answered."""
        outcome = delivery.send(msg, self.worker_timeout, self.worker_tls)
        self.metrics.deliveries.labels(msg.kind, outcome.value).inc()
        if outcome is delivery.Outcome.STARTED:
            self._started(msg)
        elif outcome is not delivery.Outcome.ACCEPTED:
            self._undelivered(msg, may_run=outcome is delivery.Outcome.UNANSWERED)
        return outcome is not delivery.Outcome.UNANSWERED

    def _started(self, msg):
        """The worker took the assignment and says its run started: RUNNING, unless a report
        got there first (it may have ended already)."""
        with self.lock:
            cmd = self.farm.commands.get(msg.command_id)
            if cmd is not None and cmd.assignment == msg.assignment and cmd.status == CS.ASSIGNED:
                now = self.now()
                cmd.update_time = now
                self.farm.set_status(cmd, CS.RUNNING, now)

    def _undelivered(self, msg, may_run=False):
        """A message the worker did not take, or given up unsent. A stop order is let go (the
        fencing of assignments stops that run when the worker is next heard from); an
        assignment goes back to the queue, and no more work for that node until it is heard
        from again. Only an assignment that went unanswered (`may_run`: the worker may have
        it) is followed by a stop order: one for a run the worker never had would only wait
        in front of the node's next assignment, and go unanswered before it, by a node that
        answers nothing."""
        if msg.kind != "assign":
            return
        with self.lock:
            cmd = self.farm.commands.get(msg.command_id)
            if cmd is not None and cmd.assignment == msg.assignment and cmd.status == CS.ASSIGNED:
                self.farm.requeue(cmd, self.now(), may_run=may_run)
                rn = self.farm.render_nodes.get(msg.rn_name)
                if rn is not None:
                    worker_protocol.unreachable(self.farm, rn)
        self.changed()

    # -- write-behind ---------------------------------------------------------------------------------
    def _flush_loop(self):
        while not self._stopping.wait(self.flush_interval):
            if self.store is not None:
                self.flush()

    def flush(self):
        """Write what changed in one transaction; on failure keep it for the next try.

        A row the database refuses (a value it cannot hold) is kept aside and retried alone,
        when it changes again or every HELD_RETRY seconds, so that it never holds the others
        back; the rest is written. Then the audit trail. True when nothing is left to write.
        """
        with self._flush_lock:
            done = self._flush()
            if self.db_error is None:
                try:
                    self._write_access()
                except Exception as exc:
                    self.metrics.database_errors.inc()
                    log.error("writing the audit trail failed, will retry: %s", exc)
            return done

    def _flush(self):
        now = self.now()
        with self.lock:
            self.flushes += 1
            generation = self.flushes
            dirty = self.farm.take_dirty()
            since, self._changes_since = self._changes_since, now
            alone = []
            for held in self.held.values():
                if dirty.discard(held.kind, held.item) or held.next_try <= now:
                    alone.append(held)
            if not dirty and not alone:
                self.flushed = generation
                return not self.held
            rows = self.store.snapshot(self.farm, dirty)
            alone_rows = [(held, self.store.snapshot(self.farm, Dirty.of(held.kind, held.item)))
                          for held in alone]
            self._writing = True
        written = []
        started = time.perf_counter()
        try:
            refused = self.store.write(rows) if dirty else []
            for held, held_rows in alone_rows:
                if self.store.write(held_rows):
                    held.next_try = now + HELD_RETRY
                else:
                    written.append(held)
        except Exception as exc:
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
            self.metrics.database_errors.inc()
            if dirty and (self._unwritten_since is None or since < self._unwritten_since):
                self._unwritten_since = since
            if self.db_error is None:
                log.error("database write failed, will retry: %s", exc)
            self.db_error = str(exc)
            with self.lock:
                self.farm.dirty.merge(dirty)
                for held in written:
                    self.held.pop((held.kind, held.key), None)
                for held in alone:
                    held.next_try = now     # with the rest, once the database is back
                self._writing = False
            return False
        with self.lock:
            for held in written:
                log.warning("database: %s %s written after all", held.kind, held.key)
                self.held.pop((held.kind, held.key), None)
            for kind, key, reason in refused:
                item = dirty.find(kind, key)
                if item is None:
                    continue
                log.error("database refused %s %s, kept aside and retried alone: %s", kind, key, reason)
                self.held[(kind, key)] = HeldRow(kind, key, item, reason, now)
            self.flushed = generation
            self._writing = False
        metrics = self.metrics
        metrics.flush_seconds.observe(time.perf_counter() - started)
        metrics.flushes.inc()
        if dirty:
            oldest = since if self._unwritten_since is None else min(since, self._unwritten_since)
            self._unwritten_since = None
            metrics.flush_lag.observe(max(0.0, self.now() - oldest))
        if self.db_error is not None:
            log.warning("database is back; pending changes written")
            self.db_error = None
        return not self.held

    # -- identities and the audit trail ----------------------------------------------------------
    def job_of(self, kind, ident):
        """(job id, user) of the job a route's id names ("node", "command", "share"); None when
        it names nothing (the route answers 404 itself)."""
        try:
            ident = int(ident)
        except (TypeError, ValueError):
            return None
        with self.lock:
            farm = self.farm
            if kind == "node":
                node = farm.nodes.get(ident)
                job = node.job if node is not None and node is not farm.root else None
            elif kind == "command":
                cmd = farm.commands.get(ident)
                job = cmd.task.job if cmd is not None else None
            else:
                share = farm.shares.get(ident)
                job = share.node if share is not None else None
            return (job.id, job.user) if job is not None else None

    def record(self, entry):
        """One audit record (auth.py's Audit middleware makes them)."""
        with self._audit_lock:
            self._audit.append(entry)

    def audit_trail(self, user=None, since=None, job=None, limit=100):
        """Audit records, newest first: those not written yet, then the database's."""
        with self._audit_lock:
            pending = list(self._audit)
        out = [r for r in reversed(pending)
               if (user is None or r["user"] == user) and (since is None or r["time"] >= since)
               and (job is None or job in (r["targets"].get("jobs") or ()))][:limit]
        if self.store is not None and len(out) < limit:
            out += self.store.read_audit(user=user, since=since, job=job, limit=limit - len(out))
        return out

    def _write_access(self):
        """After a flush: the audit records since the last one, and when tokens were used;
        audit records past audit_retention go once an hour."""
        with self._audit_lock:
            records, self._audit = self._audit, []
        used = self.tokens.take_used()
        try:
            if records or used:
                self.store.write_access(used, records)
            now = self.now()
            if now - self._purged_at >= AUDIT_PURGE:
                self.store.purge_audit(now - self.settings.audit_retention)
                self._purged_at = now
        except Exception:
            with self._audit_lock:
                self._audit[:0] = records
            for token_id, when in used.items():
                self.tokens.used.setdefault(token_id, when)
            raise

    def pending_writes(self):
        """True while some change is not yet committed (call under the lock)."""
        return self._writing or bool(self.farm.dirty) or bool(self.held)

    def problems(self):
        """What keeps the dispatcher from its promises now, for /health and /system (no lock)."""
        out = []
        if self.db_error is not None:
            out.append(f"database unavailable: {self.db_error}")
        held = len(self.held)
        if held:
            out.append(f"{held} change{'s' if held > 1 else ''} refused by the database, "
                       "kept aside and retried (see /system)")
        return out

    def held_rows(self, limit=20):
        """The rows the database refused, oldest first (call under the lock)."""
        rows = sorted(self.held.values(), key=lambda h: h.since)[:limit]
        return [{"table": h.kind, "key": h.key, "reason": h.reason, "since": h.since} for h in rows]

    def summary(self):
        farm = self.farm
        running = farm.root.counts[CS.RUNNING] + farm.root.counts[CS.ASSIGNED]
        ready = farm.root.counts[CS.READY]
        return (f"{len(farm.root.children)} jobs, {running} running, {ready} ready, "
                f"{sum(1 for rn in farm.render_nodes.values() if rn.alive)}/{len(farm.render_nodes)} render nodes up")
