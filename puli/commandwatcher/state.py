"""state.json, the watcher's report to the worker: replaced atomically, at most a few times a
second while the command runs, and at once for the final state."""
import json
import os
import time

from puli.commandwatcher.private import open_private
from puli.model.status import CommandStatus

RUNNING = int(CommandStatus.RUNNING)
DONE = int(CommandStatus.DONE)
ERROR = int(CommandStatus.ERROR)
CANCELED = int(CommandStatus.CANCELED)
# The statuses a watcher's run ends with (not the model's FINAL: a watcher never reports TIMEOUT,
# its timeout is an ERROR with timedOut). The worker reads them from here too.
RUN_ENDS = frozenset({DONE, ERROR, CANCELED})

MIN_INTERVAL = 0.5     # seconds between two writes while running: the worker polls, no need for more
# What a command's own stats (PULI_STATS lines, a runner's updateStats) may take together, as the
# compact JSON the dispatcher measures: it keeps 64 KiB per command by default (max_stats_bytes)
# and refuses a whole report with more, its final status with it. The rest of the 64 KiB is for
# the watcher's own figures, merged in at the end (about 150 bytes).
MAX_STATS_BYTES = 63 * 1024
MAX_STATS_DEPTH = 32   # the dispatcher's nesting limit for a JSON value (puli.model.limits)


class StateFile:
    """The state dict and its file. Change fields with update(); flush() writes when due."""

    def __init__(self, path, command_id, assignment):
        self.path = os.fspath(path)
        self.tmp = f"{self.path}.{os.getpid()}.tmp"
        self.state = {
            "id": command_id, "assignment": assignment, "status": RUNNING, "completion": 0.0,
            "message": "", "stats": {}, "watcherPid": os.getpid(), "commandPgid": None,
            "startTime": time.time(), "endTime": None, "exitCode": None, "signal": None,
            "oom": False, "timedOut": False, "seq": 0,
        }
        self.dirty = True
        self.written_at = float("-inf")    # monotonic time of the last write
        self.stats_refused = 0             # stats updates refused so far (merge_stats)

    def update(self, **fields):
        for key, value in fields.items():
            if self.state.get(key) != value:
                self.state[key] = value
                self.dirty = True

    def merge_stats(self, stats, bounded=True):
        """Merge `stats` into the state's. A `bounded` update (the command's own) that the
        dispatcher could not take is refused whole, the stats staying as they were: the reason
        then, else None. Unbounded: the watcher's figures, which always fit beside them."""
        merged = {**self.state["stats"], **stats}
        if bounded:
            reason = _unfit_stats(merged)
            if reason is not None:
                self.stats_refused += 1
                return reason
        self.update(stats=merged)
        return None

    @property
    def final(self):
        return self.state["status"] in RUN_ENDS

    def due(self):
        """Monotonic time at which flush() will write, or None when there is nothing to write."""
        if not self.dirty:
            return None
        return self.written_at + MIN_INTERVAL

    def flush(self, now=None, force=False):
        now = time.monotonic() if now is None else now
        if self.dirty and (force or now >= self.written_at + MIN_INTERVAL):
            self.write()
            self.written_at = now

    def write(self):
        self.state["seq"] += 1
        data = json.dumps(self.state).encode()
        with os.fdopen(open_private(self.tmp, os.O_WRONLY | os.O_TRUNC), "wb") as out:
            out.write(data)
            if self.final:
                # The final state is what the worker reports upstream even after a crash of
                # the node: make it durable. Progress writes are not worth a disk sync.
                os.fsync(out.fileno())
        os.replace(self.tmp, self.path)
        self.dirty = False


def _unfit_stats(stats):
    """Why the dispatcher would refuse these stats, or None."""
    stack = [(value, 2) for value in stats.values()]
    while stack:
        value, depth = stack.pop()
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        if inner and depth > MAX_STATS_DEPTH:
            return f"the stats would be nested more than {MAX_STATS_DEPTH} levels deep"
        stack.extend((v, depth + 1) for v in inner)
    try:
        size = len(json.dumps(stats, separators=(",", ":"), allow_nan=False))
    except ValueError:
        return "the stats hold NaN or infinity, which JSON cannot keep"
    if size > MAX_STATS_BYTES:
        return (f"the stats would take {size} bytes as JSON, more than the {MAX_STATS_BYTES} "
                "a command may report")
    return None


def read(path):
    """The state a watcher wrote (for the worker and the tests); None when there is none yet."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
