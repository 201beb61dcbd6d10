"""Command reports on their way to the dispatcher: sent from their own thread, so that a slow or
absent dispatcher never delays the worker's loop or its heartbeat.

Only the latest report of a command is kept (progress is coalesced); progress goes out at most
every `progress_interval`, a status change at once. A report the dispatcher could not take is
kept and retried, with an exponential backoff while the dispatcher is unreachable. What came of
each report is handed back to the loop through results(): the loop alone acts on it.
"""
import logging
import threading
import time
from collections import deque

from .client import Unreachable

log = logging.getLogger("puli.worker.sender")

DELIVERED = "delivered"     # the dispatcher took it
STOP = "stop"               # the command is no longer ours to run (409 stale, 404 unknown)
DROPPED = "dropped"         # refused for good (a malformed report: retrying cannot help)


class Sender:
    def __init__(self, client, progress_interval=1.0, first_backoff=0.5, max_backoff=15.0):
        self.client = client
        self.progress_interval = progress_interval
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.lock = threading.Condition()
        self.pending = {}               # command id -> latest report
        self.urgent = False             # a pending report changes a status
        self.retry_at = 0.0             # monotonic time before which nothing is sent
        self.backoff = 0.0
        self.next_progress = 0.0
        self.flush_by = None            # while closing: the deadline of the last sends
        self.outcomes = deque()
        self.thread = threading.Thread(target=self._run, name="puli-sender", daemon=True)

    def start(self):
        self.thread.start()

    def put(self, report, urgent=False):
        """Queue a report, replacing any older one of the same command."""
        with self.lock:
            # Wake the thread only when it must act sooner than it planned: for a status
            # change, or for a first report (it waits without a deadline when it has none).
            if urgent or not self.pending:
                self.lock.notify()
            self.pending[report["id"]] = report
            self.urgent = self.urgent or urgent

    def results(self):
        """[(report, outcome, answer)] since the last call; `answer`, the dispatcher's body for a
        delivered report (its flush and epoch say when the report is committed), else {}."""
        out = []
        while self.outcomes:
            out.append(self.outcomes.popleft())
        return out

    def backlog(self):
        with self.lock:
            return len(self.pending)

    def close(self, timeout):
        """Send what is pending, within `timeout` seconds, and stop the thread."""
        with self.lock:
            self.flush_by = time.monotonic() + timeout
            self.retry_at = 0.0
            self.lock.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)
        left = self.backlog()
        if left:
            log.warning("%d command report(s) not delivered before exit; the next worker sends "
                        "them again from the commands' state files", left)
        self.client.close()

    # -- the thread -------------------------------------------------------------------------

    def _run(self):
        while True:
            with self.lock:
                while not self._due(time.monotonic()):
                    if self.flush_by is not None and (not self.pending or time.monotonic() >= self.flush_by):
                        return
                    self.lock.wait(self._wait(time.monotonic()))
                batch, self.pending, self.urgent = self.pending, {}, False
                self.next_progress = time.monotonic() + self.progress_interval
            self._send(batch)

    def _due(self, now):
        if not self.pending or now < self.retry_at:
            return False
        return self.urgent or self.flush_by is not None or now >= self.next_progress

    def _wait(self, now):
        if self.flush_by is not None:
            return max(0.01, min(self.flush_by, self.retry_at) - now)
        if not self.pending:
            return None
        return max(0.01, max(self.retry_at, self.next_progress) - now)

    def _send(self, batch):
        reports = list(batch.values())
        for index, report in enumerate(reports):
            if self.flush_by is not None and time.monotonic() >= self.flush_by:
                self._keep(reports[index:], retry=False)
                return
            try:
                answer = self.client.report(report)
            except Unreachable as exc:
                self._keep(reports[index:], retry=True, why=str(exc))
                return
            if answer.ok:
                self.outcomes.append((report, DELIVERED, answer.body))
            elif answer.status in (404, 409):
                log.warning("command %d: the dispatcher says stop (%s)", report["id"], answer.reason())
                self.outcomes.append((report, STOP, {}))
            elif answer.status >= 500 or answer.status == 429:
                self._keep(reports[index:], retry=True, why=answer.reason())
                return
            elif report.get("stats") is not None:
                # The stats are what the dispatcher bounds (max_stats_bytes, lower there than the
                # watcher's bound?): the status must not be lost with them. Again, without.
                log.error("command %d: report refused (HTTP %d: %s): sending it again without its "
                          "stats", report["id"], answer.status, answer.reason())
                self._keep([{k: v for k, v in report.items() if k != "stats"}], retry=False)
            else:
                log.error("command %d: report refused for good (HTTP %d: %s): %r",
                          report["id"], answer.status, answer.reason(), report)
                self.outcomes.append((report, DROPPED, {}))
        with self.lock:
            if self.backoff:
                log.info("the dispatcher takes reports again")
            self.backoff = 0.0

    def _keep(self, reports, retry, why=""):
        """Put back what was not sent, unless a newer report of the same command came meanwhile."""
        with self.lock:
            for report in reports:
                self.pending.setdefault(report["id"], report)
            if retry:
                self.backoff = min(self.max_backoff, self.backoff * 2 or self.first_backoff)
                self.retry_at = time.monotonic() + self.backoff
                log.warning("cannot deliver %d command report(s), retrying in %g s: %s",
                            len(reports), self.backoff, why)
            self.urgent = self.urgent or any(r.get("status") is not None for r in reports)
