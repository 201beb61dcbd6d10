"""The dispatcher's sender threads: messages to each render node in order, one at a time.

A pool of threads serves per-node queues. A node is served by one thread at a time, so an
assignment and a later stop order of the same command never overtake each other, and a slow
or dead node holds one thread, for one deadline per message, while the others go on with the
other nodes, taken in turn.

What a node may leave waiting is bounded:
- a message that got no answer (a dead or stalled node) gives up the node's messages waiting
  behind it, unsent: the farm has marked the node unreachable (if it was an assignment) and
  sends it nothing more until it is heard from. The next message is tried again;
- at most MAX_WAITING messages wait per node; one more is given up at once.
A message given up goes to `give_up`, as one that was refused: an assignment goes back to
the queue; a stop order is dropped, and the fencing of assignments stops that run all the
same when the worker is next heard from (its report on it is refused as stale, which tells it
to stop; a re-registration lists the runs it must stop).
"""
import logging
import threading
from collections import deque

log = logging.getLogger("puli.dispatcher.senders")

MAX_WAITING = 1000      # messages waiting for one node (the farm sends a node about 2 per command)


class Senders:
    """`send(msg)` delivers one message (msg.rn_name names its node) and says whether the node
    answered; `give_up(msg)` is told of a message given up unsent. Threads start as work comes,
    up to `threads`."""

    def __init__(self, send, give_up, threads=16, name="puli-send"):
        self._send = send
        self._give_up = give_up
        self._size = threads
        self._name = name
        self._cond = threading.Condition()
        self._waiting = {}          # node name -> deque of its messages not sent yet
        self._turns = deque()       # nodes with messages waiting and no thread on them, in turn
        self._busy = set()          # nodes a thread is sending to
        self._threads = []
        self._idle = 0              # threads waiting for a turn, not woken yet
        self._stopping = False

    def submit(self, msg):
        with self._cond:
            queue = self._waiting.get(msg.rn_name)
            full = queue is not None and len(queue) >= MAX_WAITING
            if not (self._stopping or full):
                if queue is None:
                    queue = self._waiting[msg.rn_name] = deque()
                    if msg.rn_name not in self._busy:
                        self._turns.append(msg.rn_name)
                        self._wake_one()
                queue.append(msg)
                return
        log.warning("%s of command %d to %s given up: %s", msg.kind, msg.command_id, msg.rn_name,
                    "the dispatcher is stopping" if self._stopping else f"{MAX_WAITING} messages wait for it")
        self._give_up(msg)

    def shutdown(self):
        """Send what waits, then end the threads."""
        with self._cond:
            self._stopping = True
            self._idle = 0
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def _wake_one(self):
        """Under the condition: a thread for the turn just added."""
        if self._idle:
            self._idle -= 1             # now, or two turns in a row would wake the same thread
            self._cond.notify()
        elif len(self._threads) < self._size:
            thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self):
        while True:
            with self._cond:
                while not self._turns:
                    if self._stopping:
                        return
                    self._idle += 1
                    self._cond.wait()       # (_wake_one counts it out of the idle)
                name = self._turns.popleft()
                queue = self._waiting[name]
                msg = queue.popleft()
                if not queue:
                    del self._waiting[name]
                self._busy.add(name)
            answered = False
            try:
                answered = self._send(msg)
            except Exception:           # a bug must not cost the farm a sender thread
                log.exception("%s of command %d to %s failed", msg.kind, msg.command_id, name)
            given_up = ()
            with self._cond:
                self._busy.discard(name)
                if not answered:
                    given_up = self._waiting.pop(name, ())
                elif name in self._waiting:
                    self._turns.append(name)    # its next turn: this thread or the next free one
            for later in given_up:
                log.warning("%s of command %d to %s given up: the node did not answer the one before",
                            later.kind, later.command_id, name)
                self._give_up(later)
