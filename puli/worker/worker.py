"""The worker daemon: registers with the dispatcher, runs its assignments under commandwatchers,
relays their progress, heartbeats, and obeys the killfile.

One thread owns the runs' lifecycle (the loop); the API threads only start watchers and queue
stop orders under `lock`; the sender thread only talks to the dispatcher and hands back outcomes;
the sweep thread deletes the ended commands' old logs, never those of a run held here.
"""
import contextlib
import hmac
import logging
import secrets
import signal
import threading
import time
from pathlib import Path

import psutil

from .. import notify
from ..commandwatcher import private
from ..commandwatcher.state import RUN_ENDS
from . import sysinfo
from .api import ApiServer, Refused
from .client import Client, Unreachable
from .killfile import KILL, Killfile
from .metrics import WorkerMetrics
from .sender import DELIVERED, STOP, Sender
from .settings import read_secret_file
from .sweep import Sweeper
from .watchers import SpawnError, Watchers

log = logging.getLogger("puli.worker")

# A wakeup costs more than the work it does: look at the watchers' state files as often as they
# are written (4 times a second at most), at the killfile once a second. The API wakes the loop
# at once for an assignment, a stop order or a pause.
POLL_INTERVAL = 0.25
IDLE_INTERVAL = 1.0
FIRST_REGISTER_DELAY = 1.0  # registration retries back off from this...
MAX_REGISTER_DELAY = 15.0   # ...to this, Puli's fixed retry period
FLUSH_TIMEOUT = 5.0         # s given to the pending command reports at exit
WATCHDOG_PERIOD = 5.0       # s between WATCHDOG=1 when systemd did not say (WATCHDOG_USEC)
PAUSED_STATUS = 2           # RenderNodeStatus.PAUSED, as a registration answer says it


class Signals:
    """SIGTERM and SIGINT are only counted here; the loop acts on them. A second one skips the
    flush of pending reports."""

    def __init__(self):
        self.count = 0

    def install(self):
        signal.signal(signal.SIGTERM, self._record)
        signal.signal(signal.SIGINT, self._record)

    def _record(self, signum, frame):
        self.count += 1


class Worker:
    def __init__(self, settings, isolation):
        self.settings = settings
        self.isolation = isolation
        self.url = f"http://{settings.host}:{settings.port}"
        self.watchers = Watchers(settings, isolation, self.url)
        self.killfile = Killfile(settings.killfile)
        # Set while the dispatcher holds this node paused because this worker said so.
        self.pause_marker = Path(settings.data_dir) / "paused-by-killfile"
        self.client = self.dispatcher_client()
        self.sender = Sender(self.dispatcher_client())
        # What the dispatcher must show to be obeyed: a fresh secret at each registration
        # (the one before it too, for the messages already on their way).
        self.secrets = ()
        self.secret_file = Path(settings.data_dir) / "api.secret"
        self.signals = Signals()
        self.lock = threading.Lock()        # runs and stop orders, shared with the API threads
        self.runs = {}                      # command id -> watchers.Run
        self.stop_orders = []               # (command id, reason), from the API
        self.wake = threading.Event()
        self.max_commands = settings.max_commands or psutil.cpu_count() or 1
        self.log_path = Path(settings.log_dir) / "worker.log"
        self.paused = False                 # what the killfile says
        self.restart_stays_paused = None    # while a restart is pending: paused after it?
        self.registered = False
        self.epoch = None                   # the dispatcher's life we registered with
        self.flushed = 0                    # its last committed flush we know of
        self.unreachable = False            # the last call to the dispatcher got no answer
        self.host = None                    # sysinfo.host_info(), refreshed every sysinfo_interval
        self.host_due = 0.0
        self.next_heartbeat = 0.0
        self.next_watchdog = 0.0
        self.next_killfile_check = 0.0
        self.status_line = None
        # GET /metrics on our API: to whoever shows this token (or the dispatcher's secret).
        self.metrics_token = (read_secret_file(settings.metrics_token_file, "metrics_token_file")
                              if settings.metrics_token_file else None)
        self.metrics = WorkerMetrics(self)

    def dispatcher_client(self):
        s = self.settings
        return Client(s.dispatcher_url, s.name, token=s.token, ca_file=s.ca_file)

    # -- the life of the worker -------------------------------------------------------------

    def run(self):
        """adopt → serve → register → ready → loop → teardown. Returns the exit status."""
        self.signals.install()
        self.adopt()
        s = self.settings
        api = ApiServer(self, s.address, s.port, s.tls_cert, s.tls_key,
                        max_request_bytes=s.max_request_bytes, request_timeout=s.request_timeout).start()
        # After adopt(): the runs found again hold their files from the first sweep on.
        self.sweeper = Sweeper(s.log_dir, self.watchers.commands_dir, s.log_retention, s.logs_max_total,
                               self.held_files).start()
        try:
            if not self.register_until_accepted():
                log.info("stopped before the dispatcher accepted this node")
                return 0
            notify.ready(self.describe())
            self.sender.start()
            return self.loop()
        finally:
            self.teardown(api)

    def adopt(self):
        """Take over the runs a previous worker left: live watchers and unreported ends."""
        for run in self.watchers.adopt():
            self.runs[run.id] = run
        self.paused = self.killfile.read().paused
        log.info("worker %s: %d command(s) found, %s, isolation %s", self.settings.name,
                 len(self.runs), "paused" if self.paused else "not paused", self.isolation.mode)

    def register_until_accepted(self):
        """Register, retrying with an exponential backoff; False if told to stop meanwhile."""
        delay, attempt = FIRST_REGISTER_DELAY, 1
        while not self.signals.count:
            if self.register() is not None:
                return True
            # Keep systemd from failing the start while the dispatcher is away.
            notify.notify(f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1e6)}",
                          f"STATUS=waiting for the dispatcher at {self.settings.dispatcher_url} "
                          f"(attempt {attempt})")
            self._sleep(delay)
            delay, attempt = min(delay * 2, MAX_REGISTER_DELAY), attempt + 1
        return False

    def loop(self):
        while True:
            if self.signals.count:
                log.info("asked to stop: leaving; the commands keep running under their watchers")
                return 0
            now = time.monotonic()
            if now >= self.next_killfile_check:
                self.next_killfile_check = now + IDLE_INTERVAL
                self.obey_killfile()
            self.follow_runs(now)
            self.act_on_outcomes()
            if now >= self.next_heartbeat:
                self.keep_in_touch(now)
            self.tell_systemd(now)
            if self.restart_stays_paused is not None and all(run.final for run in self._runs()):
                return self.restart()
            self.wake.wait(POLL_INTERVAL if self.runs else IDLE_INTERVAL)
            self.wake.clear()

    def teardown(self, api):
        notify.stopping("stopping")
        self.sweeper.stop()
        api.close()
        self.sender.close(timeout=FLUSH_TIMEOUT if self.signals.count < 2 else 0)
        self.act_on_outcomes()              # what the flush delivered needs no second report
        self.client.close()
        left = [run.id for run in self._runs() if not run.final]
        log.info("worker stopped; %d command(s) left running under their watchers%s", len(left),
                 f": {left}" if left else "")

    # -- the loop's steps -------------------------------------------------------------------

    def obey_killfile(self):
        order = self.killfile.read()
        if order.paused != self.paused:
            log.info("killfile %s: %s", "found" if order.paused else "gone",
                     "pausing" if order.paused else "resuming")
            self.next_heartbeat = 0.0       # tell the dispatcher now
        was_paused, self.paused = self.paused, order.paused
        if order.kill:
            for run in self._runs():
                self.watchers.stop(run, f"killfile {order.content}")
            if order.content == KILL:
                self.killfile.settle(KILL, "")  # done: stay paused, and do not kill again
        if order.restart and self.restart_stays_paused is None:
            log.info("killfile %s: restarting once the running commands have ended", order.content)
            self.restart_stays_paused = was_paused

    def follow_runs(self, now):
        """Act on stop orders, then read what the watchers say and queue it for the dispatcher."""
        with self.lock:
            orders, self.stop_orders = self.stop_orders, []
        for command_id, reason in orders:
            self.stop_and_forget(command_id, reason)
        for run in self._runs():
            status = run.status
            changed = self.watchers.refresh(run)
            changed = self.watchers.enforce_stop(run, now) or changed
            if not changed:
                continue
            if run.forget:
                if run.final:
                    self.drop(run)
            else:
                self.sender.put(run.report(), urgent=run.status != status)

    def act_on_outcomes(self):
        for report, outcome, answer in self.sender.results():
            run = self.runs.get(report["id"])
            if run is None or run.number != report["assignment"]:
                continue
            if outcome == STOP:
                self.stop_and_forget(run.id, "the dispatcher no longer has it here")
            elif report.get("status") not in RUN_ENDS:
                continue
            elif outcome != DELIVERED:
                self.drop(run)              # the dispatcher will never take its end
            elif self.restarted(answer.get("epoch")):
                pass                        # handed again at the registration this asks for
            elif answer.get("flush", 0) > self.flushed:
                # Taken, not yet committed: a dispatcher killed meanwhile would lose the end,
                # so the run stays until a heartbeat says that flush is done.
                run.end_flush = answer["flush"]
            else:
                self.drop(run)              # the dispatcher has its end for good

    def restarted(self, epoch):
        """True, and a registration is due, when the dispatcher is not the one we registered
        with: it restarted, and may have lost what it had not committed."""
        if self.epoch is None or epoch is None or epoch == self.epoch:
            return False
        if self.registered:
            log.warning("the dispatcher restarted: registering again with what runs here")
            self.registered = False
            self.next_heartbeat = 0.0
        return True

    def learn(self, answer):
        """What a heartbeat answer says of the dispatcher: a restart (another epoch) makes us
        register again, handing back the runs it may have lost; its committed flushes release
        the ends it holds for good."""
        if self.restarted(answer.body.get("epoch")):
            return
        flushed = answer.body.get("flushed")
        if isinstance(flushed, int):
            self.flushed = flushed
        for run in self._runs():
            if run.end_flush is not None and run.end_flush <= self.flushed:
                self.drop(run)

    def keep_in_touch(self, now):
        """Heartbeat (or register again when the dispatcher forgot us), then align its paused flag."""
        self.next_heartbeat = now + self.settings.heartbeat_interval
        if not self.registered:
            answer = self.register()
            if answer is not None:
                self.align_pause(answer.body.get("status") == PAUSED_STATUS)
            return
        body = sysinfo.load_info()
        if now >= self.host_due:
            body.update(self.host_info(refresh=True))
        answer = self._call(self.client.heartbeat, body)
        heartbeats = self.metrics.heartbeats
        if answer is None:
            heartbeats.labels("unanswered").inc()
            return
        heartbeats.labels("ok" if answer.ok else "unknown_node" if answer.status == 404 else "refused").inc()
        if answer.status == 404:
            log.warning("the dispatcher forgot this node: registering again")
            self.registered = False
            self.next_heartbeat = 0.0
        elif not answer.ok:
            log.error("heartbeat refused (HTTP %d: %s)", answer.status, answer.reason())
        else:
            self.learn(answer)
            if self.registered:
                self.align_pause(bool(answer.body.get("paused")))

    def align_pause(self, dispatcher_paused):
        """Make the dispatcher's paused flag follow the killfile, without ever lifting a pause
        an operator set there."""
        if self.paused == dispatcher_paused:
            if not self.paused:
                self.pause_marker.unlink(missing_ok=True)   # an operator resumed it meanwhile
            return
        if not self.paused and not self.pause_marker.exists():
            return                          # an operator's pause, not ours
        answer = self._call(self.client.set_paused, self.paused, False)
        if answer is None or not answer.ok:
            if answer is not None:
                log.error("cannot set paused=%s (HTTP %d: %s)", self.paused, answer.status, answer.reason())
            return
        if self.paused:
            self.pause_marker.touch(mode=0o600)
        else:
            self.pause_marker.unlink(missing_ok=True)
        log.info("the dispatcher now holds this node %s", "paused" if self.paused else "resumed")

    def tell_systemd(self, now):
        line = self.describe()
        if line != self.status_line:
            notify.status(line)
            self.status_line = line
        if now >= self.next_watchdog:
            notify.watchdog()
            self.next_watchdog = now + min(notify.watchdog_interval() or WATCHDOG_PERIOD, WATCHDOG_PERIOD)

    def restart(self):
        """Leave for systemd to start a fresh worker, as the killfile's -2 / -3 ask."""
        if self.restart_stays_paused:
            self.killfile.write("")
        else:
            self.killfile.remove()
        log.info("restarting as the killfile asked: exiting (systemd starts the worker again)")
        return 0

    # -- the dispatcher -----------------------------------------------------------------------

    def register(self):
        """One registration attempt: the Answer once accepted, else None (and why is logged)."""
        secret = self.new_secret()
        body = dict(self.host_info(refresh=True), **sysinfo.load_info(), name=self.settings.name,
                    host=self.settings.host, port=self.settings.port, pools=list(self.settings.pools),
                    commands=[run.report() for run in self._runs() if not run.forget],
                    secret=secret, scheme="https" if self.settings.tls_cert else "http")
        answer = self._call(self.client.register, body)
        if answer is None:
            return None
        if not answer.ok:
            log.error("the dispatcher refused the registration (HTTP %d: %s)", answer.status, answer.reason())
            return None
        self.registered = True
        self.epoch = answer.body.get("epoch")
        flushed = answer.body.get("flushed")
        self.flushed = flushed if isinstance(flushed, int) else 0
        self.next_heartbeat = time.monotonic() + self.settings.heartbeat_interval
        log.info("registered with %s as %s, with %d command(s)", self.settings.dispatcher_url,
                 self.settings.name, len(body["commands"]))
        for command_id in answer.body.get("stop") or ():
            self.stop_and_forget(command_id, "the dispatcher no longer counts on it here")
        for run in self._runs():
            if run.final and not run.forget:
                # Again, even an end already taken: flush numbers of another life of the
                # dispatcher say nothing of this one's.
                run.end_flush = None
                self.sender.put(run.report(), urgent=True)  # its report removes the run
        return answer

    def new_secret(self):
        """A fresh secret for the dispatcher to show, kept in <data_dir>/api.secret for this
        node's root (and tests) to call the API with."""
        secret = secrets.token_urlsafe(32)
        self.secrets = (secret, *self.secrets[:1])
        private.write_atomically(self.secret_file, f"{secret}\n".encode())
        return secret

    def allows(self, secret):
        """True when a request to our API shows the dispatcher's secret."""
        return any(hmac.compare_digest(secret, known) for known in self.secrets)

    def allows_metrics(self, token):
        """True when a request for /metrics shows the metrics token (metrics_token_file)."""
        # As bytes: compare_digest refuses a str that is not ASCII, and a header may be anything.
        return self.metrics_token is not None and hmac.compare_digest(token.encode(), self.metrics_token.encode())

    def _call(self, method, *args):
        """A call to the dispatcher; None when it did not answer (logged once per outage)."""
        try:
            answer = method(*args)
        except Unreachable as exc:
            if not self.unreachable:
                log.warning("the dispatcher at %s does not answer: %s", self.settings.dispatcher_url, exc)
            self.unreachable = True
            return None
        if self.unreachable:
            log.info("the dispatcher answers again")
        self.unreachable = False
        return answer

    def host_info(self, refresh=False):
        if refresh or self.host is None:
            self.host = sysinfo.host_info(self.settings, self.isolation.mode)
            self.host_due = time.monotonic() + self.settings.sysinfo_interval
        return self.host

    # -- runs -------------------------------------------------------------------------------

    def stop_and_forget(self, command_id, reason):
        """Stop a run the dispatcher no longer counts on this node: nothing more is reported."""
        run = self.runs.get(command_id)
        if run is None:
            return
        run.forget = True
        if run.final:
            self.drop(run)
        else:
            self.watchers.stop(run, reason)

    def drop(self, run):
        with self.lock:
            # Both at once: an assignment of the same command may arrive meanwhile and
            # must not find (or lose) this run's directory; a newer run of it is not ours.
            if self.runs.get(run.id) is not run:
                return
            self.runs.pop(run.id)
            self.watchers.remove(run)
        log.info("command %d (assignment %d): done with it, %s", run.id, run.number,
                 "forgotten" if run.forget else f"status {run.status} reported")

    def _runs(self):
        with self.lock:
            return list(self.runs.values())

    @contextlib.contextmanager
    def held_files(self):
        """For the sweep: while entered, no run starts or goes; (log paths, directories) of the
        runs held here, running or ended and not yet committed by the dispatcher."""
        with self.lock:
            runs = list(self.runs.values())
            yield ({run.assignment.get("logPath") for run in runs}, {str(run.dir) for run in runs})

    def describe(self):
        """The one-line status systemd shows, e.g. "running 2 commands (7, 9)"."""
        ids = sorted(run.id for run in self._runs() if not run.final)
        text = (f"running {len(ids)} command{'s' if len(ids) != 1 else ''} ({', '.join(map(str, ids))})"
                if ids else "idle")
        if self.paused:
            text = f"paused, {text}"
        if self.unreachable or not self.registered:
            text += f"; the dispatcher at {self.settings.dispatcher_url} does not answer"
        return text

    def _sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.signals.count and time.monotonic() < deadline:
            time.sleep(min(POLL_INTERVAL, deadline - time.monotonic()))

    # -- what the API asks (from its threads) -------------------------------------------------

    def accept(self, body):
        """Start a watcher for an assignment; Refused when this node will not run it."""
        command_id, number = body["id"], body["assignment"]
        if self.signals.count:
            raise Refused(503, "Stopping", "this worker is stopping")
        if self.killfile.read().paused:
            self.next_heartbeat = 0.0       # the dispatcher evidently does not know: tell it
            raise Refused(409, "Paused", f"{self.settings.name} is paused; it takes no new work")
        with self.lock:
            run = self.runs.get(command_id)
            if run is not None and run.final and run.number != number:
                # An ended run kept until its end was committed: the dispatcher, handing the
                # command out again, has that end already.
                self.runs.pop(command_id)
                self.watchers.remove(run)
                run = None
            if run is not None:
                if run.number == number:
                    return {"id": command_id, "assignment": number, "watcherPid": run.watcher_pid()}
                raise Refused(409, "Busy", f"command {command_id} still runs here under "
                                           f"assignment {run.number}")
            # A run being stopped no longer counts: the dispatcher freed its place already.
            active = sum(1 for run in self.runs.values() if not run.final and run.stop_reason is None)
            if active >= self.max_commands:
                raise Refused(409, "Full", f"{self.settings.name} already runs {active} commands, "
                                           f"its maximum")
            try:
                run = self.watchers.spawn(body)
            except SpawnError as exc:
                log.error("command %d: %s", command_id, exc)
                raise Refused(500, "Cannot start the command", f"command {command_id}: {exc}") from None
            self.runs[command_id] = run
        log.info("command %d (assignment %d): watcher %d started", command_id, number, run.watcher_pid())
        self.wake.set()
        # No "status": RUNNING here (delivery.py's contract): the watcher's own first state says
        # when the command runs, and its report tells the dispatcher.
        return {"id": command_id, "assignment": number, "watcherPid": run.watcher_pid()}

    def order_stop(self, command_id, number=None):
        with self.lock:
            run = self.runs.get(command_id)
            if run is None or (number and run.number != number):
                raise Refused(404, "Not running",
                              f"command {command_id}{f' (assignment {number})' if number else ''} "
                              f"does not run on {self.settings.name}")
            self.stop_orders.append((command_id, "stopped by the dispatcher"))
        self.wake.set()
        return {"id": command_id, "assignment": run.number, "stopping": True}

    def commands(self):
        return [{"id": run.id, "assignment": run.number, "status": run.status,
                 "completion": run.state.get("completion", 0.0), "message": run.state.get("message", ""),
                 "taskId": run.assignment.get("taskId"), "watcherPid": run.watcher_pid(),
                 "startTime": run.state.get("startTime"), "stopping": run.stop_reason is not None}
                for run in self._runs()]

    def pause(self, content):
        self.killfile.write(content)
        self.next_killfile_check = 0.0
        self.wake.set()
        return {"content": content, "paused": self.killfile.read().paused}

    def sysinfos(self):
        return dict(self.host_info(), **sysinfo.load_info(), name=self.settings.name,
                    host=self.settings.host, port=self.settings.port, pools=list(self.settings.pools),
                    paused=self.killfile.read().paused, isolation=self.isolation.describe(),
                    registered=self.registered)

    def request_sysinfo(self):
        self.host_due = 0.0

    def command_log(self, command_id):
        with self.lock:
            run = self.runs.get(command_id)
        if run is not None:
            return Path(run.assignment["logPath"])
        # A finished command's run is gone, its log stays: <log_dir>/commands/<task id>/<id>.log
        found = sorted(Path(self.settings.log_dir).glob(f"commands/*/{command_id}.log"))
        return found[0] if found else None
