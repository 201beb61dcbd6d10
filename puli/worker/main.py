"""puli-worker: run the render node worker until SIGTERM (its commands' watchers live on)."""
import argparse
import logging
import logging.handlers
import sys

from .. import config
from . import settings as worker_settings
from .watchers import detect_isolation
from .worker import Worker

log = logging.getLogger("puli.worker")


def setup_logging(settings):
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("puli")
    root.setLevel(settings.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.StreamHandler(sys.stderr),
                    logging.handlers.RotatingFileHandler(settings.log_dir / "worker.log",
                                                         maxBytes=5 << 20, backupCount=5)):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="puli-worker",
        description="Run the Puli worker of this render node: it registers with the dispatcher "
                    "and runs the commands it is given.")
    config.add_arguments(parser)
    parser.add_argument("--check-config", metavar="FILE",
                        help="check a settings file and exit (non-zero when it is invalid)")
    args = parser.parse_args(argv)
    if args.check_config:
        errors = config.check(worker_settings.SCHEMA, worker_settings.DEFAULTS_PATH, args.check_config)
        for error in errors:
            print(error, file=sys.stderr)
        return 1 if errors else 0
    try:
        settings = worker_settings.load_settings(args)
    except config.ConfigError as exc:
        print(f"puli-worker: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
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
