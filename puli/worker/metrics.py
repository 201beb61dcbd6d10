"""The worker's Prometheus metrics, served at GET /metrics on its API: a registry of its own.

What its running commands use is read at scrape time from each one's cgroup (CPU seconds from
cpu.stat or cpuacct.usage, memory from memory.current or memory.usage_in_bytes): one or two
small files per running command, nothing kept between scrapes. A command without a cgroup
(isolation pgroup) has no such series.
"""
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from puli.commandwatcher.figures import cgroup_cpu_seconds
from puli.commandwatcher.isolation import CommandCgroup, IsolationError

__all__ = ["CONTENT_TYPE_LATEST", "WorkerMetrics", "command_cgroup"]


class WorkerMetrics:
    def __init__(self, worker):
        prometheus_client.disable_created_metrics()     # as the dispatcher's (no *_created twins)
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(_RunsCollector(worker))
        self.heartbeats = Counter("puli_worker_heartbeats", "Heartbeats to the dispatcher, by outcome",
                                  ("outcome",), registry=registry)

    def exposition(self):
        return generate_latest(self.registry)


class _RunsCollector:
    def __init__(self, worker):
        self.worker = worker

    def describe(self):
        return []

    def collect(self):
        worker = self.worker
        runs = [run for run in worker._runs() if not run.final]
        yield GaugeMetricFamily("puli_worker_running_commands", "Commands running on this node",
                                value=len(runs))
        yield GaugeMetricFamily("puli_worker_paused", "1 while the killfile pauses this node",
                                value=1 if worker.paused else 0)
        yield GaugeMetricFamily("puli_worker_registered", "1 while registered with the dispatcher",
                                value=1 if worker.registered else 0)
        cpu = CounterMetricFamily("puli_worker_command_cpu_seconds",
                                  "CPU seconds a running command's processes used (its cgroup's count)",
                                  labels=("command",))
        memory = GaugeMetricFamily("puli_worker_command_memory_bytes",
                                   "Memory a running command's cgroup uses now", labels=("command",))
        root = Path(worker.settings.cgroup_root)
        for run in runs:
            cgroup = command_cgroup(run, worker.isolation.mode, root)
            if cgroup is None:
                continue
            label = (str(run.id),)
            seconds = cgroup_cpu_seconds(cgroup)
            if seconds is not None:
                cpu.add_metric(label, seconds)
            used = memory_bytes(cgroup)
            if used is not None:
                memory.add_metric(label, used)
        yield cpu
        yield memory


def command_cgroup(run, mode, root):
    """The cgroup of a run's command, or None: the assignment's (modes cgroup2, cgroup1), or
    in mode systemd the one its watcher made beside itself in its unit's cgroup."""
    description = run.assignment.get("cgroup")
    if description:
        try:
            return CommandCgroup.from_description(description)
        except (IsolationError, KeyError, TypeError, AttributeError):
            return None
    if mode != "systemd" or not run.assignment.get("unit"):
        return None
    pid = run.watcher_pid()
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            own = root / line[3:].lstrip("/")
            # The watcher moves itself into a `watcher` leaf beside the command's (main.py).
            if own.name == "watcher":
                return CommandCgroup("cgroup2", {"unified": own.parent / "command"})
    return None


def memory_bytes(cgroup):
    """What the cgroup's processes use now (v2 memory.current, v1 memory.usage_in_bytes)."""
    candidates = []
    if "memory" in cgroup.paths:
        candidates.append(cgroup.paths["memory"] / "memory.usage_in_bytes")
    if cgroup.mode == "cgroup2" and "unified" in cgroup.paths:
        candidates.append(cgroup.paths["unified"] / "memory.current")
    for path in candidates:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None
