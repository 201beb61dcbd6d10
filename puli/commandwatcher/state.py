"""state.json, the watcher's report to the worker: replaced atomically, at most a few times a
second while the command runs, and at once for the final state."""
import json
import os
import time

from puli.model.status import CommandStatus

RUNNING = int(CommandStatus.RUNNING)
DONE = int(CommandStatus.DONE)
ERROR = int(CommandStatus.ERROR)
CANCELED = int(CommandStatus.CANCELED)
# The statuses a watcher's run ends with (not the model's FINAL: a watcher never reports TIMEOUT,
# its timeout is an ERROR with timedOut). The worker reads them from here too.
RUN_ENDS = frozenset({DONE, ERROR, CANCELED})

MIN_INTERVAL = 0.5     # seconds between two writes while running: the worker polls, no need for more


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

    def update(self, **fields):
        for key, value in fields.items():
            if self.state.get(key) != value:
                self.state[key] = value
                self.dirty = True

    def merge_stats(self, stats):
        self.update(stats={**self.state["stats"], **stats})

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
        with open(self.tmp, "wb") as out:
            out.write(data)
            if self.final:
                # The final state is what the worker reports upstream even after a crash of
                # the node: make it durable. Progress writes are not worth a disk sync.
                os.fsync(out.fileno())
        os.replace(self.tmp, self.path)
        self.dirty = False


def read(path):
    """The state a watcher wrote (for the worker and the tests); None when there is none yet."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
