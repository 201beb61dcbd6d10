"""Isolation: detect() on cgroup trees laid out like /sys/fs/cgroup (v2 and v1, writable or not),
the v2 files written in a fake tree (this host's v2 mount has no controllers), and the real v1
hierarchies of this machine."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from puli.commandwatcher.isolation import CommandCgroup, IsolationError, detect

MIB = 1024 * 1024


def make_tree(base, files):
    """Directories and files as {relative path: content}; a path ending in / is a directory."""
    for relative, content in files.items():
        path = base / relative
        if relative.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return base


SERVICE = "system.slice/puli-worker.service"


@pytest.fixture
def v2_tree(tmp_path):
    """A pure cgroup v2 host, the worker in its delegated service cgroup (Delegate=yes)."""
    root = make_tree(tmp_path / "cgroup", {
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        "cgroup.subtree_control": "cpu io memory pids\n",
        f"{SERVICE}/cgroup.controllers": "cpu memory pids\n",
        f"{SERVICE}/cgroup.subtree_control": "\n",
        f"{SERVICE}/cgroup.procs": f"{os.getpid()}\n",
    })
    self_cgroup = make_tree(tmp_path, {"proc-self-cgroup": f"0::/{SERVICE}\n"}) / "proc-self-cgroup"
    return root, self_cgroup


def kernel_files(directory, **files):
    """What the kernel puts into a new cgroup directory (the fake tree cannot do it on mkdir)."""
    defaults = {"cgroup.procs": "", "cgroup.kill": "", "memory.max": "max\n", "memory.swap.max": "max\n",
                "cpu.max": "max 100000\n", "pids.max": "max\n", "memory.events": "oom 0\noom_kill 0\n",
                "memory.oom.group": "0\n"}
    make_tree(directory, {name: content for name, content in {**defaults, **files}.items() if content is not None})


def test_detect_v2_delegated_subtree(v2_tree):
    root, self_cgroup = v2_tree
    iso = detect(root, self_cgroup)
    assert iso.mode == "cgroup2"
    assert iso.v2_base == root / SERVICE
    assert iso.controllers == ["cpu", "memory", "pids"]
    assert iso.describe() == {"mode": "cgroup2", "controllers": ["cpu", "memory", "pids"], "cgroupKill": True}


def test_detect_v2_worker_already_in_its_leaf(v2_tree):
    root, self_cgroup = v2_tree
    (root / SERVICE / "worker").mkdir()
    self_cgroup.write_text(f"0::/{SERVICE}/worker\n")
    assert detect(root, self_cgroup).v2_base == root / SERVICE


def test_v2_create_writes_limits_moves_the_worker_and_enables_controllers(v2_tree):
    root, self_cgroup = v2_tree
    iso = detect(root, self_cgroup)
    command_dir = root / SERVICE / "cmd-7-1"
    kernel_files(command_dir)
    cgroup = iso.create("cmd-7-1", cores=2, ram_mb=512, pids_max=1000)

    service = root / SERVICE
    assert (service / "worker" / "cgroup.procs").read_text() == str(os.getpid())
    assert (service / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (command_dir / "memory.max").read_text() == str(512 * MIB)
    assert (command_dir / "memory.swap.max").read_text() == "0"
    assert (command_dir / "memory.oom.group").read_text() == "1"
    assert (command_dir / "cpu.max").read_text() == "200000 100000"
    assert (command_dir / "pids.max").read_text() == "1000"
    assert cgroup.procs_files() == [str(command_dir / "cgroup.procs")]

    description = json.loads(json.dumps(cgroup.describe()))
    assert description == {"mode": "cgroup2", "paths": {"unified": str(command_dir)},
                           "ramMb": 512, "cores": 2, "pidsMax": 1000}
    again = CommandCgroup.from_description(description)
    assert again.kill() is True
    assert (command_dir / "cgroup.kill").read_text() == "1"

    assert again.oom_killed() is False
    (command_dir / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert again.oom_killed() is True
    (command_dir / "memory.peak").write_text("67108864\n")
    assert again.memory_peak() == 64 * MIB


def test_v2_a_watcher_in_its_own_unit_moves_into_a_watcher_leaf(tmp_path):
    """isolation systemd: the watcher, main process of its transient unit of the user manager,
    makes its command's cgroup beside a `watcher` leaf of its own, and finds its unit's cgroup
    again once it is in that leaf."""
    unit = "user.slice/user-999.slice/user@999.service/app.slice/puli-command-7-1.service"
    root = make_tree(tmp_path / "cgroup", {
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        f"{unit}/cgroup.controllers": "cpu memory pids\n",
        f"{unit}/cgroup.subtree_control": "\n",
        f"{unit}/cgroup.procs": f"{os.getpid()}\n",
    })
    self_cgroup = make_tree(tmp_path, {"proc-self-cgroup": f"0::/{unit}\n"}) / "proc-self-cgroup"
    iso = detect(root, self_cgroup, leaf="watcher")
    kernel_files(root / unit / "command")
    cgroup = iso.create("command", cores=1, ram_mb=100)
    assert (root / unit / "watcher" / "cgroup.procs").read_text() == str(os.getpid())
    assert not (root / unit / "worker").exists()
    assert (root / unit / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert cgroup.paths["unified"] == root / unit / "command"
    assert (root / unit / "command" / "memory.max").read_text() == str(100 * MIB)
    self_cgroup.write_text(f"0::/{unit}/watcher\n")
    assert detect(root, self_cgroup, leaf="watcher").v2_base == root / unit


def test_v2_without_limits_and_without_kernel_swap_file(v2_tree):
    root, self_cgroup = v2_tree
    cgroup = detect(root, self_cgroup).create("cmd-8-1", cores=0, ram_mb=0)
    directory = root / SERVICE / "cmd-8-1"
    assert (directory / "cpu.max").read_text() == "max 100000"
    assert (directory / "pids.max").read_text() == "max"
    assert not (directory / "memory.max").exists() and not (directory / "memory.swap.max").exists()
    assert cgroup.ram_mb == 0


def test_v2_undelegated_memory_gives_no_memory_limit(v2_tree, caplog):
    root, self_cgroup = v2_tree
    (root / SERVICE / "cgroup.controllers").write_text("cpu pids\n")
    detect(root, self_cgroup).create("cmd-9-1", cores=1, ram_mb=256)
    assert not (root / SERVICE / "cmd-9-1" / "memory.max").exists()
    assert (root / SERVICE / "cgroup.subtree_control").read_text() == "+cpu +pids"
    assert "controller memory is not delegated" in caplog.text


def test_cgroup_names_and_descriptions_cannot_leave_the_tree(v2_tree):
    root, self_cgroup = v2_tree
    iso = detect(root, self_cgroup)
    for name in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(IsolationError, match="bad cgroup name"):
            iso.create(name, cores=1, ram_mb=1)
    with pytest.raises(IsolationError, match="bad cgroup path"):
        CommandCgroup.from_description({"mode": "cgroup2", "paths": {"unified": "/sys/fs/cgroup/.."}})


def v1_files(own_memory="/tasks/me"):
    return {
        "memory/cgroup.procs": "", f"memory{own_memory}/cgroup.procs": "",
        "pids/cgroup.procs": "", "cpu/cgroup.procs": "",
        "unified/cgroup.controllers": "hugetlb\n", "unified/cgroup.procs": "",
    }


SELF_V1 = "9:name=systemd:/\n8:pids:/\n4:memory:/tasks/me\n1:cpu,cpuacct:/\n0::/\n"


def test_detect_and_create_v1(tmp_path):
    root = make_tree(tmp_path / "cgroup", v1_files())
    self_cgroup = make_tree(tmp_path, {"self": SELF_V1}) / "self"
    iso = detect(root, self_cgroup)
    assert iso.mode == "cgroup1"
    assert iso.v1 == {"memory": root / "memory/tasks/me", "cpu": root / "cpu", "pids": root / "pids"}
    assert iso.unified == root / "unified"
    make_tree(root, {"memory/tasks/me/cmd-7-1/memory.memsw.limit_in_bytes": "9223372036854771712\n"})
    cgroup = iso.create("cmd-7-1", cores=1.5, ram_mb=64, pids_max=200)
    memory = root / "memory/tasks/me/cmd-7-1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 * MIB)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(64 * MIB)
    assert (root / "cpu/cmd-7-1/cpu.cfs_quota_us").read_text() == "150000"
    assert (root / "cpu/cmd-7-1/cpu.cfs_period_us").read_text() == "100000"
    assert (root / "pids/cmd-7-1/pids.max").read_text() == "200"
    assert sorted(cgroup.procs_files()) == sorted(str(root / p / "cgroup.procs") for p in (
        "memory/tasks/me/cmd-7-1", "cpu/cmd-7-1", "pids/cmd-7-1", "unified/cmd-7-1"))
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert cgroup.oom_killed() is False
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroup.oom_killed() is True
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")      # before 4.13
    (memory / "memory.failcnt").write_text("17\n")
    assert cgroup.oom_killed() is True


def test_detect_without_pids_or_without_cgroups_is_pgroup(tmp_path):
    files = v1_files()
    del files["pids/cgroup.procs"]
    root = make_tree(tmp_path / "cgroup", files)
    self_cgroup = make_tree(tmp_path, {"self": SELF_V1}) / "self"
    assert detect(root, self_cgroup).mode == "pgroup"
    assert detect(tmp_path / "nothing", self_cgroup).mode == "pgroup"
    assert detect(root, tmp_path / "no-proc-file").mode == "pgroup"
    assert detect(root, self_cgroup).create("cmd-1-1", cores=1, ram_mb=10) is None


def _detect_as_nobody(root, self_cgroup):
    """detect() in a forked child that dropped to nobody, as a worker run by an unprivileged user
    (root would pass every permission check)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_fd, detect(root, self_cgroup).mode.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as answer:
        mode = answer.read().decode()
    os.waitpid(pid, 0)
    return mode


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_detect_unwritable_tree_is_pgroup(layout):
    # Outside pytest's tmp_path, whose parents are private to root: nobody must read the tree.
    base = Path(tempfile.mkdtemp(prefix="puli-cgroup-"))
    try:
        base.chmod(0o755)
        if layout == "v1":
            root = make_tree(base / "cgroup", v1_files())
            self_cgroup = make_tree(base, {"self": SELF_V1}) / "self"
        else:
            root = make_tree(base / "cgroup", {"cgroup.controllers": "cpu memory pids\n",
                                               f"{SERVICE}/cgroup.controllers": "cpu memory pids\n"})
            self_cgroup = make_tree(base, {"self": f"0::/{SERVICE}\n"}) / "self"
        for directory, _, _ in os.walk(base):
            os.chmod(directory, 0o755)
        expected = "cgroup1" if layout == "v1" else "cgroup2"
        if os.geteuid() == 0:
            assert detect(root, self_cgroup).mode == expected       # root may write it...
            assert _detect_as_nobody(root, self_cgroup) == "pgroup"  # ...nobody may not
        else:
            for directory, _, _ in os.walk(root):
                os.chmod(directory, 0o555)
            assert detect(root, self_cgroup).mode == "pgroup"
    finally:
        for directory, _, _ in os.walk(base):
            os.chmod(directory, 0o755)
        shutil.rmtree(base)


# -- this machine's real cgroup v1 hierarchies -------------------------------------------------

@pytest.fixture
def real_isolation():
    iso = detect()
    if iso.mode == "pgroup":
        pytest.skip("/sys/fs/cgroup/memory (or pids) under this process's cgroup is not writable")
    return iso


@pytest.mark.parametrize("with_cgroup_kill", [True, False])
def test_real_cgroup_limits_kill_and_remove(real_isolation, with_cgroup_kill):
    created = real_isolation.create(f"puli-test-{uuid.uuid4().hex[:12]}", cores=1, ram_mb=100, pids_max=50)
    paths = created.describe()["paths"]
    try:
        if real_isolation.mode == "cgroup1":
            assert Path(paths["memory"], "memory.limit_in_bytes").read_text().strip() == str(100 * MIB)
            assert Path(paths["cpu"], "cpu.cfs_quota_us").read_text().strip() == "100000"
            assert Path(paths["pids"], "pids.max").read_text().strip() == "50"
        cgroup = created
        if not with_cgroup_kill:        # the one-by-one SIGKILL fallback: without the v2 directory
            cgroup = CommandCgroup.from_description(
                {**created.describe(), "paths": {k: v for k, v in paths.items() if k != "unified"}})
        process = subprocess.Popen(["sleep", "1000"], preexec_fn=lambda: _join(cgroup))
        # preexec_fn ran before exec: the pid is a member once Popen returned.
        assert process.pid in cgroup.pids() and os.getpid() not in cgroup.pids()
        assert cgroup.kill() is True
        assert process.wait(timeout=10) == -signal.SIGKILL
        assert cgroup.oom_killed() is False
    finally:
        created.kill()
        assert created.remove() is True
    assert not any(Path(p).exists() for p in paths.values())


def _join(cgroup):
    for path in cgroup.procs_files():
        with open(path, "w") as f:
            f.write(str(os.getpid()))
