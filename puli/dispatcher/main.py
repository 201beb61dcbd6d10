"""puli-dispatcher: run the dispatcher's WSGI app under gunicorn (one worker process, gthread)."""
import argparse
import signal
import sys

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from .. import config, notify
from . import http_worker, settings as dispatcher_settings, tokens_cli


class DispatcherApplication(BaseApplication):
    """gunicorn with our settings; the app (and the restored farm) lives in its one worker."""

    def __init__(self, settings):
        self.settings = settings
        self.service = None
        super().__init__()

    def load_config(self):
        s = self.settings
        for key, value in {
            "bind": [f"{s.address}:{s.port}"],
            "workers": 1,                     # the worker process owns the farm: never more
            # gthread whose poller, not a request thread, waits for slow clients' requests
            "worker_class": http_worker.worker_class(s.request_timeout),
            "threads": s.threads,
            "timeout": 120,
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level.lower() if isinstance(s.log_level, str) else "info",
            "proc_name": "puli-dispatcher",
            # gunicorn's control socket lives at one path per user ($HOME/.gunicorn): two
            # dispatchers on a host would fight over it, and nothing of ours uses it.
            "control_socket_disable": True,
            "limit_request_line": 8190,
            "on_starting": _on_starting,
            "post_worker_init": _post_worker_init,
            "worker_exit": self._worker_exit,
        }.items():
            self.cfg.set(key, value)

    def load(self):
        from .bootstrap import build, setup_logging
        setup_logging(self.settings)
        self.service, app = build(self.settings)
        app.add_error_handler(http_worker.RequestTooSlow, http_worker.answer_too_slow)
        return app

    def run(self):
        try:
            _Arbiter(self).run()
        except RuntimeError as exc:         # gunicorn's own start errors (e.g. the port is taken)
            print(f"puli-dispatcher: {exc}", file=sys.stderr)
            sys.exit(1)

    def _worker_exit(self, server, worker):
        if self.service is not None:
            self.service.stop()


class _Arbiter(Arbiter):
    """gunicorn's arbiter without what would start a second worker process beside the one that
    owns the farm (two farms over one database): a reload (SIGHUP, which logrotate hooks and
    `kill -HUP` send), more workers (SIGTTIN), a binary upgrade (SIGUSR2). Each is logged and
    ignored; HUP reopens gunicorn's log files, as USR1 does. Settings and upgrades take a restart."""

    def handle_hup(self):
        self.log.warning("SIGHUP: nothing to reload, settings are read at start (restart the "
                         "service to change them); log files reopened")
        self.handle_usr1()

    def handle_ttin(self):
        self.log.warning("SIGTTIN ignored: one worker process owns the farm")

    def handle_usr2(self):
        self.log.warning("SIGUSR2 ignored: restart the service to run a new version")


def _post_worker_init(worker):
    # gunicorn leaves HUP at its default in its workers, which ends the process (and the farm
    # with it, unflushed): `systemctl kill -s HUP` reaches every process of the unit.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _on_starting(server):
    # gunicorn's arbiter would send READY=1 as soon as its socket is bound, before the farm is
    # restored: keep the socket from it; the service notifies once it is really ready.
    notify.reserve_socket()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="puli-dispatcher",
        description="Run the Puli dispatcher: the farm model, the dispatch loop and the HTTP API.")
    config.add_arguments(parser)
    parser.add_argument("--clean", action="store_true", help="wipe the database at start")
    tokens_cli.add_parser(parser.add_subparsers(dest="command", metavar="tokens"))
    args = parser.parse_args(argv)
    checked = config.check_command(dispatcher_settings.SCHEMA, dispatcher_settings.DEFAULTS_PATH, args)
    if checked is not None:
        return checked
    try:
        values = {"clean": True} if args.clean and args.command is None else {}
        settings = dispatcher_settings.load_settings(args, **values)
    except config.ConfigError as exc:
        print(f"puli-dispatcher: {exc}", file=sys.stderr)
        return 2
    if args.command == "tokens":
        return tokens_cli.run(args, settings.replace(clean=False))
    DispatcherApplication(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
