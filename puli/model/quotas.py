"""What one submission may make and what the farm and each user may hold unfinished.

Every command costs the dispatcher memory (about 600 bytes) for as long as its job is not
archived, and every unfinished one costs dispatch passes: without limits one script's loop, or
one mistyped frame range, would fill the dispatcher. Graph sizes are checked while the graph
is parsed (graph.py, counting before expanding); the queues here, under the farm lock, against
what the farm holds plus the submissions being committed.
"""
from dataclasses import dataclass

from .errors import QueueFull
from .status import CommandStatus as CS

_FINISHED = (CS.DONE, CS.CANCELED)


@dataclass(frozen=True)
class Quotas:
    graph_commands: int = 1_000_000
    graph_tasks: int = 100_000
    queued_commands: int = 3_000_000
    queued_commands_per_user: int = 1_000_000
    queued_jobs_per_user: int = 10_000
    stats_bytes: int = 64 * 1024


def unfinished(counts):
    """Commands of a node's counters that are not DONE or CANCELED."""
    return sum(counts) - sum(counts[s] for s in _FINISHED)


class Pending:
    """Submissions checked but not yet published (their commit to the database runs outside
    the farm lock): counted against the queues like published ones."""

    def __init__(self):
        self.commands = 0
        self.by_user = {}               # user -> [jobs, commands]

    def add(self, user, commands, sign=1):
        self.commands += sign * commands
        mine = self.by_user.setdefault(user, [0, 0])
        mine[0] += sign
        mine[1] += sign * commands
        if mine == [0, 0]:
            del self.by_user[user]

    def remove(self, user, commands):
        self.add(user, commands, -1)


def check_queues(farm, quotas, pending, user, commands):
    """Under the lock: QueueFull unless a job of `user` with `commands` more fits every queue."""
    total = unfinished(farm.root.counts) + pending.commands
    if total + commands > quotas.queued_commands:
        raise QueueFull(f"the farm holds {total} unfinished commands; with these {commands} it would pass "
                        f"its limit of {quotas.queued_commands} (max_queued_commands): wait for work to end")
    jobs = mine = 0
    for job in farm.root.children:
        if job.user == user:
            left = unfinished(job.counts)
            if left:
                jobs += 1
                mine += left
    pending_jobs, pending_commands = pending.by_user.get(user, (0, 0))
    jobs, mine = jobs + pending_jobs, mine + pending_commands
    if jobs + 1 > quotas.queued_jobs_per_user:
        raise QueueFull(f"{user or 'this user'} has {jobs} unfinished jobs, the most one user may have "
                        f"(max_queued_jobs_per_user: {quotas.queued_jobs_per_user})")
    if mine + commands > quotas.queued_commands_per_user:
        raise QueueFull(f"{user or 'this user'} has {mine} unfinished commands; with these {commands} "
                        f"it would pass the limit of {quotas.queued_commands_per_user} per user "
                        "(max_queued_commands_per_user)")
