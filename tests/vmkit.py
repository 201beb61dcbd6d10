"""Debian 12 VMs under qemu for the VM check (tests/test_vm.py, scripts/vm-check): booted from
the image scripts/vm-image builds, each on a throwaway overlay, reached over ssh through a
forwarded loopback port, joined to each other by a private VM-to-VM network (qemu's socket
netdev over loopback: 192.168.77.0/24 inside, nothing outside the machine).

KVM where the CPU has vmx/svm, TCG otherwise (the guest is then ~10-20x slower: every
deadline in the check is generous). Every VM is killed and its overlay removed by close(), also when the
check fails.
"""
import os
import signal
import socket
import subprocess
from pathlib import Path

from processes import wait_for

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=6")
USER_MAC = "52:54:00:12:34:56"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerator():
    flags = Path("/proc/cpuinfo").read_text()
    if os.access("/dev/kvm", os.W_OK) and (" vmx" in flags or " svm" in flags):
        return ["-accel", "kvm", "-cpu", "host"]
    # The x86-64 baseline CPU, not "max": glibc and Python then pick no AVX code paths, which
    # TCG emulates slowly (measured here: Python's imports 2.7x, a loop 1.4x faster).
    return ["-accel", "tcg,thread=multi", "-cpu", "qemu64"]


class VM:
    """One guest: vmN (192.168.77.1N on the farm network), ssh on a loopback port."""

    def __init__(self, image, work, number, farm_net, memory=1536, cpus=2, forwards=()):
        self.image = Path(image)
        self.name = f"vm{number}"
        self.number = number
        self.address = f"192.168.77.1{number}"
        self.dir = Path(work) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ssh_port = free_port()
        self.forwards = {guest: free_port() for guest in forwards}      # guest port: host port
        self.farm_net = farm_net                                        # ("listen"|"connect", port)
        self.memory, self.cpus = memory, cpus
        self.pid = None

    @property
    def key(self):
        return str(self.image / "id_ed25519")

    def boot(self):
        disk = self.dir / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image / "image.raw"),
                        "-F", "raw", str(disk)], check=True)
        forwards = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in self.forwards.items())
        how, port = self.farm_net
        subprocess.run([
            "qemu-system-x86_64", *accelerator(), "-m", str(self.memory), "-smp", str(self.cpus),
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", f"root=/dev/vda rw console=ttyS0 panic=-1 systemd.hostname={self.name}",
            # A throwaway overlay: its flushes need not reach the host's disk (dpkg syncs a lot).
            "-drive", f"file={disk},format=qcow2,if=virtio,cache=unsafe",
            "-netdev", f"user,id=host,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22{forwards}",
            "-device", f"virtio-net-pci,netdev=host,mac={USER_MAC}",
            "-netdev", f"socket,id=farm,{how}=127.0.0.1:{port}",
            "-device", f"virtio-net-pci,netdev=farm,mac=52:54:00:77:00:0{self.number}",
            "-display", "none", "-serial", f"file:{self.dir / 'serial.log'}",
            "-daemonize", "-pidfile", str(self.dir / "qemu.pid")], check=True)
        self.pid = int((self.dir / "qemu.pid").read_text())
        return self

    def wait_running(self, timeout=300):
        """Until systemd says the boot is over (running or degraded) and ssh answers."""
        def up():
            self.check_alive()
            done = self.ssh("systemctl is-system-running --wait", check=False, timeout=60)
            return done.stdout.strip() in ("running", "degraded")
        wait_for(up, timeout, interval=2, what=f"{self.name} to boot")
        return self

    def check_alive(self):
        if self.pid is None or not _alive(self.pid):
            tail = (self.dir / "serial.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.name}'s qemu is gone; its console said:\n{tail}")

    def ssh(self, command, check=True, timeout=300, input=None):
        """Run a shell command as root in the guest; the CompletedProcess (text)."""
        done = subprocess.run(["ssh", *SSH_OPTIONS, "-i", self.key, "-p", str(self.ssh_port), "root@127.0.0.1",
                               command], capture_output=True, text=True, timeout=timeout, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def copy_in(self, path, dest):
        subprocess.run(["scp", "-q", *SSH_OPTIONS, "-i", self.key, "-P", str(self.ssh_port), str(path),
                        f"root@127.0.0.1:{dest}"], check=True, timeout=300)

    def power_off(self):
        """Pull the plug: qemu killed, nothing said to the guest."""
        if self.pid is not None and _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            wait_for(lambda: not _alive(self.pid), 30, what=f"{self.name}'s qemu to end")

    def close(self):
        self.power_off()
        for leftover in ("disk.qcow2",):
            (self.dir / leftover).unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would still answer: qemu -daemonize is not our child.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def ansible_inventory(vms, groups, key):
    """An inventory (as a dict) naming the VMs by their names, reached over their ssh ports."""
    return {"all": {
        "hosts": {vm.name: {"ansible_host": "127.0.0.1", "ansible_port": vm.ssh_port} for vm in vms},
        "children": {group: {"hosts": {name: None for name in names}} for group, names in groups.items()},
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": key,
                 "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
                 "ansible_python_interpreter": "/usr/bin/python3"}}}

