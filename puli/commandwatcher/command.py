"""One process of a command: started in its own process group (and cgroup), its output and
runner reports readable without blocking, its whole tree signalled at once."""
import ctypes
import fcntl
import os
import signal
import subprocess

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024


def become_subreaper():
    """Make orphaned descendants (a renderer's daemonised helpers) our children, not init's, so
    that "no child left" means "the command's whole tree is gone", and we reap its zombies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _join_cgroup(procs_files):
    """Runs in the child between fork and exec: the command joins its cgroup before it runs,
    so that nothing it starts can escape the limits."""
    pid = str(os.getpid()).encode()
    for path in procs_files:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        except OSError as exc:
            # stderr is already the log pipe here: say why before failing the start.
            os.write(2, f"[puli] cannot join cgroup ({path}): {exc}\n".encode())
            raise


class CommandProcess:
    """A started process, leader of its own process group."""

    def __init__(self, argv, env, cgroup=None, reports=False, umask=-1):
        """`umask`: the command's (-1: the watcher's own)."""
        self.cgroup = cgroup
        output_read, output_write = os.pipe()
        pass_fds = ()
        self.reports_fd = None
        if reports:
            self.reports_fd, reports_write = os.pipe()
            pass_fds = (reports_write,)
            env = {**env, "PULI_REPORT_FD": str(reports_write)}
        procs_files = cgroup.procs_files() if cgroup is not None else None     # before fork, not in the child
        try:
            # No preexec_fn without a cgroup: subprocess can then use vfork, which starts faster.
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write, env=env,
                process_group=0, pass_fds=pass_fds, umask=umask,
                preexec_fn=(lambda: _join_cgroup(procs_files)) if procs_files else None)
        except BaseException:
            os.close(output_read)
            if reports:
                os.close(self.reports_fd)
            raise
        finally:
            os.close(output_write)
            if reports:
                os.close(reports_write)
        self.pid = self.pgid = self.popen.pid
        self.output_fd = output_read
        os.set_blocking(self.output_fd, False)
        try:
            # The watcher reads in batches: give a chatty command room so that it never waits.
            fcntl.fcntl(self.output_fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass                    # above /proc/sys/fs/pipe-max-size: the default 64 KiB will do
        if self.reports_fd is not None:
            os.set_blocking(self.reports_fd, False)
        self.returncode = None

    def exited(self, status):
        """Record the wait status of the leader (reaped by the watcher's reaping loop)."""
        self.returncode = os.waitstatus_to_exitcode(status)
        # Popen did not reap it itself: tell it, so it does not try again or warn.
        self.popen.returncode = self.returncode

    def signal(self, signum):
        """Send `signum` to the whole tree: the process group, every process in the cgroup, and
        every descendant of the watcher (the watcher starts nothing but the command, and as a
        subreaper it inherits the processes that left the group with setsid)."""
        if self.cgroup is not None:
            self.cgroup.signal(signum)
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass                            # ESRCH: the group is gone already
        for pid in descendants():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL the whole tree (cgroup.kill where there is one)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        self.signal(signal.SIGKILL)

    def close(self):
        for fd in (self.output_fd, self.reports_fd):
            if fd is not None:
                os.close(fd)


def descendants(pid=None):
    """Pids of all descendants of `pid` (default: this process), read from /proc children files."""
    found, queue = [], [pid or os.getpid()]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(child) for child in f.read().split()]
            except FileNotFoundError:
                continue
            found.extend(children)
            queue.extend(children)
    return found
