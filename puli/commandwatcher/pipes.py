"""The command's pipes (its output, a runner child's reports), read without blocking and in
batches, each chunk handed to its pipe's handler."""
import os
import selectors

BATCH_INTERVAL = 0.25      # s a pipe rests after a read: output is handled in batches
READ_SIZE = 256 * 1024


class Pipes:
    """The command's pipes in the selector. A pipe that was just read leaves the selector for
    BATCH_INTERVAL and is then read directly: a command printing a line at a time costs one
    wakeup per interval, not one per line. A pipe found empty goes back into the selector."""

    def __init__(self, selector, handlers):
        """`handlers`: fd -> function(chunk); an fd None (no such pipe) is left out."""
        self.selector = selector
        self.handlers = {fd: handler for fd, handler in handlers.items() if fd is not None}
        self.resting = set()
        self.resume_at = None           # monotonic time the resting pipes are read again
        for fd in self.handlers:
            selector.register(fd, selectors.EVENT_READ, "pipe")

    def read(self, fd, now):
        """Read what a pipe holds, then let it rest (data), listen (empty) or close (end of file)."""
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            self.listen(fd)
            return
        if not chunk:
            self.close(fd)
            return
        self.handlers[fd](chunk)
        if len(chunk) < READ_SIZE // 4:
            self.rest(fd, now)
        else:
            self.listen(fd)         # a flood: keep up with it rather than make the command wait

    def read_due(self, now):
        """Read the resting pipes whose rest is over."""
        if self.resume_at is None or now < self.resume_at:
            return
        self.resume_at = None
        due = list(self.resting)
        self.resting.clear()
        for fd in due:
            self.read(fd, now)

    def drain(self):
        """Once the tree is gone: read what is left in the pipes, and close them."""
        for fd, handler in list(self.handlers.items()):
            while True:
                try:
                    chunk = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break           # some process outside the tree holds the pipe: stop here
                if not chunk:
                    break
                handler(chunk)
            self.close(fd)

    def rest(self, fd, now):
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        self.resting.add(fd)
        if self.resume_at is None:
            self.resume_at = now + BATCH_INTERVAL

    def listen(self, fd):
        if fd not in self.selector.get_map():
            self.selector.register(fd, selectors.EVENT_READ, "pipe")

    def close(self, fd):
        if fd in self.resting:
            self.resting.discard(fd)
        elif fd in self.selector.get_map():
            self.selector.unregister(fd)
        del self.handlers[fd]
        if not self.resting:
            self.resume_at = None

    def close_all(self):
        for fd in list(self.handlers):
            self.close(fd)
