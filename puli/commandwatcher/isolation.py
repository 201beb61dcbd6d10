"""Where a command's processes live, how they are limited and how the whole tree is killed:
a cgroup v2 delegated subtree, cgroup v1 hierarchies, or (where neither is writable) a bare
process group.

The worker calls ``detect()`` once, then ``Isolation.create()`` per command and puts
``CommandCgroup.describe()`` into the assignment; the watcher rebuilds it with
``CommandCgroup.from_description()``, makes the command join it (``procs_files()``), kills it,
reads whether the OOM killer struck, and removes it.

cgroup v2: the command cgroups are children of the worker's delegated subtree (``Delegate=yes``)
or, with isolation systemd (puli/worker/units.py), of the watcher's own transient unit's.
Because v2 forbids processes in a cgroup that hands controllers to its children, the worker
moves itself into a ``worker`` leaf of that subtree first (``prepare()``); a worker already in a
leaf named ``worker`` (e.g. systemd's ``DelegateSubgroup=worker``) uses the leaf's parent.

cgroup v1: one child per hierarchy (memory, cpu, pids) under the worker's own cgroup there, plus
a directory in the v2 ``unified`` mount when there is one, for its ``cgroup.kill``.
"""
import errno
import logging
import os
import re
import signal
import time
from pathlib import Path

log = logging.getLogger("puli.commandwatcher.isolation")

MIB = 1024 * 1024
CPU_PERIOD_US = 100000
LEAF = "worker"
V2_CONTROLLERS = ("cpu", "memory", "pids")
V1_HIERARCHIES = ("memory", "cpu", "pids")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")


class IsolationError(Exception):
    pass


def own_cgroups(self_cgroup="/proc/self/cgroup"):
    """{controller: path} of a process, from a /proc/<pid>/cgroup file; "" keys the v2 path."""
    paths = {}
    with open(self_cgroup) as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            _, controllers, path = parts
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _under(root, cgroup_path):
    return Path(root) / cgroup_path.lstrip("/")


def _writable(path):
    return path.is_dir() and os.access(path, os.W_OK)


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, value):
    # cgroup files take one value per write(2): no buffering, no appending.
    with open(path, "w", buffering=1) as f:
        f.write(str(value))


def detect(root="/sys/fs/cgroup", self_cgroup="/proc/self/cgroup", leaf=LEAF):
    """The best isolation this process can use under `root` (the cgroup mount point); in
    cgroup v2, this process's own leaf is named `leaf`."""
    root = Path(root)
    try:
        own = own_cgroups(self_cgroup)
    except OSError as exc:
        log.warning("cannot read %s (%s): process groups only", self_cgroup, exc)
        return Isolation("pgroup", root)

    if (root / "cgroup.controllers").exists() and "" in own:
        path = _under(root, own[""])
        base = path.parent if path.name == leaf else path
        if _writable(base) and (base / "cgroup.controllers").exists():
            controllers = _read(base / "cgroup.controllers").split()
            return Isolation("cgroup2", root, v2_base=base, controllers=controllers, leaf=leaf)

    v1 = {}
    for hierarchy in V1_HIERARCHIES:
        if hierarchy in own and _writable(_under(root / hierarchy, own[hierarchy])):
            v1[hierarchy] = _under(root / hierarchy, own[hierarchy])
    if "memory" in v1 and "pids" in v1:
        unified = None
        if (root / "unified" / "cgroup.controllers").exists() and "" in own:
            candidate = _under(root / "unified", own[""])
            unified = candidate if _writable(candidate) else None
        return Isolation("cgroup1", root, v1=v1, unified=unified)
    return Isolation("pgroup", root)


class Isolation:
    """What detect() found; create() makes one command's cgroup (None in pgroup mode)."""

    def __init__(self, mode, root, v2_base=None, controllers=(), v1=None, unified=None, leaf=LEAF):
        self.mode = mode
        self.leaf = leaf
        self.root = Path(root)
        self.v2_base = v2_base
        self.controllers = list(controllers)
        self.v1 = v1 or {}
        self.unified = unified
        self._prepared = False

    def __repr__(self):
        where = self.v2_base or ", ".join(str(p) for p in self.v1.values()) or "-"
        return f"Isolation({self.mode}: {where})"

    def describe(self):
        """For the node's system information."""
        return {"mode": self.mode, "controllers": self.controllers if self.mode == "cgroup2" else sorted(self.v1),
                "cgroupKill": self.mode == "cgroup2" or self.unified is not None}

    def prepare(self):
        """cgroup v2: move this process into its leaf (`worker`) and enable the controllers for
        the command cgroups. Call it before starting any child process (they would stay in the
        subtree's root and make enabling impossible)."""
        if self.mode != "cgroup2" or self._prepared:
            return
        base = self.v2_base
        wanted = [c for c in V2_CONTROLLERS if c in self.controllers]
        enabled = _read(base / "cgroup.subtree_control").split()
        missing = [c for c in wanted if c not in enabled]
        if missing:
            # The root cgroup may hold processes and hand out controllers; any other may not.
            if base != self.root and str(os.getpid()) in _read(base / "cgroup.procs").split():
                leaf = base / self.leaf
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", os.getpid())
            try:
                _write(base / "cgroup.subtree_control", " ".join("+" + c for c in missing))
            except OSError as exc:
                raise IsolationError(f"cannot enable {', '.join(missing)} in {base}/cgroup.subtree_control "
                                     f"({exc}); are other processes in {base}?") from exc
        for absent in sorted(set(V2_CONTROLLERS) - set(wanted)):
            log.warning("cgroup v2 controller %s is not delegated to %s: no %s limit", absent, base, absent)
        self._prepared = True

    def create(self, name, cores, ram_mb, pids_max=None):
        """A new cgroup for one command, limited to `cores` CPUs (0: no limit), `ram_mb` MB of
        memory without swap (0: no limit) and `pids_max` processes (None: no limit)."""
        if self.mode == "pgroup":
            return None
        if not NAME.match(name):
            raise IsolationError(f"bad cgroup name {name!r}")
        if self.mode == "cgroup2":
            self.prepare()
            path = self.v2_base / name
            paths = {"unified": path}
            writes = []
            if "memory" in self.controllers and ram_mb:
                writes.append((path / "memory.max", int(ram_mb) * MIB))
                writes.append((path / "memory.swap.max", 0, "if it exists"))
                # One OOM kill takes the whole command: half a render tree is no use to anyone.
                writes.append((path / "memory.oom.group", 1, "if it exists"))
            if "cpu" in self.controllers:
                writes.append((path / "cpu.max", f"{int(cores * CPU_PERIOD_US)} {CPU_PERIOD_US}" if cores
                               else f"max {CPU_PERIOD_US}"))
            if "pids" in self.controllers:
                writes.append((path / "pids.max", pids_max or "max"))
        else:
            paths = {hierarchy: directory / name for hierarchy, directory in self.v1.items()}
            if self.unified is not None:
                paths["unified"] = self.unified / name
            writes = []
            if ram_mb:
                writes.append((paths["memory"] / "memory.limit_in_bytes", int(ram_mb) * MIB))
                # After limit_in_bytes: the kernel refuses memsw below the memory limit.
                writes.append((paths["memory"] / "memory.memsw.limit_in_bytes", int(ram_mb) * MIB, "if it exists"))
            if "cpu" in paths and cores:
                writes.append((paths["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US))
                writes.append((paths["cpu"] / "cpu.cfs_quota_us", int(cores * CPU_PERIOD_US)))
            writes.append((paths["pids"] / "pids.max", pids_max or "max"))

        cgroup = CommandCgroup(self.mode, paths, ram_mb=ram_mb, cores=cores, pids_max=pids_max)
        try:
            for path in paths.values():
                # exist_ok: an empty cgroup left by a run that crashed is as good as a new one.
                path.mkdir(exist_ok=True)
            for target, value, *optional in writes:
                if optional and not target.exists():
                    continue
                _write(target, value)
        except OSError as exc:
            cgroup.remove()
            raise IsolationError(f"cannot set up cgroup {name}: {exc}") from exc
        return cgroup


class CommandCgroup:
    """One command's cgroup: a directory per hierarchy (`unified` is the v2 one)."""

    def __init__(self, mode, paths, ram_mb=0, cores=0, pids_max=None):
        self.mode = mode
        self.paths = {key: Path(path) for key, path in paths.items()}
        self.ram_mb = ram_mb
        self.cores = cores
        self.pids_max = pids_max

    def __repr__(self):
        return f"CommandCgroup({self.mode}: {', '.join(str(p) for p in self.paths.values())})"

    def describe(self):
        return {"mode": self.mode, "paths": {key: str(path) for key, path in self.paths.items()},
                "ramMb": self.ram_mb, "cores": self.cores, "pidsMax": self.pids_max}

    @classmethod
    def from_description(cls, description):
        paths = description["paths"]
        for path in paths.values():
            if not NAME.match(Path(path).name):
                raise IsolationError(f"bad cgroup path {path!r}")
        return cls(description["mode"], paths, ram_mb=description.get("ramMb") or 0,
                   cores=description.get("cores") or 0, pids_max=description.get("pidsMax"))

    def procs_files(self):
        """The files a process writes its pid into to join this cgroup (every hierarchy)."""
        return [str(path / "cgroup.procs") for path in self.paths.values()]

    def pids(self):
        found = set()
        for path in self.paths.values():
            try:
                found.update(int(pid) for pid in _read(path / "cgroup.procs").split())
            except FileNotFoundError:
                continue
        return found

    def signal(self, signum):
        """Send `signum` to every process in the cgroup."""
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass                    # ESRCH: already gone

    def kill(self, timeout=5.0):
        """SIGKILL every process in the cgroup: cgroup.kill where the kernel has it, else one
        by one until the cgroup is empty. True once it is empty (or cgroup.kill was written)."""
        unified = self.paths.get("unified")
        if unified is not None and (unified / "cgroup.kill").exists():
            _write(unified / "cgroup.kill", 1)
            return True
        deadline = time.monotonic() + timeout
        while True:
            # Repeat: a process may fork between our reading cgroup.procs and killing it.
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > deadline:
                log.warning("%r still holds %s after SIGKILL", self, sorted(pids))
                return False
            self.signal(signal.SIGKILL)
            time.sleep(0.01)

    def oom_killed(self):
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        if "memory" in self.paths:              # v1
            try:
                fields = _counters(self.paths["memory"] / "memory.oom_control")
            except FileNotFoundError:
                return False
            if "oom_kill" in fields:
                return fields["oom_kill"] > 0
            # Kernels before 4.13 have no oom_kill counter: a hit limit is the best evidence.
            return int(_read(self.paths["memory"] / "memory.failcnt").strip() or 0) > 0
        if self.mode == "cgroup2":
            try:
                return _counters(self.paths["unified"] / "memory.events").get("oom_kill", 0) > 0
            except FileNotFoundError:
                return False
        return False

    def memory_peak(self):
        """Peak memory use in bytes, where the kernel keeps it; else None."""
        candidates = [self.paths["memory"] / "memory.max_usage_in_bytes"] if "memory" in self.paths else []
        if self.mode == "cgroup2":
            candidates.append(self.paths["unified"] / "memory.peak")
        for path in candidates:
            try:
                return int(_read(path).strip())
            except (FileNotFoundError, ValueError):
                continue
        return None

    def remove(self):
        """rmdir every directory; True when all are gone. Busy ones (processes still dying) stay."""
        gone = True
        for path in self.paths.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                # ENOTEMPTY only happens in a fake tree (a plain directory with files in it).
                log.warning("cannot remove %s yet: %s", path, exc.strerror)
                gone = False
        return gone


def _counters(path):
    fields = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            fields[key] = int(value)
    return fields
