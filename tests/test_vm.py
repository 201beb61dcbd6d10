"""The appliance where it claims to live: a manager VM and a render node VM (Debian 12, real
systemd 252, cgroup v2) provisioned from this host by the real `ansible-playbook site.yml` over
ssh, installing the .deb built in the same run; then the farm is used and abused from the host
through the manager's TLS endpoint with a token.

Run by scripts/vm-check (which builds the image and the packages and names them in
PULI_VM_IMAGE and PULI_VM_DEBS); skipped without them. The tests run in this file's order
(each builds on the farm the ones before left) and print what the closing notes quote
(timings, security scores, the worker's cgroup layout).
"""
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from processes import wait_for
from puli.model.status import CommandStatus, NodeStatus
from vmkit import VM, ansible_inventory, free_port

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("PULI_TOOLS_VENV", ROOT / ".venv-tools"))
IMAGE = os.environ.get("PULI_VM_IMAGE", "")
DEBS = os.environ.get("PULI_VM_DEBS", "").split()
RN_TIMEOUT = 60
DONE, ERROR, TIMEOUT, RUNNING = (int(CommandStatus[name]) for name in ("DONE", "ERROR", "TIMEOUT", "RUNNING"))

pytestmark = [pytest.mark.vm, pytest.mark.skipif(not IMAGE or len(DEBS) != 2,
                                                 reason="scripts/vm-check runs these (PULI_VM_IMAGE, PULI_VM_DEBS)")]


def say(*what):
    print("[vm-check]", *what, file=sys.stderr, flush=True)


class Farm:
    def __init__(self, manager, node, work, admin_token, password, inventory, extra):
        self.manager, self.node, self.work = manager, node, work
        self.admin_token, self.password = admin_token, password
        self.inventory, self.extra = inventory, extra
        self.url = f"https://127.0.0.1:{manager.forwards[8443]}"
        self.ca = work / "ca.crt"
        self.session = requests.Session()
        # Not REQUESTS_CA_BUNDLE, which requests would prefer to the session's own CA.
        self.session.trust_env = False
        self.session.verify = str(self.ca)
        self.session.headers["Authorization"] = f"Bearer {admin_token}"
        self.outputs = []

    def playbook(self, *args):
        # Facts gathered once per host and run (smart), modules piped to the guest's python.
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_PIPELINING": "1",
               "ANSIBLE_GATHERING": "smart",
               "ANSIBLE_HOST_KEY_CHECKING": "0", "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}"}
        started = time.monotonic()
        done = subprocess.run([str(TOOLS / "bin" / "ansible-playbook"), "-i", str(self.inventory),
                               "-e", f"@{self.extra}", "ansible/site.yml", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
        self.outputs.append(done.stdout + done.stderr)
        say(f"ansible-playbook site.yml {' '.join(args)}: {time.monotonic() - started:.0f} s, "
            f"recap {recap(done.stdout)}")
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        return done

    def get(self, path, **kw):
        return self.session.get(self.url + path, timeout=30, **kw)

    def submit(self, name, cmd, **task):
        graph = {"name": name, "root": 0, "user": "ann", "tasks": [dict(
            {"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
             "arguments": {"cmd": cmd, "start": 1, "end": 1}}, **task)]}
        response = self.session.post(self.url + "/graphs/", json=graph, timeout=60)
        assert response.status_code == 201, response.text
        job = response.json()["id"]
        (command,) = wait_for(lambda: self.get(f"/tasks/{job}/commands").json()["commands"], 60,
                              what=f"job {job}'s command")
        return job, command["id"]

    def command(self, command_id):
        return self.get(f"/commands/{command_id}").json()

    def reaches(self, command_id, status, timeout=300):
        def check():
            try:
                command = self.command(command_id)
            except requests.RequestException:
                return None             # the dispatcher is restarting
            return command if command["status"] == status else None
        return wait_for(check, timeout, interval=1, what=f"command {command_id} to reach status {status}")


def recap(output):
    """{ok, changed, failed, ...} summed over the play recap's hosts."""
    totals = {}
    for line in output.splitlines():
        if re.match(r"^\S+\s+: ok=", line):
            for key, value in re.findall(r"(\w+)=(\d+)", line):
                totals[key] = totals.get(key, 0) + int(value)
    return totals


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    work = tmp_path_factory.mktemp("vm-farm")
    net = free_port()
    # The manager listens on the farm network's socket, the node connects: boot it first.
    manager = VM(IMAGE, work, 1, ("listen", net), memory=2048, forwards=(8443,))
    node = VM(IMAGE, work, 2, ("connect", net), memory=1536)
    vms = [manager, node]
    try:
        started = time.monotonic()
        manager.boot()
        node.boot()
        for vm in vms:
            vm.wait_running()
        say(f"two VMs booted and running: {time.monotonic() - started:.0f} s")
        for vm in vms:
            vm.copy_in(DEBS[0], "/root/")
        admin_token = "puli_" + secrets.token_urlsafe(32)
        password = "pw/vm@" + secrets.token_hex(6)
        inventory = work / "inventory.json"
        inventory.write_text(json.dumps(ansible_inventory(
            vms, {"mysql": ["vm1"], "manager": ["vm1"], "rendernodes": ["vm2"]}, manager.key)))
        extra = work / "extra.json"
        extra.write_text(json.dumps({
            "vault_puli_db_password": password,
            "vault_puli_admin_token": admin_token,
            "puli_install_method": "package",
            "puli_package": f"/root/{Path(DEBS[0]).name}",
            "rendernode_max_commands": 2,
            # PULI_VM_ISOLATION=cgroup2 shows what the systemd mode is for: the commands'
            # cgroups under the worker's unit, which then cannot restart during a render.
            "rendernode_isolation": os.environ.get("PULI_VM_ISOLATION", "auto"),
            "manager_settings": {"rn_timeout": f"{RN_TIMEOUT}s"},
        }))
        farm = Farm(manager, node, work, admin_token, password, inventory, extra)
        farm.first = farm.playbook("--diff")
        farm.ca.write_text(manager.ssh("cat /etc/puli/tls/ca.crt").stdout)
        yield farm
    finally:
        for vm in vms:
            try:
                vm.ssh("journalctl -b --no-pager -u 'puli-*' -n 300 > /root/journal.txt", check=False, timeout=30)
            except Exception:               # noqa: BLE001 -- a VM already gone says nothing
                pass
            vm.close()


def unit_state(vm, unit):
    out = vm.ssh(f"systemctl show -p ActiveState -p SubState -p StatusText -p NRestarts -p MainPID {unit}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_units_ready_verified_and_scored(farm):
    """Both daemons active (Type=notify: READY=1 came), their units clean under
    systemd-analyze verify in the guest, and their exposure scores."""
    assert recap(farm.first.stdout)["changed"] > 0
    for vm, unit in ((farm.manager, "puli-dispatcher"), (farm.node, "puli-worker")):
        state = unit_state(vm, unit)
        assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
        say(f"{vm.name} {unit}: active, STATUS={state['StatusText']!r}")
        fragment = vm.ssh(f"systemctl show -p FragmentPath --value {unit}").stdout.strip()
        verify = vm.ssh(f"systemd-analyze verify {fragment} 2>&1", check=False)
        assert verify.returncode == 0 and unit not in verify.stdout, verify.stdout
        security = vm.ssh(f"systemd-analyze security --no-pager {unit}").stdout
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", security)
        say(f"{vm.name} systemd-analyze security {unit}: {score.group(1)} {score.group(2)}")
        if unit == "puli-dispatcher":
            assert float(score.group(1)) < 2.0, security[-2000:]
    # The worker's commands go to its user's own systemd manager, kept by linger.
    assert farm.node.ssh("ls /var/lib/systemd/linger").stdout.split() == ["puli"]


def test_job_over_tls_with_a_token_reaches_done(farm):
    assert requests.get(farm.url + "/rendernodes", verify=str(farm.ca), timeout=30).status_code == 401
    node = wait_for(lambda: [rn for rn in farm.get("/rendernodes").json()["rendernodes"]
                             if rn["name"].startswith("vm2:")], 120, interval=1, what="vm2 registered")
    say(f"render nodes: {[rn['name'] for rn in node]}")
    started = time.monotonic()
    job, command = farm.submit("hello", "echo hello from $(hostname)")
    done = farm.reaches(command, DONE)
    say(f"a job submitted from the host reached DONE in {time.monotonic() - started:.0f} s")
    assert done["attempt"] == 1
    farm.done_job = job
    # The dispatcher's STATUS= follows the farm, not only the READY moment.
    status = wait_for(lambda: (lambda t: t if t.startswith("1 jobs") else None)(
        unit_state(farm.manager, "puli-dispatcher")["StatusText"]), 60, interval=1, what="STATUS= refreshed")
    assert "1/1 render nodes up" in status, status
    # The web monitor behind nginx's TLS: its cookies are Secure (gunicorn trusts nginx's
    # X-Forwarded-Proto from loopback), and its job page shows the job.
    signin = requests.get(farm.url + "/ui/signin", verify=str(farm.ca), timeout=30)
    assert signin.status_code == 200 and "Secure" in signin.headers["Set-Cookie"], signin.headers
    assert "hello" in farm.get(f"/ui/jobs/{job}").text


def test_second_playbook_changes_nothing_and_check_diff_is_clean(farm):
    second = farm.playbook()
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
    check = farm.playbook("--check", "--diff")
    assert recap(check.stdout)["changed"] == 0, check.stdout[-6000:]
    worker_token = farm.node.ssh("cat /etc/puli/worker.token").stdout.strip()
    for output in farm.outputs:
        for name, secret in (("the database password", farm.password), ("the admin token", farm.admin_token),
                             ("the worker token", worker_token)):
            assert secret not in output, f"{name} is in a playbook's output"


def gated(farm, name):
    """A job whose command runs until the host touches its gate file on the node; it counts its
    starts in a file beside."""
    tag = f"{name}-{uuid.uuid4().hex[:8]}"
    job, command = farm.submit(name, f"echo start >> /tmp/{tag}.runs; "
                                     f"while [ ! -e /tmp/{tag}.gate ]; do sleep 0.5; done; echo done")
    farm.reaches(command, RUNNING)
    wait_for(lambda: farm.node.ssh(f"test -e /tmp/{tag}.runs", check=False).returncode == 0, 120, interval=1,
             what="the command to start")
    return tag, command


def render_goes_on(farm, tag, command):
    assert farm.node.ssh(f"pgrep -u puli -f '{tag}.gate'", check=False).returncode == 0, \
        "the render did not survive"
    farm.node.ssh(f"touch /tmp/{tag}.gate")
    done = farm.reaches(command, DONE)
    assert done["attempt"] == 1, done
    assert farm.node.ssh(f"cat /tmp/{tag}.runs").stdout.split() == ["start"], "the command ran twice"


def worker_back(farm, since):
    state = wait_for(lambda: (lambda s: s if s["ActiveState"] == "active" else None)(
        unit_state(farm.node, "puli-worker")), 120, interval=1, what="puli-worker active again")
    failures = farm.node.ssh(f"journalctl -u puli-worker --since @{since} --no-pager | "
                             f"grep -c 'Failed at step CGROUP' || true").stdout.strip()
    assert failures == "0", farm.node.ssh(f"journalctl -u puli-worker --since @{since} --no-pager").stdout[-3000:]
    return state


def test_worker_restart_keeps_the_render(farm):
    tag, command = gated(farm, "restart")
    uid = farm.node.ssh("id -u puli").stdout.strip()
    say("the worker's layout, as systemd-cgls shows it during a render:\n" + farm.node.ssh(
        f"systemd-cgls --no-pager -u puli-worker.service; "
        f"systemd-cgls --no-pager /user.slice/user-{uid}.slice/user@{uid}.service").stdout)
    since = int(farm.node.ssh("date +%s").stdout)
    started = time.monotonic()
    farm.node.ssh("systemctl restart puli-worker")
    worker_back(farm, since)
    say(f"systemctl restart puli-worker during a render: active again in {time.monotonic() - started:.0f} s")
    render_goes_on(farm, tag, command)


def test_package_upgrade_keeps_the_render(farm):
    farm.node.copy_in(DEBS[1], "/root/")
    tag, command = gated(farm, "upgrade")
    since = int(farm.node.ssh("date +%s").stdout)
    started = time.monotonic()
    farm.node.ssh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/{Path(DEBS[1]).name}")
    version = farm.node.ssh("dpkg-query -W -f '${Version}' puli").stdout
    assert version.endswith("-2"), version
    worker_back(farm, since)
    say(f"apt-get install of puli {version} during a render: worker active in {time.monotonic() - started:.0f} s")
    render_goes_on(farm, tag, command)


def test_a_command_over_its_memory_limit_is_oom_killed_and_reported(farm):
    job, command = farm.submit("greedy", "python3 -c \"b = b'x' * (400 * 1024 * 1024)\"", ramUse=100)
    ended = farm.reaches(command, ERROR)
    assert "out of memory" in ended["message"], ended


def test_a_hup_neither_stops_nor_reloads_the_dispatcher(farm):
    """What `kill -HUP` or a log rotation hook sends: logged, and the same process serves on."""
    vm = farm.manager
    seen = ("(journalctl -u puli-dispatcher --no-pager; cat /var/log/puli/dispatcher/*.log 2>/dev/null) "
            "| grep -c 'SIGHUP: nothing to reload' || true")
    logged = int(vm.ssh(seen).stdout)
    before = unit_state(vm, "puli-dispatcher")
    vm.ssh("systemctl kill -s HUP puli-dispatcher")
    wait_for(lambda: int(vm.ssh(seen).stdout) > logged, 60, interval=1, what="the dispatcher to log the HUP")
    after = unit_state(vm, "puli-dispatcher")
    fields = ("ActiveState", "SubState", "MainPID", "NRestarts")
    assert [after[f] for f in fields] == ["active", "running", before["MainPID"], before["NRestarts"]], after
    assert farm.get("/health").status_code == 200


def test_dispatcher_watchdog_and_restart_lose_no_job(farm):
    vm = farm.manager
    vm.ssh("mkdir -p /etc/systemd/system/puli-dispatcher.service.d && printf '[Service]\\nWatchdogSec=15s\\n' "
           "> /etc/systemd/system/puli-dispatcher.service.d/watchdog.conf && systemctl daemon-reload && "
           "systemctl restart puli-dispatcher")
    jobs = set(farm.get("/nodes/").json()["children"])
    assert farm.done_job in jobs

    def restarted(before):
        def check():
            state = unit_state(vm, "puli-dispatcher")
            if int(state["NRestarts"]) > before and state["ActiveState"] == "active":
                try:
                    return farm.get("/health").status_code == 200
                except requests.RequestException:
                    return False
            return False
        return check

    for how, signal_ in (("SIGSTOP: the watchdog", "SIGSTOP"), ("SIGKILL: Restart=", "SIGKILL")):
        before = int(unit_state(vm, "puli-dispatcher")["NRestarts"])
        started = time.monotonic()
        vm.ssh(f"systemctl kill -s {signal_} puli-dispatcher")
        wait_for(restarted(before), 300, interval=1, what=f"the dispatcher back after {signal_}")
        say(f"{how} brought the dispatcher back in {time.monotonic() - started:.0f} s")
        assert set(farm.get("/nodes/").json()["children"]) >= jobs
        assert farm.get(f"/nodes/{farm.done_job}").json()["status"] == NodeStatus.DONE
    assert "watchdog" in vm.ssh("journalctl -u puli-dispatcher --no-pager | grep -i watchdog | tail -3").stdout


def test_a_render_node_powered_off_times_its_command_out(farm):
    tag, command = gated(farm, "poweroff")
    started = time.monotonic()
    farm.node.power_off()
    farm.reaches(command, TIMEOUT, timeout=RN_TIMEOUT + 120)
    took = time.monotonic() - started
    say(f"render node powered off: its command TIMEOUT after {took:.0f} s (rn_timeout {RN_TIMEOUT} s)")
    # The liveness check runs every few seconds: rn_timeout plus one of its periods at most.
    assert took <= RN_TIMEOUT + 30, took
    assert farm.get("/health").status_code == 200
    job, _ = farm.submit("after", "echo after")
    assert farm.get(f"/nodes/{job}").status_code == 200
