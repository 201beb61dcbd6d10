"""assignment.json, the worker's order to the watcher: read, its numbers checked, and the
environment it gives the command."""
import json
import os

from puli.commandwatcher.runner import BUILTIN

DEFAULT_RUNNER = BUILTIN + "DefaultCommandRunner"
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KILL_GRACE = 10.0


def read_fields(path):
    """assignment.json's object; ValueError when it is not an object with an 'id'."""
    with open(path) as f:
        fields = json.load(f)
    if not isinstance(fields, dict) or "id" not in fields:
        raise ValueError("assignment.json is not an object with an 'id'")
    return fields


class Assignment:
    """What the watcher takes from assignment.json's fields; ValueError names a bad number."""

    def __init__(self, fields):
        self.fields = fields                        # as the worker wrote them
        self.id = fields["id"]
        self.number = fields.get("assignment")      # the dispatcher's fence for this run
        self.attempt = fields.get("attempt")
        self.runner = fields.get("runner") or DEFAULT_RUNNER
        self.arguments = fields.get("arguments")
        self.parser = fields.get("parser")
        self.cgroup = fields.get("cgroup")          # the worker's description of the command's cgroup
        # Or, when the watcher runs in a unit of its own (isolation systemd): the limits of the
        # cgroup it makes for its command inside its unit's.
        self.cgroup_limits = fields.get("cgroupLimits")
        self.log_path = fields.get("logPath")
        self.kill_grace = _number(fields, "killGrace", DEFAULT_KILL_GRACE)
        self.max_run_time = _number(fields, "maxRunTime", 0)
        self.log_max_bytes = int(_number(fields, "logMaxBytes", 0) or DEFAULT_LOG_MAX_BYTES)
        # The command's umask, not the watcher's (which keeps its own files private); an older
        # worker sends none: the command then inherits the watcher's.
        umask = _number(fields, "umask", -1)
        if umask > 0o777 or umask != int(umask):
            raise ValueError(f"umask must be a mode from 0 to 0o777, got {umask!r}")
        self.umask = int(umask)

    def command_env(self, log_path):
        """The command's environment: the worker's (the watcher's own with an older worker), the
        task's own, then the PULI_* variables, which only the watcher sets (the task cannot fake them)."""
        a = self.fields
        base = a.get("baseEnvironment")
        env = {str(k): str(v) for k, v in base.items()} if isinstance(base, dict) else dict(os.environ)
        env.update({str(k): str(v) for k, v in (a.get("environment") or {}).items() if v is not None})
        env.update({
            "PULI_USER": str(a.get("user") or ""),
            "PULI_COMMAND_ID": str(a["id"]),
            "PULI_TASK_ID": str(a.get("taskId", "")),
            "PULI_TASK_NAME": str(a.get("taskName", "")),
            "PULI_JOB_ID": str(a.get("jobId", "")),
            "PULI_ALLOCATED_CORES": str(a.get("cores", "")),
            "PULI_ALLOCATED_MEMORY": str(a.get("ramUse", "")),
            "PULI_LOG": log_path,
            "PULI_ATTEMPT": str(a.get("attempt", "")),
        })
        return env


def _number(fields, key, default):
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    return value
