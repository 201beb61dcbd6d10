"""Commands in units of their own: every commandwatcher is started as a transient service of
the worker user's systemd manager (``systemd-run --user``), with a delegated cgroup of its own
in which it makes its command's cgroup (memory, CPU and pids limits, OOM reports, cgroup.kill).

Why not under the worker's own unit: cgroup v2 forbids processes in a cgroup that hands
controllers to its children, and systemd before 254 (Debian 12 has 252; ``DelegateSubgroup=``
came with 254) always starts a unit's new main process in the unit's top cgroup. A worker that
had made command cgroups under its own unit could not be started again while they ran
(``status=219/CGROUP``): a restart or an upgrade during a render failed until the render ended.
The user manager (``user@<uid>.service``, kept running by ``loginctl enable-linger``, which the
worker's unit asks for) is a unit of its own that a worker restart or a package upgrade never
touches, and it runs as the worker's user: the worker gains no privilege from it.
"""
import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger("puli.worker.units")

SYSTEMD_RUN = "systemd-run"
SYSTEMCTL = "systemctl"
# Linger starts the user manager at boot and at `loginctl enable-linger`; it may still be coming.
MANAGER_WAIT = 60.0
CALL_TIMEOUT = 60.0


def unit_name(command_id, number):
    return f"puli-command-{int(command_id)}-{int(number)}.service"


class UserManager:
    """The worker user's systemd manager: where it listens, what it delegates, how to start,
    query and kill a watcher's unit there."""

    def __init__(self, uid=None, cgroup_root="/sys/fs/cgroup"):
        self.uid = os.getuid() if uid is None else uid
        self.runtime_dir = Path(f"/run/user/{self.uid}")
        self.cgroup = Path(cgroup_root) / f"user.slice/user-{self.uid}.slice/user@{self.uid}.service"
        self.env = {"XDG_RUNTIME_DIR": str(self.runtime_dir), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LANG": "C.UTF-8"}

    @classmethod
    def find(cls, cgroup_root="/sys/fs/cgroup", wait=MANAGER_WAIT):
        """The user manager, when this host has one for us (systemd is PID 1, systemd-run is
        installed and linger is on or the manager already runs); None otherwise. Waits up to
        `wait` seconds for a manager that linger is still starting."""
        if not Path("/run/systemd/system").is_dir() or shutil.which(SYSTEMD_RUN) is None:
            return None
        manager = cls(cgroup_root=cgroup_root)
        try:
            user = pwd.getpwuid(manager.uid).pw_name
        except KeyError:
            return None
        lingering = Path("/var/lib/systemd/linger", user).exists()
        deadline = time.monotonic() + (wait if lingering else 0)
        while not manager.running():
            if time.monotonic() >= deadline:
                if lingering:
                    log.warning("linger is on for %s, but its systemd manager did not start within %g s",
                                user, wait)
                return None
            time.sleep(0.5)
        return manager

    def running(self):
        return (self.runtime_dir / "systemd" / "private").is_socket() and self.cgroup.is_dir()

    def controllers(self):
        try:
            return (self.cgroup / "cgroup.controllers").read_text().split()
        except OSError:
            return []

    def start(self, unit, argv, directory, stderr_path, stop_timeout):
        """Start `argv` as the transient service `unit`; its main pid. Raises OSError."""
        call = [
            SYSTEMD_RUN, "--user", "--quiet", "--collect", "--no-ask-password", "--service-type=exec",
            f"--unit={unit}", f"--description=Puli commandwatcher {directory.name}",
            f"--working-directory={directory}",
            # The watcher makes its command's cgroup inside its own.
            "--property=Delegate=yes",
            # An OOM kill of the command is the watcher's to report, not a reason to stop it.
            "--property=OOMPolicy=continue",
            "--property=UMask=0077",
            "--property=StandardOutput=null",
            f"--property=StandardError=append:{stderr_path}",
            # Stopped (`systemctl --user stop`, a shutdown): SIGTERM, the watcher cancels its
            # command within its kill grace; whatever is left then goes with the whole cgroup.
            f"--property=TimeoutStopSec={max(1, int(stop_timeout))}s",
            "--", *argv]
        self._call(call)
        pid = self._call([SYSTEMCTL, "--user", "show", "--property=MainPID", "--value", unit]).strip()
        if not pid.isdigit() or int(pid) == 0:
            raise OSError(f"{unit} started, but has no main process (it ended at once?)")
        return int(pid)

    def kill(self, unit):
        """SIGKILL whatever is left in the unit's cgroup; quiet when the unit is already gone."""
        try:
            self._call([SYSTEMCTL, "--user", "kill", "--signal=SIGKILL", unit])
        except OSError as exc:
            log.debug("cannot kill %s: %s", unit, exc)

    def _call(self, argv):
        try:
            done = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"{argv[0]} did not answer within {CALL_TIMEOUT:g} s") from exc
        if done.returncode != 0:
            raise OSError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout


class UnitIsolation:
    """The worker's isolation in this mode: what detect_isolation() returns, for the node's
    system information and for Watchers.spawn()."""

    mode = "systemd"

    def __init__(self, manager):
        self.manager = manager

    def __repr__(self):
        return f"Isolation(systemd: {self.manager.cgroup})"

    def describe(self):
        return {"mode": self.mode, "controllers": self.manager.controllers(), "cgroupKill": True}
