"""The sweep of what ended commands leave on the node: their logs, deleted once older than
log_retention, and the oldest first while together they take more than logs_max_total.

A command's log is ``<log_dir>/commands/<task id>/<command id>.log``, with its rotated parts
``.log.1`` and ``.log.2``; a file's age is its last write. A run the worker still holds (running,
or ended and waiting for the dispatcher to commit its end) keeps its files: the worker's
``held()`` says which under its lock, and each deletion is decided under that lock, so no run
can start writing a log between the check and the unlink. Its run directory
(``<data_dir>/commands/<id>``) goes with the run itself (watchers.py); only one nothing holds
any more (a cleanup that failed) is swept here, as old as the logs.

One walk of the log tree (a scandir and a stat a file) at start, then every SWEEP_INTERVAL, in
a thread of its own: at 100,000 logs that is well under a second of one core every 5 minutes,
and the worker's loop never waits on it.
"""
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger("puli.worker.sweep")

SWEEP_INTERVAL = 300.0
_LOG_NAME = re.compile(r"^(\d+\.log)(?:\.\d+)?$")


class Sweeper:
    def __init__(self, log_dir, commands_dir, retention, max_total, held):
        """`held()`: a context manager that holds off every start and end of a run while it is
        entered, and gives (log paths, run directories) of the runs the worker holds."""
        self.logs_dir = Path(os.path.abspath(log_dir)) / "commands"
        self.commands_dir = Path(os.path.abspath(commands_dir))
        self.retention = retention
        self.max_total = max_total
        self.held = held
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="puli-sweep", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()

    def _run(self):
        while not self.stopping.is_set():
            try:
                self.sweep()
            except Exception:       # a sweep failing must not end the sweeps: say why, go on
                log.exception("the sweep of the ended commands' logs failed")
            self.stopping.wait(SWEEP_INTERVAL)

    def sweep(self, now=None):
        """One sweep; what it removed, as (path, size, why, kind) tuples: why "retention" or
        "total", kind "log" or "dir"."""
        now = time.time() if now is None else now
        with self.held() as (logs, dirs):
            held = _held_names(logs, dirs)
        found = [entry for entry in self._candidates() if not _is_held(entry[2], held)]
        found.sort()                                        # the oldest first
        cutoff = now - self.retention
        total = sum(size for _, size, _, _ in found)
        removed = []
        for mtime, size, path, kind in found:
            if mtime < cutoff:
                why = "retention"
            elif total > self.max_total:
                why = "total"
            else:
                continue
            if self._remove(path, kind):
                removed.append((path, size, why, kind))
                total -= size
        self._remove_empty_task_dirs({path.parent for path, _, _, kind in removed if kind == "log"})
        if removed:
            log.info("%s; %s of ended commands' logs left", _summary(removed, self.retention, self.max_total),
                     _size(total))
        return removed

    def _candidates(self):
        """(mtime, size, path, kind) of every command log file and run directory found."""
        for task in _scan(self.logs_dir):
            if not task.is_dir(follow_symlinks=False):
                continue
            for entry in _scan(task.path):
                if _LOG_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    info = _stat(entry)
                    if info is not None:
                        yield info.st_mtime, info.st_size, Path(entry.path), "log"
        for entry in _scan(self.commands_dir):
            if entry.is_dir(follow_symlinks=False):
                mtime, size = _dir_figures(entry)
                yield mtime, size, Path(entry.path), "dir"

    def _remove(self, path, kind):
        """Remove one candidate unless a run holds it by now; True once removed."""
        with self.held() as (logs, dirs):
            if _is_held(path, _held_names(logs, dirs)):
                return False
            try:
                if kind == "dir":
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                log.warning("cannot remove %s: %s", path, exc.strerror)
                return False
        return True

    def _remove_empty_task_dirs(self, task_dirs):
        for task_dir in task_dirs:
            with self.held() as (logs, _):
                if any(Path(os.path.abspath(p)).parent == task_dir for p in logs):
                    continue                    # a run of the task is about to write there
                try:
                    task_dir.rmdir()
                except OSError:
                    pass                        # not empty: other commands of the task


def _held_names(logs, dirs):
    return ({os.path.abspath(p) for p in logs if p}, {os.path.abspath(d) for d in dirs})


def _is_held(path, held):
    logs, dirs = held
    path = str(path)
    match = _LOG_NAME.match(os.path.basename(path))
    if match:
        return os.path.join(os.path.dirname(path), match.group(1)) in logs
    return path in dirs


def _scan(directory):
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stat(entry):
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None


def _dir_figures(entry):
    """A run directory's last change and size: the newest and the sum of its files'."""
    info = _stat(entry)
    mtime, size = (info.st_mtime if info else 0.0), 0
    for inner in _scan(entry.path):
        inner_info = _stat(inner) if inner.is_file(follow_symlinks=False) else None
        if inner_info is not None:
            mtime, size = max(mtime, inner_info.st_mtime), size + inner_info.st_size
    return mtime, size


def _summary(removed, retention, max_total):
    parts = []
    for why, label in (("retention", f"older than log_retention ({_duration(retention)})"),
                       ("total", f"over logs_max_total ({_size(max_total)})")):
        these = [(size, kind) for _, size, reason, kind in removed if reason == why]
        if not these:
            continue
        logs = sum(1 for _, kind in these if kind == "log")
        dirs = len(these) - logs
        what = " and ".join(text for count, text in ((logs, f"{logs} log file(s)"),
                                                     (dirs, f"{dirs} leftover run director(ies)")) if count)
        parts.append(f"{what}, {_size(sum(size for size, _ in these))}, {label}")
    return "removed " + "; ".join(parts)


def _size(count):
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}"


def _duration(seconds):
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{seconds // length:g}{unit}"
    return f"{seconds:g}s"
