"""Logging of the daemons: stderr (journald under systemd) and a size-rotated file in their log dir."""
import logging
import logging.handlers
import sys


def setup(log_dir, level, filename, backups=10):
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("puli")
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.StreamHandler(sys.stderr),
                    logging.handlers.RotatingFileHandler(log_dir / filename, maxBytes=5 << 20,
                                                         backupCount=backups)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
