"""A command's log file: its output and the watcher's own `[puli]` lines, rotated by size."""
import logging
import os
import time

from puli.commandwatcher import private

BACKUPS = 2


class CommandLog:
    """Appends bytes to `path`, keeping each file under `max_bytes` by rotating at line ends to
    `path.1`, `path.2` (the oldest is dropped). A line longer than a whole file is split."""

    def __init__(self, path, max_bytes, backups=BACKUPS):
        self.path = os.fspath(path)
        self.max_bytes = max(1024, int(max_bytes))
        self.backups = backups
        private.make_dirs(os.path.dirname(os.path.abspath(self.path)), private.LOG_DIR)
        self._open()

    def _open(self):
        # Unbuffered: every write is one write(2), so readers (the worker's log route) see whole
        # lines as soon as the command printed them. Its output may hold secrets: private.
        fd = private.open_private(self.path, os.O_WRONLY | os.O_APPEND, private.LOG_FILE)
        self.file = open(fd, "ab", buffering=0)
        private.tighten(self.path, private.LOG_FILE)   # a log of an earlier run, made by an older version
        self.size = self.file.seek(0, os.SEEK_END)

    def rotate(self):
        self.file.close()
        for index in range(self.backups, 0, -1):
            source = self.path if index == 1 else f"{self.path}.{index - 1}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index}")
        self._open()

    def write(self, data):
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self.file.write(data)
                self.size += len(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1
            if cut == 0 and self.size == 0:
                cut = room
            if cut:
                self.file.write(data[:cut])
                data = data[cut:]
            self.rotate()

    def note(self, text):
        """One line of the watcher's own, told apart from the command's output by its prefix."""
        self.write(f"[puli] {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode("utf-8", "replace"))

    def close(self):
        self.file.close()


class LogHandler(logging.Handler):
    """Routes the watcher's library logging (e.g. isolation warnings) into the command's log."""

    def __init__(self, command_log):
        super().__init__(logging.INFO)
        self.command_log = command_log

    def emit(self, record):
        self.command_log.note(f"{record.levelname.lower()}: {record.getMessage()}")
