"""puli-worker: run the render node worker until SIGTERM (its commands' watchers live on)."""
import argparse
import logging
import sys

from .. import config, logs
from ..commandwatcher import private
from . import settings as worker_settings
from .watchers import detect_isolation
from .worker import Worker

log = logging.getLogger("puli.worker")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="puli-worker",
        description="Run the Puli worker of this render node: it registers with the dispatcher "
                    "and runs the commands it is given.")
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    checked = config.check_command(worker_settings.SCHEMA, worker_settings.DEFAULTS_PATH, args)
    if checked is not None:
        return checked
    try:
        settings = worker_settings.load_settings(args)
    except config.ConfigError as exc:
        print(f"puli-worker: {exc}", file=sys.stderr)
        return 2
    try:
        # Before logging makes it with the umask's mode: the logs are private (private.py).
        private.make_dirs(settings.log_dir, private.LOG_DIR)
    except OSError as exc:
        print(f"puli-worker: log_dir {settings.log_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    logs.setup(settings.log_dir, settings.log_level, "worker.log", backups=5)
    for path in settings.log_dir.glob("worker.log*"):
        private.tighten(path, private.LOG_FILE)
    try:
        isolation = detect_isolation(settings.isolation, settings.cgroup_root)
    except ValueError as exc:
        print(f"puli-worker: isolation: {exc}", file=sys.stderr)
        return 2
    try:
        worker = Worker(settings, isolation)
        return worker.run()
    except OSError as exc:
        # A busy port, an unwritable data directory: say which, without a traceback.
        log.error("cannot run: %s", exc)
        log.debug("cannot run", exc_info=exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
