"""The supervisor of a command's process tree: it decides when the tree must stop (a stop order,
the max run time, processes left behind by a leader that exited) and escalates until it is gone:
SIGTERM, SIGKILL once the kill grace is over or at a second stop order, then giving up on
processes that even SIGKILL does not end."""
import os
import signal
import time

UNKILLABLE_WAIT = 10.0      # after SIGKILL, how long to wait for processes stuck in the kernel
KILLED_POLL = 0.05          # after SIGKILL the end is due any moment: look for it this often
STOP_REQUESTED = "stop requested"
TIMED_OUT = "timed out"

# What check() found of the tree.
ALIVE = "alive"             # still running (or being stopped): go on
GONE = "gone"               # the leader and every child are reaped
ABANDONED = "abandoned"     # still there UNKILLABLE_WAIT after SIGKILL: given up on


class Supervisor:
    """Supervises each step's process in turn (watch()); the loop calls check() at every wakeup
    and sleeps no longer than wakeup() says."""

    def __init__(self, signals, log, kill_grace, max_run_time):
        self.signals = signals
        self.log = log
        self.kill_grace = kill_grace
        self.max_run_time = max_run_time
        # From the watcher's start, across every step: the whole command has max_run_time.
        self.deadline = time.monotonic() + max_run_time if max_run_time > 0 else None
        self.stop_reason = None         # STOP_REQUESTED or TIMED_OUT, once the command must stop
        self.process = None             # the current step's process
        self.children_left = False      # at the last reap, some child (of ours, a subreaper) ran
        # The escalation of the current process's tree: monotonic times.
        self.term_sent_at = None
        self.kill_at = None
        self.killed_at = None

    def watch(self, process):
        """Supervise the next step's process: its escalation starts afresh."""
        self.process = process
        self.term_sent_at = self.kill_at = self.killed_at = None

    def stopped_before_start(self):
        """Whether a stop order came before the next step started: then it does not start."""
        if not self.signals.stops:
            return False
        self.stop_reason = STOP_REQUESTED
        return True

    def check(self, now):
        """Act on stop orders, the deadline and what was reaped: ALIVE, GONE or ABANDONED."""
        if self.signals.stops and self.stop_reason is None:
            self.stop_reason = STOP_REQUESTED
            self.log.note("stop requested: killing the command")
        if self.deadline is not None and now >= self.deadline and self.stop_reason is None:
            self.stop_reason = TIMED_OUT
            self.log.note(f"max run time of {self.max_run_time:g} s exceeded: killing the command")
        self.reap()
        if self.process.returncode is not None and not self.children_left:
            return GONE
        if self.term_sent_at is None and (self.stop_reason or self.process.returncode is not None):
            if not self.stop_reason:
                self.log.note("the command exited but left processes behind: stopping them")
            self.process.signal(signal.SIGTERM)
            self.term_sent_at, self.kill_at = now, now + self.kill_grace
        if self.killed_at is None and self.kill_at is not None and (now >= self.kill_at or self.signals.stops >= 2):
            self.log.note("sending SIGKILL to the command's processes")
            self.process.kill()
            self.killed_at = now
        if self.killed_at is not None and now >= self.killed_at + UNKILLABLE_WAIT:
            self.log.note(f"processes still alive {UNKILLABLE_WAIT:g} s after SIGKILL: giving up on them")
            return ABANDONED
        return ALIVE

    def wakeup(self, now):
        """The monotonic time by which check() has something to do, or None."""
        wakeups = []
        if self.stop_reason is None and self.deadline is not None:
            wakeups.append(self.deadline)
        if self.killed_at is None and self.kill_at is not None:
            wakeups.append(self.kill_at)
        elif self.killed_at is not None:
            wakeups.append(min(now + KILLED_POLL, self.killed_at + UNKILLABLE_WAIT))
        return min(wakeups) if wakeups else None

    def kill(self):
        """SIGKILL the tree now if its leader still runs: the watcher itself is failing."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def reap(self):
        """Reap every exited child (the watcher, a subreaper, also adopts the command's
        orphans); note the leader's exit and whether any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children_left = False
                return
            if pid == 0:
                self.children_left = True
                return
            if pid == self.process.pid:
                self.process.exited(status)
