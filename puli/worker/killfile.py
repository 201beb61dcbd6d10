"""The killfile, Puli's switch for pausing a render node: its presence pauses the node, and its
content says what else to do.

    (absent)   resume: take new work
    "" / text  pause: take no new work; running commands go on, and the node stays paused after
    "-1"       kill the running commands and pause (the file is then emptied: still paused)
    "-2"       pause, and restart the worker once its commands have ended
    "-3"       kill the running commands, then restart the worker

POST /pause/ {content} writes it ("0" removes it); an operator may also write it by hand.
"""
import threading
from dataclasses import dataclass
from pathlib import Path

from puli.commandwatcher import private

RESUME = "0"
KILL = "-1"
RESTART = "-2"
KILL_RESTART = "-3"


@dataclass(frozen=True)
class Order:
    """What the killfile asks for now."""
    paused: bool
    kill: bool = False
    restart: bool = False
    content: str = ""


class Killfile:
    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()       # the API's writes and the loop's settle()

    def read(self):
        try:
            content = self.path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return Order(paused=False)
        return Order(paused=True, kill=content in (KILL, KILL_RESTART),
                     restart=content in (RESTART, KILL_RESTART), content=content)

    def write(self, content):
        """What POST /pause/ does: "0" resumes (removes the file), anything else is written."""
        with self._lock:
            self._write(content)

    def settle(self, done, content):
        """Replace an order carried out (`done`, e.g. KILL) with `content`, unless another came
        meanwhile: a resume posted while the commands were being killed stands."""
        with self._lock:
            if self.read().content == done and self.path.exists():
                self._write(content)

    def _write(self, content):
        if content == RESUME:
            self.remove()
            return
        if not self.path.parent.is_dir():
            private.make_dirs(self.path.parent, private.STATE_DIR)
        private.write_atomically(self.path, content.encode())

    def remove(self):
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
