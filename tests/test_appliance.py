"""The farm appliance for real: systemd units, packages, Ansible roles and Vagrantfile.

Each test needs outside tools (systemd-analyze, dpkg-deb, rpmbuild, ansible-playbook,
ansible-lint, vagrant; `scripts/lib/setup.sh`'s ensure_appliance_tools installs them, the
Python ones into .venv-tools). A missing tool skips its test, unless PULI_APPLIANCE=1 (CI) makes
it a failure. The installing tests (dpkg -i, the playbook run) need root, a running MariaDB,
and a host where Puli is not installed yet: they refuse to touch an existing /opt/puli,
/etc/puli, puli user or pulidb database, and remove exactly what they created (nginx, which the playbook test starts, stays installed as a
tool: only the site, and what it added to nginx's state, go).
"""
import grp
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.appliance

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("PULI_TOOLS_VENV", ROOT / ".venv-tools"))
STRICT = os.environ.get("PULI_APPLIANCE") == "1"
UNITS = sorted((ROOT / "systemd").glob("*.service"))
# What installing Puli creates on a host; the installing tests need all of it absent.
# The users' tools the puli role links into /usr/local/bin (the packages: into /usr/bin).
TOOLS_LINKED = yaml.safe_load((ROOT / "ansible/roles/puli/defaults/main.yml").read_text())["puli_tools"]
INSTALLED_PATHS = [Path(p) for p in ("/opt/puli", "/etc/puli", "/var/lib/puli", "/var/log/puli",
                                     "/etc/systemd/system/puli-dispatcher.service",
                                     "/etc/systemd/system/puli-worker.service")] + \
    [Path("/usr/local/bin", tool) for tool in TOOLS_LINKED]


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


def assert_pinned(python):
    """Every distribution requirements.lock pins is installed for `python` at its pinned version."""
    script = ("import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', "
              "d.metadata['Name']).lower(): d.version for d in m.distributions()}))")
    installed = json.loads(run(python, "-c", script).stdout)
    lock = dict(line.split("==") for line in (ROOT / "requirements.lock").read_text().splitlines()
                if line and not line.startswith("#"))
    lock = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in lock.items()}
    assert {name: installed.get(name) for name in lock} == lock


def test_deb_contents(deb):
    listing = run("dpkg-deb", "--contents", deb).stdout
    for path in ("./opt/puli/venv/bin/puli-dispatcher", "./opt/puli/venv/bin/puli-worker",
                 "./etc/puli/dispatcher.yml", "./etc/puli/worker.yml",
                 "./lib/systemd/system/puli-dispatcher.service", "./lib/systemd/system/puli-worker.service",
                 "./usr/bin/puliquery -> /opt/puli/venv/bin/puliquery", "./usr/bin/pul_rn -> /opt/puli/venv/bin/pul_rn"):
        assert path in listing, path
    assert "./usr/bin/puli-worker" not in listing           # the daemons: their units name them
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
        assert_pinned("/opt/puli/venv/bin/python")
        for conf in ("/etc/puli/dispatcher.yml", "/etc/puli/worker.yml"):
            st = os.stat(conf)          # they hold the database password, a worker's token
            assert (stat.S_IMODE(st.st_mode), st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0o640, 0, "puli")
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
    modes = run("rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]",
                rpms[0]).stdout.splitlines()
    for conf in ("/etc/puli/dispatcher.yml", "/etc/puli/worker.yml"):
        assert f"-rw-r----- root puli {conf}" in modes, conf


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


def fetch(url, token=None, context=None, timeout=5):
    """(status, headers, parsed JSON or None) of a GET; an error status is an answer too."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            body = resp.read()
            return resp.status, resp.headers, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, None


def wait_http(url, proc, log, timeout=60, context=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{url}: the daemon exited {proc.returncode}\n{log.read_text()[-4000:]}\n"
                        f"owners under /var/lib/puli and /var/log/puli:\n{owners()}")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as resp:
                return json.loads(resp.read() or b"null")
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s\n{log.read_text()[-4000:] if log.exists() else ''}")


def recap(output):
    """The PLAY RECAP counters of localhost."""
    match = re.search(r"^localhost\s*:\s*(.*)$", output, re.M)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def assert_no_secret(outputs, secrets_):
    """None of the secrets, nor any private key, in what the playbook printed."""
    for proc in outputs:
        text = proc.stdout + proc.stderr
        for name, value in secrets_.items():
            assert value not in text, f"the playbook printed {name}"
        assert "PRIVATE KEY" not in text, "the playbook printed a private key"


def mode_and_owner(path):
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name


# What the roles write outside the paths remove_installation() removes, and the state nginx
# keeps (the playbook's `nginx -t` and the nginx this test starts add to it: temp directories,
# logs, the pid file). The playbook test takes away exactly what was added.
NGINX_SITE = Path("/etc/nginx/conf.d/puli.conf")
NGINX_STATE = (Path("/var/lib/nginx"), Path("/var/log/nginx"))
NGINX_PID = Path("/run/nginx.pid")


def nginx_processes():
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "nginx"]


def nginx_traces():
    """Every path under nginx's state directories, and its pid file when there is one."""
    found = {str(NGINX_PID)} if os.path.lexists(NGINX_PID) else set()
    for top in NGINX_STATE:
        for directory, dirs, files in os.walk(top):
            found.update(os.path.join(directory, name) for name in dirs + files)
    return found


def need_clean_nginx():
    if not shutil.which("nginx"):
        unavailable("nginx is not installed (scripts/lib/setup.sh: ensure_appliance_tools)")
    if nginx_processes():
        unavailable("nginx runs on this host: this test will not touch it")
    if NGINX_SITE.exists():
        unavailable(f"{NGINX_SITE} exists: this test will not touch it")


def remove_nginx_site(traces_before):
    """Stop the nginx this test started, remove the site and what nginx added to its state,
    and check that nginx is as it was found."""
    running = nginx_processes()
    for process in running:
        try:
            process.send_signal(signal.SIGQUIT)     # graceful stop (the master tells its workers)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(running, timeout=15)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=10)
    if os.path.lexists(NGINX_SITE):
        NGINX_SITE.unlink()
    for path in sorted(nginx_traces() - traces_before, reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    # `nginx -t` leaves an empty pid file, a stopping nginx removes it: put it back as it was.
    if str(NGINX_PID) in traces_before and not os.path.lexists(NGINX_PID):
        NGINX_PID.touch(mode=0o644)
    left = [f"nginx process {p.pid}" for p in nginx_processes()]
    left += [str(NGINX_SITE)] if os.path.lexists(NGINX_SITE) else []
    left += sorted(nginx_traces() ^ traces_before)
    assert not left, f"nginx is not as it was found: {', '.join(left)}"


def test_site_playbook_installs_a_working_farm(tmp_path, wheel):
    """site.yml with every group on this host: the API only over TLS (nginx in front of
    gunicorn on loopback, a farm CA), tokens everywhere, a job submitted through nginx done."""
    playbook = tool("ansible-playbook")
    need_clean_root()
    need_clean_nginx()
    if run("mariadb-admin", "ping", check=False).returncode != 0:
        unavailable("MariaDB is not running (scripts/test starts it)")
    if mariadb("SHOW DATABASES LIKE 'pulidb'").strip() or \
            mariadb("SELECT user FROM mysql.user WHERE user='puli'").strip():
        unavailable("a pulidb database or puli account already exists: this test will not touch it")

    port, tls_port, worker_port = free_port(), free_port(), free_port()
    node = f"{socket.gethostname().split('.')[0].lower()}:{worker_port}"
    password = "pw/with@odd:chars-" + os.urandom(4).hex()
    admin_token = "puli_" + secrets.token_urlsafe(32)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "children": {group: {"hosts": {"localhost": None}}
                     for group in ("mysql", "manager", "rendernodes", "clients")},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": str(TOOLS / "bin" / "python")}}}))
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({
        "vault_puli_db_password": password,
        "vault_puli_admin_token": admin_token,
        "puli_source": str(wheel),
        "puli_dispatcher_port": port,
        "puli_tls_port": tls_port,
        "rendernode_address": "127.0.0.1",
        "rendernode_host": "127.0.0.1",
        "rendernode_port": worker_port,
        # What this machine already has: no apt run in the test (the cryptography library of
        # the certificate tasks is in the interpreter above).
        "puli_packages": ["python3", "python3-venv"],
        "mysql_packages": ["mariadb-server", "mariadb-client"],
        "manager_packages": ["nginx"],
        "rendernode_packages": [],
    }))
    cmd = [playbook, "-i", inventory, "-e", f"@{extra}", "ansible/site.yml"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}"}
    # The Puli tools as a user of this host with no settings of their own: /etc/puli/client.yml.
    # (requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a session's CA file.)
    user_env = {k: v for k, v in os.environ.items()
                if not k.startswith("PULI_") and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    user_env["HOME"] = str(tmp_path)
    nginx_before = nginx_traces()
    daemons = []
    try:
        # With --diff: what the playbook shows of the files it writes must hold no secret.
        first = run(*cmd, "--diff", cwd=ROOT, env=env)
        assert recap(first.stdout)["failed"] == 0
        assert recap(first.stdout)["changed"] > 0
        assert_pinned("/opt/puli/venv/bin/python")          # the wheel's dependencies as locked
        config = Path("/etc/puli/dispatcher.yml").read_text()
        assert config.startswith("#") and "Ansible managed" in config and "mysql://puli:" in config
        assert 'address: "127.0.0.1"' in config and "worker_ca_file: /etc/puli/tls/ca.crt" in config
        assert Path("/etc/systemd/system/puli-worker.service").read_text() == \
            (ROOT / "systemd" / "puli-worker.service").read_text()
        site = NGINX_SITE.read_text()
        assert "Ansible managed" in site and f"server 127.0.0.1:{port};" in site
        assert "ssl_protocols TLSv1.2 TLSv1.3;" in site and "server_tokens off;" in site

        # The node's token: bound to its name, on this node only, for the worker's eyes only.
        worker_token = Path("/etc/puli/worker.token").read_text().strip()
        assert worker_token.startswith("puli_") and worker_token != admin_token
        worker_config = Path("/etc/puli/worker.yml").read_text()
        assert "token_file: /etc/puli/worker.token" in worker_config and worker_token not in worker_config
        assert f'name: "{node}"' in worker_config
        assert mode_and_owner("/etc/puli/worker.token") == (0o600, "puli")
        assert mode_and_owner("/etc/puli/tls/node.key") == (0o600, "puli")
        assert mode_and_owner("/etc/puli/tls/manager.key") == (0o600, "root")
        assert mode_and_owner("/etc/puli/tls/ca.key") == (0o600, "root")
        assert mode_and_owner("/etc/puli/dispatcher.yml")[0] == 0o640
        tokens = json.loads(run("/opt/puli/venv/bin/puli-dispatcher", "--config", "/etc/puli/dispatcher.yml",
                                "tokens", "list", "--json").stdout)
        assert {(t["user"], t["role"], t["node"]) for t in tokens if not t["revoked"]} == \
            {("admin", "admin", None), (node, "worker", node)}, tokens
        client = Path("/etc/puli/client.yml").read_text()
        assert "Ansible managed" in client and f'server: "https://localhost:{tls_port}"' in client
        assert "ca_file: /etc/puli/tls/ca.crt" in client and mode_and_owner("/etc/puli/client.yml")[0] == 0o644

        second = run(*cmd, cwd=ROOT, env=env)
        assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
        check = run(*cmd, "--check", "--diff", cwd=ROOT, env=env)
        assert recap(check.stdout)["changed"] == 0, check.stdout[-4000:]
        assert_no_secret((first, second, check), {"the database password": password,
                                                  "the admin token": admin_token,
                                                  "the worker token": worker_token})

        # No systemd as PID 1 here: start the daemons as the units would, as the puli user
        # from the rendered settings, in the directories the playbook gave that user; and
        # nginx as its unit would, from /etc/nginx/nginx.conf.
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
        wait_http(f"http://127.0.0.1:{port}/health", dispatcher, dlog)
        # gunicorn on loopback only: nginx is the way in.
        bound = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                 and c.laddr.port == port}
        assert bound == {"127.0.0.1"}, bound
        run("nginx", "-c", "/etc/nginx/nginx.conf")
        farm_ca = ssl.create_default_context(cafile="/etc/puli/tls/ca.crt")
        health = wait_http(f"https://127.0.0.1:{tls_port}/health", dispatcher, dlog, context=farm_ca)
        assert health.get("ok") is not False

        # Over TLS only, and only with a token.
        with pytest.raises(urllib.error.URLError) as unknown_ca:
            urllib.request.urlopen(f"https://127.0.0.1:{tls_port}/health", timeout=5,
                                   context=ssl.create_default_context())
        assert isinstance(unknown_ca.value.reason, ssl.SSLCertVerificationError), unknown_ca.value
        status, headers, _ = fetch(f"https://127.0.0.1:{tls_port}/tokens", context=farm_ca)
        assert status == 401 and headers["Server"] == "nginx", (status, dict(headers))
        status, _, body = fetch(f"https://127.0.0.1:{tls_port}/tokens", admin_token, farm_ca)
        assert status == 200 and len(body["tokens"]) == 2, (status, body)
        with socket.create_connection(("127.0.0.1", tls_port)) as raw, \
                farm_ca.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        # A body over the dispatcher's max_request_bytes is refused by nginx, before it is sent.
        conn = http.client.HTTPSConnection("127.0.0.1", tls_port, context=farm_ca, timeout=10)
        conn.putrequest("POST", "/graphs")
        conn.putheader("Authorization", f"Bearer {admin_token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(64 * 2**20 + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()

        worker = subprocess.Popen(["/opt/puli/venv/bin/puli-worker", "--config", "/etc/puli/worker.yml"],
                                  stdout=wlog.open("w"), stderr=subprocess.STDOUT, **as_puli)
        daemons.append(worker)
        deadline = time.monotonic() + 60
        while fetch(f"https://127.0.0.1:{tls_port}/rendernodes/{node}", admin_token, farm_ca)[0] != 200:
            assert worker.poll() is None and time.monotonic() < deadline, wlog.read_text()[-4000:]
            time.sleep(0.3)
        # The worker's API: TLS with its farm certificate, and nothing without the secret it
        # gave the dispatcher (a token is not enough either).
        assert fetch(f"https://127.0.0.1:{worker_port}/sysinfos", context=farm_ca)[0] == 401
        assert fetch(f"https://127.0.0.1:{worker_port}/sysinfos", admin_token, farm_ca)[0] == 401
        with pytest.raises(OSError) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/sysinfos", timeout=5)
        assert not isinstance(plain.value, urllib.error.HTTPError), "the worker answered plain HTTP"

        # From this host, through nginx, with a token; the CA from /etc/puli/client.yml.
        job = run("/opt/puli/venv/bin/puliexec", "--server", f"https://127.0.0.1:{tls_port}",
                  "--token", admin_token, "--wait", "--name", "appliance", "--", "sh", "-c", "echo rendered",
                  check=False, timeout=120, env=user_env)
        assert job.returncode == 0, (job.stdout, job.stderr, dlog.read_text()[-3000:], wlog.read_text()[-3000:])
        # The server too from /etc/puli/client.yml (https://localhost:<tls port>).
        nodes = run("/opt/puli/venv/bin/puliquery", "--json", "rn", env={**user_env, "PULI_TOKEN": admin_token})
        assert node in nodes.stdout, nodes.stdout
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
        try:
            remove_nginx_site(nginx_before)
        finally:
            remove_installation()


def studio_certificates(directory):
    """A studio CA and a certificate it issued to 127.0.0.1, as a studio would give them."""
    def openssl(*args):
        run("openssl", *args, cwd=directory)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Studio CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (directory / "node.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "node.crt", "-extfile", "node.ext")
    return {name: (directory / name).read_text() for name in ("ca.crt", "node.crt", "node.key")}


def test_rendernode_installs_from_the_deb(tmp_path, deb):
    """The roles' package install method: site.yml with only a render node, Puli from the .deb.
    Without a manager in the inventory, what it would make comes from variables, as a studio
    gives them: the node's token (from the vault) and a certificate from the studio's CA."""
    playbook = tool("ansible-playbook")
    tool("openssl")
    need_clean_root()
    status = run("dpkg-query", "-W", "-f=${Status}", "puli", check=False)
    if status.returncode == 0 and "not-installed" not in status.stdout:
        unavailable(f"dpkg knows a puli package here ({status.stdout}): this test will not touch it")
    # apt would install missing dependencies, which the cleanup would then leave behind.
    missing = run("dpkg-query", "-W", "python3", "libmariadb3", "adduser", check=False)
    if missing.returncode != 0:
        unavailable(f"the .deb's dependencies are not all installed: {missing.stderr.strip()}")

    studio = studio_certificates(tmp_path)
    token = "puli_" + secrets.token_urlsafe(32)
    dispatcher_url = f"https://127.0.0.1:{free_port()}"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {
        "children": {"rendernodes": {"hosts": {"localhost": None}}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": str(TOOLS / "bin" / "python")}}}))
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({
        "puli_install_method": "package",
        "puli_package": str(deb),
        "puli_dispatcher_url": dispatcher_url,
        "puli_tls_ca_cert": studio["ca.crt"],
        "rendernode_tls_cert": studio["node.crt"],
        "rendernode_tls_key": studio["node.key"],
        "rendernode_token": token,
        "rendernode_packages": [],
        "rendernode_address": "127.0.0.1",
        "rendernode_host": "127.0.0.1",
        "rendernode_port": free_port(),
    }))
    cmd = [playbook, "-i", inventory, "-e", f"@{extra}", "ansible/site.yml"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}"}
    try:
        first = run(*cmd, "--diff", cwd=ROOT, env=env)
        assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] > 0
        version = run("dpkg-deb", "--field", deb, "Version").stdout.strip()
        assert run("dpkg-query", "-W", "-f=${Status} ${Version}", "puli").stdout == f"install ok installed {version}"
        # Nothing came from a wheel: no dist directory, the package's own venv.
        assert not Path("/opt/puli/dist").exists()
        assert run("/opt/puli/venv/bin/puli-worker", "--help").returncode == 0
        worker_config = Path("/etc/puli/worker.yml").read_text()
        assert "Ansible managed" in worker_config and f'dispatcher_url: "{dispatcher_url}"' in worker_config
        assert Path("/etc/systemd/system/puli-worker.service").exists()
        # The studio's token, certificate and CA, where the worker and the tools read them.
        assert Path("/etc/puli/worker.token").read_text() == token + "\n"
        assert mode_and_owner("/etc/puli/worker.token") == (0o600, "puli")
        assert Path("/etc/puli/tls/node.key").read_text().strip() == studio["node.key"].strip()
        assert mode_and_owner("/etc/puli/tls/node.key") == (0o600, "puli")
        assert Path("/etc/puli/tls/node.crt").read_text().strip() == studio["node.crt"].strip()
        assert Path("/etc/puli/tls/ca.crt").read_text().strip() == studio["ca.crt"].strip()
        assert f'server: "{dispatcher_url}"' in Path("/etc/puli/client.yml").read_text()

        second = run(*cmd, cwd=ROOT, env=env)
        assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
        check = run(*cmd, "--check", "--diff", cwd=ROOT, env=env)
        assert recap(check.stdout)["changed"] == 0, check.stdout[-4000:]
        assert_no_secret((first, second, check), {"the worker token": token})
    finally:
        remove_installation()
