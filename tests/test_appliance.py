"""The farm appliance for real: systemd units, packages, Ansible roles and Vagrantfile.

Each test needs outside tools (systemd-analyze, dpkg-deb, rpmbuild, ansible-playbook,
ansible-lint, vagrant; `scripts/lib/setup.sh`'s ensure_appliance_tools installs them, the
Python ones into .venv-tools). A missing tool skips its test, unless PULI_APPLIANCE=1 (CI) makes
it a failure. The installing tests (dpkg -i, the playbook run) need root, a running MariaDB,
and a host where Puli is not installed yet: they refuse to touch an existing /opt/puli,
/etc/puli, puli user or pulidb database, and remove exactly what they created.
"""
import json
import os
import pwd
import grp
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.appliance

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("PULI_TOOLS_VENV", ROOT / ".venv-tools"))
STRICT = os.environ.get("PULI_APPLIANCE") == "1"
UNITS = sorted((ROOT / "systemd").glob("*.service"))
# What installing Puli creates on a host; the installing tests need all of it absent.
INSTALLED_PATHS = [Path(p) for p in ("/opt/puli", "/etc/puli", "/var/lib/puli", "/var/log/puli",
                                     "/etc/systemd/system/puli-dispatcher.service",
                                     "/etc/systemd/system/puli-worker.service")]


def unavailable(reason):
    """Skip, or fail under PULI_APPLIANCE=1 where every check must run."""
    if STRICT:
        pytest.fail(f"PULI_APPLIANCE=1 but {reason}")
    pytest.skip(reason)


def tool(name):
    """Path of a tool: from .venv-tools first, then PATH."""
    path = TOOLS / "bin" / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        unavailable(f"{name} is not installed (scripts/lib/setup.sh: ensure_appliance_tools)")
    return found


def run(*cmd, check=True, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def need_clean_root():
    if os.geteuid() != 0:
        unavailable("installing Puli on this host needs root")
    present = leftovers()
    if present:
        unavailable(f"Puli is already installed here ({', '.join(present)}): this test will not touch it")


def leftovers():
    """What of a Puli installation this host holds: paths, the puli user and group, the package."""
    present = [str(p) for p in INSTALLED_PATHS if os.path.lexists(p)]
    for lookup, what in ((pwd.getpwnam, "user puli"), (grp.getgrnam, "group puli")):
        try:
            lookup("puli")
            present.append(what)
        except KeyError:
            pass
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "puli"], capture_output=True, text=True)
    if status.returncode == 0 and "not-installed" not in status.stdout and status.stdout.strip():
        present.append(f"package puli ({status.stdout.strip()})")
    return present


def retried(cmd, busy, timeout=300):
    """Run `cmd` again while it fails because another program holds a lock it needs (an apt
    run holds dpkg's, an adduser /etc/passwd's): other installs may run on this host."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0 or not re.search(busy, proc.stderr) or time.monotonic() > deadline:
            return proc
        time.sleep(1)


DPKG_BUSY = r"lock|locked"
PASSWD_BUSY = r"cannot lock|try again later"


def dpkg(*args):
    proc = retried(["dpkg", *map(str, args)], DPKG_BUSY)
    if proc.returncode != 0:
        pytest.fail(f"dpkg {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def remove_installation():
    """Remove what an installation made (only called when need_clean_root() saw none of it),
    and check that nothing is left: a later run on this host must find it as this one did."""
    try:
        uid = pwd.getpwnam("puli").pw_uid
    except KeyError:
        uid = None
    if uid is not None:
        # Whatever still runs as puli (a daemon, a render's watcher) would write on in the
        # directories being removed.
        running = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for process in running:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(running, timeout=10)
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "puli"], capture_output=True, text=True)
    if status.returncode == 0 and "not-installed" not in status.stdout:
        retried(["dpkg", "--purge", "puli"], DPKG_BUSY)
    for path in INSTALLED_PATHS:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            path.unlink()
    if uid is not None:
        retried(["userdel", "puli"], PASSWD_BUSY)
    try:
        grp.getgrnam("puli")
        retried(["groupdel", "puli"], PASSWD_BUSY)
    except KeyError:
        pass
    left = leftovers()
    assert not left, f"the installation could not be removed whole: {', '.join(left)} left on this host"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    python = TOOLS / "bin" / "python"
    if not python.exists() or run(python, "-c", "import build", check=False).returncode:
        unavailable("the `build` package is not in .venv-tools (scripts/lib/setup.sh: ensure_appliance_tools)")
    run(python, "-m", "build", "--outdir", out, ROOT)
    wheels = list(out.glob("puli-*.whl"))
    assert len(wheels) == 1 and list(out.glob("puli-*.tar.gz")), sorted(out.iterdir())
    return wheels[0]


# --- systemd units --------------------------------------------------------------------------

def units_against(prefix, dest):
    """The units with /opt/puli/venv replaced by an existing venv, so ExecStart can be verified."""
    paths = []
    for unit in UNITS:
        path = dest / unit.name
        path.write_text(unit.read_text().replace("/opt/puli/venv", str(prefix)))
        paths.append(path)
    return paths


def test_units_verify_without_any_output(tmp_path):
    analyze = tool("systemd-analyze")
    assert {u.name for u in UNITS} == {"puli-dispatcher.service", "puli-worker.service"}
    venv = Path(sys.prefix)
    assert (venv / "bin" / "puli-dispatcher").exists(), "run the tests from the project's venv"
    for unit in units_against(venv, tmp_path):
        proc = run(analyze, "verify", unit, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), unit.name


def test_units_say_what_the_daemons_need():
    dispatcher = (ROOT / "systemd" / "puli-dispatcher.service").read_text()
    worker = (ROOT / "systemd" / "puli-worker.service").read_text()
    for line in ("Type=notify", "NotifyAccess=all", "Restart=on-failure", "User=puli",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "ExecStart=/opt/puli/venv/bin/puli-dispatcher --config /etc/puli/dispatcher.yml"):
        assert re.search(rf"^{re.escape(line)}$", dispatcher, re.M), line
    for line in ("Type=notify", "Delegate=yes", "KillMode=process", "Restart=always", "User=puli",
                 "ExecStart=/opt/puli/venv/bin/puli-worker --config /etc/puli/worker.yml"):
        assert re.search(rf"^{re.escape(line)}$", worker, re.M), line
    assert re.search(r"^WatchdogSec=\d+", dispatcher, re.M) and re.search(r"^WatchdogSec=\d+", worker, re.M)


def test_units_security_exposure(tmp_path):
    analyze = tool("systemd-analyze")
    scores = {}
    for unit in units_against(Path(sys.prefix), tmp_path):
        out = run(analyze, "security", "--offline=true", "--no-pager", unit, check=False).stdout
        match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
        assert match, out[-2000:]
        scores[unit.name] = float(match.group(1))
    # README ("Installing a farm") quotes these: 1.6 and 6.5 with systemd 252.
    assert scores["puli-dispatcher.service"] <= 2.5, scores
    assert scores["puli-worker.service"] <= 7.0, scores


# --- packages -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    tool("dpkg-deb")
    python = TOOLS / "bin" / "python"
    if not python.exists():
        unavailable("no .venv-tools with `build` (scripts/lib/setup.sh: ensure_appliance_tools)")
    out = tmp_path_factory.mktemp("deb")
    run(ROOT / "packaging" / "deb" / "build.sh", out, env={**os.environ, "PYTHON_BUILD": str(python)})
    debs = list(out.glob("puli_*.deb"))
    assert len(debs) == 1, sorted(out.iterdir())
    return debs[0]


def test_wheel_and_sdist_build(wheel):
    names = run(TOOLS / "bin" / "python", "-m", "zipfile", "-l", wheel).stdout
    assert "puli/defaults/dispatcher.yml" in names and "puli/defaults/worker.yml" in names
    assert "entry_points.txt" in names


def test_deb_contents(deb):
    listing = run("dpkg-deb", "--contents", deb).stdout
    for path in ("./opt/puli/venv/bin/puli-dispatcher", "./opt/puli/venv/bin/puli-worker",
                 "./etc/puli/dispatcher.yml", "./etc/puli/worker.yml",
                 "./lib/systemd/system/puli-dispatcher.service", "./lib/systemd/system/puli-worker.service"):
        assert path in listing, path
    assert run("dpkg-deb", "--field", deb, "Package").stdout.strip() == "puli"


def test_deb_installs_and_runs(deb):
    need_clean_root()
    try:
        dpkg("-i", deb)
        assert pwd.getpwnam("puli").pw_dir == "/var/lib/puli"
        assert run("/opt/puli/venv/bin/puli-dispatcher", "--help").returncode == 0
        assert run("/opt/puli/venv/bin/puli-worker", "--help").returncode == 0
        run("/opt/puli/venv/bin/puli-dispatcher", "--check-config", "/etc/puli/dispatcher.yml")
        run("/opt/puli/venv/bin/puli-worker", "--check-config", "/etc/puli/worker.yml")
        # The units as packaged, ExecStart now real: verified with no output at all.
        for unit in ("puli-dispatcher.service", "puli-worker.service"):
            proc = run(tool("systemd-analyze"), "verify", f"/lib/systemd/system/{unit}", check=False)
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), unit
    finally:
        remove_installation()


def test_rpm_builds(tmp_path):
    tool("rpmbuild")
    python = TOOLS / "bin" / "python"
    if not python.exists():
        unavailable("no .venv-tools with `build` (scripts/lib/setup.sh: ensure_appliance_tools)")
    run(ROOT / "packaging" / "rpm" / "build.sh", tmp_path, env={**os.environ, "PYTHON_BUILD": str(python)})
    rpms = list(tmp_path.glob("puli-*.rpm"))
    assert len(rpms) == 1, sorted(tmp_path.iterdir())
    listing = run("rpm", "-qpl", rpms[0]).stdout
    for path in ("/opt/puli/venv/bin/puli-dispatcher", "/etc/puli/dispatcher.yml",
                 "/usr/lib/systemd/system/puli-worker.service"):
        assert path in listing.splitlines(), path


# --- Ansible and Vagrant --------------------------------------------------------------------

def test_ansible_lint_production_profile():
    lint = tool("ansible-lint")
    proc = run(lint, "-c", "ansible/.ansible-lint", "--offline", "ansible/", check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]


def test_vagrantfile_validates():
    vagrant = tool("vagrant")
    proc = run(vagrant, "validate", "--ignore-provider", check=False, cwd=ROOT,
               env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mariadb(*sql):
    return run("mariadb", "-u", "root", "-N", "-e", ";".join(sql)).stdout


def owners():
    """uid:gid and path of everything an installation keeps: who wrote what, when a daemon
    could not open its files."""
    lines = []
    for top in ("/var/lib/puli", "/var/log/puli"):
        for directory, _, files in os.walk(top):
            for path in (directory, *(os.path.join(directory, f) for f in files)):
                st = os.lstat(path)
                lines.append(f"{st.st_uid}:{st.st_gid} {path}")
    return "\n".join(lines)


def wait_http(url, proc, log, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the daemon exited {proc.returncode}\n{log.read_text()[-4000:]}\n"
                        f"owners under /var/lib/puli and /var/log/puli:\n{owners()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return json.loads(resp.read() or b"null")
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s\n{log.read_text()[-4000:]}")


def recap(output):
    """The PLAY RECAP counters of localhost."""
    match = re.search(r"^localhost\s*:\s*(.*)$", output, re.M)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_site_playbook_installs_a_working_farm(tmp_path, wheel):
    playbook = tool("ansible-playbook")
    need_clean_root()
    if run("mariadb-admin", "ping", check=False).returncode != 0:
        unavailable("MariaDB is not running (scripts/test starts it)")
    if mariadb("SHOW DATABASES LIKE 'pulidb'").strip() or \
            mariadb("SELECT user FROM mysql.user WHERE user='puli'").strip():
        unavailable("a pulidb database or puli account already exists: this test will not touch it")

    port, worker_port = free_port(), free_port()
    password = "pw/with@odd:chars-" + os.urandom(4).hex()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "children": {group: {"hosts": {"localhost": None}} for group in ("mysql", "manager", "rendernodes")},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": str(TOOLS / "bin" / "python")}}}))
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({
        "vault_puli_db_password": password,
        "puli_source": str(wheel),
        "puli_dispatcher_port": port,
        "puli_dispatcher_url": f"http://127.0.0.1:{port}",
        "manager_address": "127.0.0.1",
        "rendernode_address": "127.0.0.1",
        "rendernode_host": "127.0.0.1",
        "rendernode_port": worker_port,
        # What this machine already has: no apt run in the test.
        "puli_packages": ["python3", "python3-venv"],
        "mysql_packages": ["mariadb-server", "mariadb-client"],
    }))
    cmd = [playbook, "-i", inventory, "-e", f"@{extra}", "ansible/site.yml"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}"}
    daemons = []
    try:
        first = run(*cmd, cwd=ROOT, env=env)
        assert recap(first.stdout)["failed"] == 0
        assert recap(first.stdout)["changed"] > 0
        config = Path("/etc/puli/dispatcher.yml").read_text()
        assert config.startswith("#") and "Ansible managed" in config and "mysql://puli:" in config
        assert Path("/etc/systemd/system/puli-worker.service").read_text() == \
            (ROOT / "systemd" / "puli-worker.service").read_text()

        second = run(*cmd, cwd=ROOT, env=env)
        assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
        check = run(*cmd, "--check", "--diff", cwd=ROOT, env=env)
        assert recap(check.stdout)["changed"] == 0, check.stdout[-4000:]

        # No systemd as PID 1 here: start the daemons as the units would, as the puli user
        # from the rendered settings, in the directories the playbook gave that user.
        account = pwd.getpwnam("puli")
        for path in ("/var/lib/puli", "/var/log/puli", "/var/lib/puli/dispatcher", "/var/log/puli/dispatcher",
                     "/var/lib/puli/worker", "/var/log/puli/worker"):
            owner = os.stat(path)
            assert (owner.st_uid, owner.st_gid) == (account.pw_uid, account.pw_gid), \
                f"{path} belongs to {owner.st_uid}:{owner.st_gid}, the puli account is " \
                f"{account.pw_uid}:{account.pw_gid}"
        as_puli = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "cwd": "/var/lib/puli"}
        dlog, wlog = tmp_path / "dispatcher.log", tmp_path / "worker.log"
        dispatcher = subprocess.Popen(["/opt/puli/venv/bin/puli-dispatcher", "--config", "/etc/puli/dispatcher.yml"],
                                      stdout=dlog.open("w"), stderr=subprocess.STDOUT, **as_puli)
        daemons.append(dispatcher)
        health = wait_http(f"http://127.0.0.1:{port}/health", dispatcher, dlog)
        assert health.get("ok") is not False
        worker = subprocess.Popen(["/opt/puli/venv/bin/puli-worker", "--config", "/etc/puli/worker.yml"],
                                  stdout=wlog.open("w"), stderr=subprocess.STDOUT, **as_puli)
        daemons.append(worker)
        wait_http(f"http://127.0.0.1:{worker_port}/sysinfos", worker, wlog)

        job = run("/opt/puli/venv/bin/puliexec", "--server", f"http://127.0.0.1:{port}", "--wait",
                  "--name", "appliance", "--", "sh", "-c", "echo rendered", check=False, timeout=120)
        assert job.returncode == 0, (job.stdout, job.stderr, dlog.read_text()[-3000:], wlog.read_text()[-3000:])
        # The dispatcher kept the job in MariaDB, as the playbook configured it.
        assert int(mariadb("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='pulidb'")) > 0
    finally:
        for proc in reversed(daemons):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["mariadb", "-u", "root", "-e",
                        "DROP DATABASE IF EXISTS pulidb; DROP USER IF EXISTS 'puli'@'localhost'"], check=False)
        remove_installation()


def test_rendernode_installs_from_the_deb(tmp_path, deb):
    """The roles' package install method: site.yml with only a render node, Puli from the .deb."""
    playbook = tool("ansible-playbook")
    need_clean_root()
    status = run("dpkg-query", "-W", "-f=${Status}", "puli", check=False)
    if status.returncode == 0 and "not-installed" not in status.stdout:
        unavailable(f"dpkg knows a puli package here ({status.stdout}): this test will not touch it")
    # apt would install missing dependencies, which the cleanup would then leave behind.
    missing = run("dpkg-query", "-W", "python3", "libmariadb3", "adduser", check=False)
    if missing.returncode != 0:
        unavailable(f"the .deb's dependencies are not all installed: {missing.stderr.strip()}")

    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "children": {"rendernodes": {"hosts": {"localhost": None}}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": str(TOOLS / "bin" / "python")}}}))
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({
        "puli_install_method": "package",
        "puli_package": str(deb),
        "puli_dispatcher_url": f"http://127.0.0.1:{free_port()}",
        "rendernode_address": "127.0.0.1",
        "rendernode_host": "127.0.0.1",
        "rendernode_port": free_port(),
    }))
    cmd = [playbook, "-i", inventory, "-e", f"@{extra}", "ansible/site.yml"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}"}
    try:
        first = run(*cmd, cwd=ROOT, env=env)
        assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] > 0
        version = run("dpkg-deb", "--field", deb, "Version").stdout.strip()
        assert run("dpkg-query", "-W", "-f=${Status} ${Version}", "puli").stdout == f"install ok installed {version}"
        # Nothing came from a wheel: no dist directory, the package's own venv.
        assert not Path("/opt/puli/dist").exists()
        assert run("/opt/puli/venv/bin/puli-worker", "--help").returncode == 0
        assert "Ansible managed" in Path("/etc/puli/worker.yml").read_text()
        assert Path("/etc/systemd/system/puli-worker.service").exists()

        second = run(*cmd, cwd=ROOT, env=env)
        assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
        check = run(*cmd, "--check", "--diff", cwd=ROOT, env=env)
        assert recap(check.stdout)["changed"] == 0, check.stdout[-4000:]
    finally:
        remove_installation()
