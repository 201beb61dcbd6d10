"""The figures of a command's run that the dispatcher keeps with it: wall and CPU seconds, the
memory peak where a cgroup counts it, and how it ended."""
import resource
import time


class Figures:
    """Counted from the start of the command's first step, over all of them."""

    def __init__(self):
        self.started_at = None          # monotonic time the first process of the command started
        self.cpu_base = None            # the watcher's RUSAGE_CHILDREN user+sys before it

    def start(self):
        """A step is starting: the first one starts the count."""
        if self.started_at is None:
            self.started_at = time.monotonic()
            self.cpu_base = children_cpu()

    def stats(self, state, cgroup):
        """The figures, as stats: CPU seconds of every process of the command (the cgroup's count
        where there is one), and the final `state`'s exit code, signal, OOM and timeout."""
        figures = {}
        if cgroup is not None:
            peak = cgroup.memory_peak()
            if peak is not None:
                figures["memoryPeakMb"] = round(peak / 1048576, 1)
        wall = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        cpu = cgroup_cpu_seconds(cgroup) if cgroup is not None else None
        if cpu is None:
            cpu = max(0.0, children_cpu() - self.cpu_base) if self.cpu_base is not None else 0.0
        figures.update({"wallSeconds": round(wall, 3), "cpuSeconds": round(cpu, 3),
                        "exitCode": state.get("exitCode"), "signal": state.get("signal"),
                        "oom": bool(state.get("oom")), "timedOut": bool(state.get("timedOut"))})
        return figures


def children_cpu():
    """User + system seconds of the watcher's reaped descendants (a subreaper: orphans too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cgroup_cpu_seconds(cgroup):
    """CPU seconds the cgroup's processes used (cgroup v2 cpu.stat, v1 cpuacct.usage); None
    where the kernel does not count them there."""
    unified = cgroup.paths.get("unified")
    if unified is not None:
        try:
            with open(unified / "cpu.stat") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
        except (OSError, ValueError):
            pass
    for key in ("cpuacct", "cpu"):
        path = cgroup.paths.get(key)
        if path is None:
            continue
        try:
            with open(path / "cpuacct.usage") as f:
                return int(f.read().strip()) / 1e9
        except (OSError, ValueError):
            continue
    return None
