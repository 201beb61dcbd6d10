"""The watcher's signals: stop orders (SIGTERM, SIGINT) counted and child exits noticed by handlers
that only record, a wakeup pipe making the loop's select() return to act on them."""
import os
import signal


class Signals:
    """Installed at once: a stop order that arrives while the watcher starts up is not lost."""

    def __init__(self):
        self.stops = 0                  # stop orders received: the second one kills at once
        self.wakeup_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGCHLD, self._child)

    def _stop(self, signum, frame):
        self.stops += 1

    def _child(self, signum, frame):
        pass                    # the wakeup byte is the message: the loop reaps

    def drain(self):
        try:
            while os.read(self.wakeup_fd, 512):
                pass
        except BlockingIOError:
            pass
