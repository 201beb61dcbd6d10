"""The stats sampler: every `stats_interval` a sample of the farm goes to the database.

The sample is taken under the farm lock in one pass over render nodes, pools, licenses and
live jobs (command counts come from the O(1) counters), then flattened, summarised and written
outside the lock. Jobs that ended since the last sample get a summary (time per frame, failures
by cause and by node, node-hours): their commands are copied under the lock once, the figures
are computed outside. Requests are counted by kind by `RequestCounter`, a falcon middleware.
"""
import logging
import threading
import time
from collections import Counter

from ..model.status import CommandStatus as CS, NodeStatus, RenderNodeStatus
from ..store.stats import MemoryStats, StatsStore

log = logging.getLogger("puli.dispatcher.stats")

RN_NAMES = [s.name.capitalize() for s in RenderNodeStatus]
CMD_NAMES = [s.name for s in CS]
JOB_NAMES = [s.name for s in NodeStatus]
GROUPS = ("prod", "user", "step", "type", "pool")
METRICS = ("jobs", "err", "paused", "ready", "running", "allocated", "readyCommands")
COMPACT_EVERY = 600.0           # seconds between two downsampling runs
_B, _R, _A, _RU, _F, _D, _T, _E, _C = range(9)
# Indexed by status (list indexing takes an IntEnum at C speed; set membership hashes it in Python).
_ENDED = tuple(s in (NodeStatus.DONE, NodeStatus.CANCELED, NodeStatus.ERROR) for s in NodeStatus)
_PENDING_JOB = tuple(s != NodeStatus.DONE and s != NodeStatus.CANCELED for s in NodeStatus)


def _key(name):
    return str(name).replace("/", "_") or "-"


class RequestCounter:
    """Falcon middleware counting requests by kind (Puli's GET / POST / PUT / add graphs /
    update commands). One per service; the sampler takes the counts."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = Counter()

    @classmethod
    def of(cls, service):
        counter = getattr(service, "request_counter", None)
        if counter is None:
            counter = service.request_counter = cls()
        return counter

    def process_request(self, req, resp):
        method, path = req.method, req.path
        if method == "POST" and path.rstrip("/") == "/graphs":
            kind = "submit"
        elif path.startswith("/rendernodes/") and "/commands/" in path and method == "PUT":
            kind = "commandReport"
        elif path.startswith("/rendernodes/") and path.rstrip("/").endswith("/sysinfos"):
            kind = "heartbeat"
        else:
            kind = method
        with self._lock:
            self.counts[kind] += 1

    def take(self):
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts


def collect(farm):
    """Under the farm lock: the raw figures of one sample, O(nodes + pools + licenses + jobs)."""
    rn_status = [0] * len(RN_NAMES)
    cores = [0, 0]
    ram = [0, 0]
    for rn in farm.render_nodes.values():
        rn_status[rn.status] += 1
        if rn.alive:
            cores[0] += rn.cores
            cores[1] += rn.cores - rn.free_cores
            ram[0] += rn.ram
            ram[1] += rn.ram - rn.free_ram
    pools = {}
    for pool in farm.pools.values():
        if not pool.archived:
            counts = [0] * len(RN_NAMES)
            for rn in pool.render_nodes.values():
                counts[rn.status] += 1
            pools[pool.name] = counts
    # Per job only what changes under dispatch (status, counters); its user, tags and pool are
    # read outside the lock by flatten() (attribute reads of rarely edited fields: a sample
    # taken during an edit shows the old or the new value).
    groups = []
    append = groups.append
    pending = _PENDING_JOB
    for job in farm.root.children:
        status = job.status
        if pending[status]:
            c = job.counts
            append((job, status, c[_A] + c[_RU] + c[_F], c[_RU], c[_R]))
    licenses = [(lic.name, lic.used, lic.maximum) for lic in farm.licenses.values()]
    return {"rn": rn_status, "cores": cores, "ram": ram, "pools": pools,
            "commands": list(farm.root.counts), "jobs": list(farm.job_counts),
            "groups": groups, "licenses": licenses}


def flatten(raw):
    """Outside the lock: the flat sample, series name -> number."""
    out = {}
    for i, n in enumerate(raw["rn"]):
        out[f"rn/{RN_NAMES[i]}"] = n
    total, used = raw["cores"]
    out.update({"cores/total": total, "cores/used": used, "cores/idle": total - used})
    total, used = raw["ram"]
    out.update({"ram/total": total, "ram/used": used, "ram/idle": total - used})
    for pool, counts in raw["pools"].items():
        for i, n in enumerate(counts):
            if n:
                out[f"rnpool/{_key(pool)}/{RN_NAMES[i]}"] = n
    for i, n in enumerate(raw["commands"]):
        out[f"commands/{CMD_NAMES[i]}"] = n
    for i, n in enumerate(raw["jobs"]):
        out[f"jobs/{JOB_NAMES[i]}"] = n
    for job, status, allocated, running, ready in raw["groups"]:
        tags = job.tags
        share = job.share
        row = (tags.get("prod"), job.user, tags.get("step"), tags.get("type"),
               share.pool.name if share is not None else None)
        values = {"jobs": 1, "err": status == NodeStatus.ERROR, "paused": status == NodeStatus.PAUSED,
                  "ready": status in (NodeStatus.READY, NodeStatus.BLOCKED),
                  "running": status == NodeStatus.RUNNING, "allocated": allocated,
                  "readyCommands": ready, "runningCommands": running}
        for dim, value in zip(GROUPS, row):
            prefix = f"by/{dim}/{_key(value if value not in (None, '') else '-')}/"
            for metric, v in values.items():
                key = prefix + metric
                out[key] = out.get(key, 0) + int(v)
    for name, used, maximum in raw["licenses"]:
        out[f"lic/{_key(name)}/used"] = used
        out[f"lic/{_key(name)}/max"] = maximum
    return out


# -- job summaries ---------------------------------------------------------------------------------
def job_signature(job):
    return (int(job.status), tuple(job.counts))


def ended(job):
    c = job.counts
    return not (c[_B] or c[_R] or c[_A] or c[_RU] or c[_F]) and job.status != NodeStatus.PAUSED


def copy_job(job):
    """Under the lock: what a summary needs of an ended job (plain tuples)."""
    cmds = []
    for task in job.tasks():
        for cmd in task.commands:
            rn = cmd.render_node
            cmds.append((int(cmd.status), cmd.start_time, cmd.end_time, cmd.nb_frames, cmd.cores,
                         rn.name if rn is not None else None, rn.cores if rn is not None else 0,
                         cmd.message, dict(cmd.stats) if isinstance(cmd.stats, dict) else {},
                         cmd.attempt))
    tags = job.tags
    return {"id": job.id, "name": job.name, "user": job.user, "prod": tags.get("prod"),
            "step": tags.get("step"), "type": tags.get("type"),
            "pool": job.share.pool.name if job.share else None, "status": NodeStatus(job.status).name,
            "created": job.creation_time, "started": job.start_time, "endTime": job.end_time,
            "rnErrors": dict(job.rn_errors or {}), "commands": cmds}


def failure_cause(status, message, stats):
    """Why a command failed, in a few words a chart can group by: from the worker's figures
    (stats: oom, timedOut, signal, exitCode) where it sent them, else guessed from the message
    (rows recorded before the watcher sent its figures)."""
    if status == CS.TIMEOUT:
        return "node lost"
    if stats.get("oom"):
        return "out of memory"
    if stats.get("timedOut"):
        return "max run time"
    if stats.get("signal"):
        return "signal"
    if stats.get("exitCode") not in (None, 0):
        return "exit code"
    text = (message or "").lower()
    if "out of memory" in text:
        return "out of memory"
    if "max run time" in text:
        return "max run time"
    if "silent" in text:
        return "node lost"
    if "signal" in text or "killed" in text:
        return "signal"
    if "exit code" in text or "exited" in text:
        return "exit code"
    return "error"


def summarise(copy, now):
    """Outside the lock: the summary of an ended job from copy_job()."""
    per_frame, node_seconds, wall, cpu, peak, cpu_known = [], 0.0, 0.0, 0.0, None, False
    causes, failed_runs, frames, end = Counter(), 0, 0, copy["endTime"]
    for status, start, stop, nb_frames, cores, _rn, rn_cores, message, stats, attempt in copy["commands"]:
        frames += nb_frames
        if start is not None and stop is not None and stop >= start:
            seconds = stop - start
            wall += seconds
            node_seconds += seconds * (cores / rn_cores if rn_cores else 1.0)
            if status == CS.DONE:
                per_frame.append(seconds / max(nb_frames, 1))
        if stop is not None and (end is None or stop > end):
            end = stop
        if status in (CS.ERROR, CS.TIMEOUT):
            causes[failure_cause(status, message, stats)] += 1
        failed_runs += max(attempt - (status == CS.DONE), 0)
        if isinstance(stats.get("cpuSeconds", stats.get("cpuTime")), (int, float)):
            cpu += float(stats.get("cpuSeconds", stats.get("cpuTime")))
            cpu_known = True
        if stats.get("memoryPeakMb") is not None:
            peak = max(peak or 0.0, float(stats["memoryPeakMb"]))
    out = {k: copy[k] for k in ("id", "name", "user", "prod", "step", "type", "pool", "status",
                                "created", "started")}
    out.update({
        "end": end if end is not None else now, "commands": len(copy["commands"]), "frames": frames,
        "timePerFrame": ({"avg": sum(per_frame) / len(per_frame), "min": min(per_frame),
                          "max": max(per_frame)} if per_frame else None),
        "wallSeconds": wall, "nodeHours": node_seconds / 3600.0, "cpuSeconds": cpu if cpu_known else None,
        "memoryPeakMb": peak, "failures": dict(causes), "failedRuns": failed_runs,
        "failuresByNode": copy["rnErrors"],
    })
    return out


class Sampler:
    """The sampling thread of a Service."""

    def __init__(self, service, interval=None, source=None):
        self.service = service
        settings = service.settings
        self.interval = interval or settings.stats_interval
        if source is None:
            source = StatsStore(service.store) if service.store is not None else MemoryStats()
        self.source = source
        self.counter = RequestCounter.of(service)
        self.latest = None
        self.last_cost = None           # seconds the last sample held the farm lock
        self._summarised = {}           # job id -> signature when summarised (None: from the DB)
        self._last_time = None
        self._last_compact = 0.0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        try:
            self._summarised = dict.fromkeys(self.source.job_ids())
        except Exception as exc:        # the database may be down at start: sample anyway
            log.warning("cannot read job summaries: %s", exc)
        self._thread = threading.Thread(target=self._run, name="puli-stats", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:
                log.exception("stats sample failed")

    def sample(self, now=None):
        """Take one sample and write it; returns the flat sample."""
        service = self.service
        now = service.now() if now is None else now
        started = time.perf_counter()
        with service.lock:
            raw = collect(service.farm)
            passes = service.pass_totals
            service.pass_totals = [0, 0.0, 0.0, 0]
            copies = []
            summarised = self._summarised
            for job in service.farm.root.children:
                if job.id in summarised and summarised[job.id] is None:
                    continue            # summarised before a restart
                if _ENDED[job.status] and ended(job):
                    signature = job_signature(job)
                    if job.id not in self._summarised or \
                            self._summarised[job.id] not in (None, signature):
                        self._summarised[job.id] = signature
                        copies.append(copy_job(job))
        self.last_cost = time.perf_counter() - started
        sample = flatten(raw)
        n, seconds, longest, assigned = passes
        sample.update({"dispatch/passes": n, "dispatch/avgMs": seconds / n * 1000.0 if n else 0.0,
                       "dispatch/maxMs": longest * 1000.0, "dispatch/assigned": assigned,
                       "dispatch/sampleMs": self.last_cost * 1000.0})
        elapsed = now - self._last_time if self._last_time else self.interval
        self._last_time = now
        for kind, count in self.counter.take().items():
            sample[f"requests/{kind}"] = count / max(elapsed, 1e-3)
        jobs = [summarise(c, now) for c in copies]
        self.source.write(now, sample, jobs)
        self.latest = sample
        if now - self._last_compact >= COMPACT_EVERY:
            self._last_compact = now
            self.source.compact(now)
        return sample
