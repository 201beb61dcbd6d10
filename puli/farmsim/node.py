"""One simulated render node: the worker protocol as puli-worker speaks it, without processes.

Towards the dispatcher (puli/worker/client.py's routes): it registers with its system
information and what it still runs, heartbeats every `heartbeat_interval`, reports each run
(progress, then its end: its answer to the assignment said RUNNING) from one sender loop per
node, in order, a status change at once and progress coalesced; keeps each end until a heartbeat says the flush that took it is
committed, and registers again, with what it holds, when the dispatcher's epoch changes.
Towards it (the worker's API, served by farm.py): assignments, stop orders, pause.

A run "runs" for its duration (behaviour.py), then ends DONE, or ERROR when the fault dice
say so. The ledger (ledger.py) sees every run start and end.
"""
import asyncio
import hmac
import logging
import secrets
import time
from collections import deque

from ..model.status import CommandStatus as CS

log = logging.getLogger("puli.farmsim.node")

ENDS = (int(CS.DONE), int(CS.ERROR))
RETRY = (0.5, 10.0)     # s: first and longest backoff while the dispatcher does not answer


class Refused(Exception):
    def __init__(self, status, title, description):
        super().__init__(description)
        self.status, self.title, self.description = status, title, description


class Run:
    __slots__ = ("id", "assignment", "task_id", "cores", "duration", "status", "completion",
                 "message", "end_flush", "task", "entry")

    def __init__(self, body, duration):
        self.id = body["id"]
        self.assignment = body["assignment"]
        self.task_id = body.get("taskId")
        self.cores = max(1, int(body.get("cores") or 1))
        self.duration = duration
        self.status = int(CS.RUNNING)
        self.completion = 0.0
        self.message = ""
        self.end_flush = None       # its end is committed once the dispatcher's flushed reaches this
        self.task = None            # the asyncio task that plays it
        self.entry = None           # its ledger entry

    @property
    def final(self):
        return self.status in ENDS

    def report(self):
        return {"id": self.id, "assignment": self.assignment, "status": self.status,
                "completion": self.completion, "message": self.message}


class SimNode:
    """`farm` gives the shared parts: session, dispatcher URL and headers, ledger, behaviour,
    clock and statistics."""

    def __init__(self, farm, index, host, port):
        self.farm = farm
        self.name = f"{farm.options.name_prefix}{index:05d}"
        self.host, self.port = host, port
        self.cores = farm.options.cores
        self.index = index
        self.secret = None
        self.runs = {}              # command id -> Run (ended ones until their end is committed)
        self.registered = False
        self.epoch = None
        self.flushed = 0
        self.paused = False
        self.alive = True           # False while "dead" (fault injection)
        self.freed = deque()        # when each of its free places was freed by a run's end
        self.pending = {}           # command id -> latest report not sent yet
        self.sending = 0            # reports on their way
        self.urgent = asyncio.Event()
        self.tasks = []
        self.base = f"/rendernodes/{name_path(self.name)}"

    # -- life --------------------------------------------------------------------------------
    def start(self):
        self.alive = True
        self.registered = False
        self.tasks = [asyncio.create_task(self._keep_in_touch()), asyncio.create_task(self._send_reports())]

    def hold_runs(self):
        """The end of the simulation: the runs under way stay so, none ends any more."""
        for run in self.runs.values():
            if run.task is not None:
                run.task.cancel()

    def freeze(self):
        """Then nothing more happens on this node: no report, no heartbeat."""
        for task in self.tasks:
            task.cancel()

    async def die(self):
        """Power off: every run lost, no more calls, the API unreachable (farm.py closes it)."""
        self.alive = False
        for task in self.tasks:
            task.cancel()
        now = self.farm.now()
        for run in self.runs.values():
            if run.task is not None:
                run.task.cancel()
            self.farm.ledger.drop(run.entry, now, "abandoned")
        self.runs.clear()
        self.pending.clear()
        self.freed.clear()

    # -- the worker's API (farm.py routes requests here) --------------------------------------
    def allows(self, authorization):
        expected = f"Bearer {self.secret}" if self.secret else None
        return expected is not None and hmac.compare_digest(authorization or "", expected)

    def accept(self, body):
        command_id, number = body["id"], body["assignment"]
        if self.farm.closing:
            raise Refused(503, "Stopping", "the simulated farm is stopping")
        if self.paused:
            raise Refused(409, "Paused", f"{self.name} is paused; it takes no new work")
        run = self.runs.get(command_id)
        if run is not None and run.final and run.assignment != number:
            self._forget(run)       # an end kept until committed: the dispatcher has it
            run = None
        if run is not None:
            if run.assignment == number:
                return {"id": command_id, "assignment": number, "status": run.status}
            raise Refused(409, "Busy", f"command {command_id} still runs here under assignment {run.assignment}")
        used = sum(r.cores for r in self.runs.values() if not r.final)
        cores = max(1, int(body.get("cores") or 1))
        if used + cores > self.cores:
            raise Refused(409, "Full", f"{self.name} has {self.cores - used} free cores, not {cores}")
        now = self.farm.now()
        if self.freed:          # the idle gap of the place this run takes, since its last run
            self.farm.stats.idle_gaps.append(now - self.freed.popleft())
        run = Run(body, self.farm.behaviour.duration(body))
        run.entry = self.farm.ledger.start(command_id, number, self.name, now, run.task_id)
        self.farm.first_starts.setdefault(run.task_id, time.time())
        self.runs[command_id] = run
        run.task = asyncio.create_task(self._play(run))
        return {"id": command_id, "assignment": number, "status": int(CS.RUNNING)}

    def order_stop(self, command_id, number):
        run = self.runs.get(command_id)
        if run is None or (number and run.assignment != number) or run.final:
            raise Refused(404, "Not running", f"command {command_id} does not run on {self.name}")
        self._stop(run, "dropped")
        return {"id": command_id, "assignment": run.assignment, "stopping": True}

    def pause(self, content):
        """The killfile's content, as puli-worker takes it: "0" resumes, anything else pauses."""
        self.paused = str(content).strip() != "0"
        asyncio.create_task(self._tell_paused())
        return {"content": content, "paused": self.paused}

    def commands(self):
        return [dict(run.report(), taskId=run.task_id) for run in self.runs.values()]

    # -- a run -------------------------------------------------------------------------------
    async def _play(self, run):
        # No RUNNING report: the answer to the assignment said so (delivery.py's contract).
        progress = self.farm.options.progress_interval
        elapsed = 0.0
        while elapsed < run.duration:
            step = min(progress, run.duration - elapsed) if progress > 0 else run.duration - elapsed
            await asyncio.sleep(step)
            elapsed += step
            if elapsed < run.duration:
                run.completion = round(elapsed / run.duration, 3)
                self._put(run.report())
        failed = self.farm.behaviour.fails(run)
        run.status = int(CS.ERROR if failed else CS.DONE)
        run.completion = 1.0 if not failed else run.completion
        run.message = "simulated failure" if failed else ""
        run.task = None
        self.farm.ledger.end(run.entry, CS(run.status).name, self.farm.now())
        self._freed()
        self._put(run.report(), urgent=True)

    def _stop(self, run, outcome):
        if run.task is not None:
            run.task.cancel()
            run.task = None
        self.farm.ledger.drop(run.entry, self.farm.now(), outcome)
        self._forget(run)
        if not run.final:
            self._freed()

    def _forget(self, run):
        self.runs.pop(run.id, None)
        self.pending.pop(run.id, None)

    def _freed(self):
        self.freed.append(self.farm.now())
        while len(self.freed) > self.cores:
            self.freed.popleft()

    # -- calls to the dispatcher ---------------------------------------------------------------
    def _put(self, report, urgent=False):
        self.pending[report["id"]] = report
        if urgent or report.get("status") in ENDS:
            self.urgent.set()

    async def _send_reports(self):
        backoff = 0.0
        progress = max(self.farm.options.progress_interval, 0.5)
        while True:
            if not self.pending:
                self.urgent.clear()
                await self.urgent.wait()
            else:
                try:
                    await asyncio.wait_for(self.urgent.wait(), progress)
                except TimeoutError:
                    pass
            self.urgent.clear()
            if not self.registered:
                await asyncio.sleep(0.2)
                continue
            batch, self.pending = self.pending, {}
            for index, report in enumerate(batch.values()):
                self.sending += 1
                try:
                    status, body = await self.farm.call("PUT", f"{self.base}/commands/{report['id']}/", report)
                finally:
                    self.sending -= 1
                if status is None or status >= 500 or status == 429:
                    for later in list(batch.values())[index:]:
                        self.pending.setdefault(later["id"], later)
                    backoff = min(RETRY[1], backoff * 2 or RETRY[0])
                    await asyncio.sleep(backoff)
                    self.urgent.set()
                    break
                backoff = 0.0
                self._answered(report, status, body)

    def _answered(self, report, status, body):
        run = self.runs.get(report["id"])
        if run is None or run.assignment != report["assignment"]:
            return
        if status in (404, 409):
            self._stop(run, "dropped")          # no longer ours to run
        elif report.get("status") not in ENDS:
            return
        elif not 200 <= status < 300:
            log.error("%s: the end of command %d refused for good (HTTP %d)", self.name, run.id, status)
            self._forget(run)
        elif self._restarted(body.get("epoch")):
            pass                                # handed again at the registration this asks for
        elif body.get("flush", 0) > self.flushed:
            self.farm.ledger.take(run.entry)
            run.end_flush = body["flush"]       # taken, not yet committed: kept until it is
        else:
            self.farm.ledger.commit(run.entry)
            self._forget(run)

    def _restarted(self, epoch):
        if self.epoch is None or epoch is None or epoch == self.epoch:
            return False
        if self.registered:
            log.info("%s: the dispatcher restarted: registering again", self.name)
            self.registered = False
        return True

    def _learn(self, body):
        if self._restarted(body.get("epoch")):
            return
        flushed = body.get("flushed")
        if isinstance(flushed, int):
            self.flushed = flushed
        for run in list(self.runs.values()):
            if run.end_flush is not None and run.end_flush <= self.flushed:
                self.farm.ledger.commit(run.entry)
                self._forget(run)

    async def _keep_in_touch(self):
        options = self.farm.options
        # Spread the nodes' heartbeats over the interval, as nodes started at different times are.
        await asyncio.sleep(self.farm.behaviour.rng.uniform(0, options.heartbeat_interval))
        while True:
            if not self.registered:
                await self._register()
            else:
                status, body = await self.farm.call("PUT", f"{self.base}/sysinfos", self.farm.load_info())
                self.farm.stats.heartbeats += 1
                if status == 404:
                    self.registered = False
                    continue
                if status is not None and 200 <= status < 300:
                    self._learn(body)
                    if not self.registered:
                        continue        # the dispatcher restarted: register now
            await asyncio.sleep(options.heartbeat_interval if self.registered else 1.0)

    async def _register(self):
        self.secret = secrets.token_urlsafe(24)
        body = dict(self.farm.host_info(self), **self.farm.load_info(), name=self.name, host=self.host,
                    port=self.port, pools=list(self.farm.options.pools), secret=self.secret,
                    scheme="http", commands=[run.report() for run in self.runs.values()])
        status, answer = await self.farm.call("POST", f"{self.base}/", body)
        if status is None or not 200 <= status < 300:
            if status is not None:
                log.error("%s: registration refused (HTTP %d: %s)", self.name, status, answer.get("description"))
            return
        self.registered = True
        self.epoch = answer.get("epoch")
        self.flushed = answer.get("flushed") if isinstance(answer.get("flushed"), int) else 0
        self.farm.stats.registrations += 1
        for command_id in answer.get("stop") or ():
            run = self.runs.get(command_id)
            if run is not None:
                self._stop(run, "dropped")
        for run in list(self.runs.values()):
            if run.final:
                run.end_flush = None
                self._put(run.report(), urgent=True)
        if self.paused:
            await self._tell_paused()

    async def _tell_paused(self):
        if self.registered:
            await self.farm.call("PUT", f"{self.base}/paused", {"paused": self.paused, "killproc": False})


def name_path(name):
    return name.replace("/", "%2F")
