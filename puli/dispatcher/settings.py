"""The dispatcher's settings: schema, defaults file, and loading as the dispatcher does at start."""

import pathlib
import urllib.parse

from puli import config
from puli.config import (Bool, Choice, Duration, Int, List, LogLevel, Mapping, Path, RenderNodeName,
                         Setting, Size, Str, Url)

DEFAULTS_PATH = pathlib.Path(__file__).resolve().parent.parent / "defaults" / "dispatcher.yml"
SYSTEM_PATH = "/etc/puli/dispatcher.yml"
ENV_PREFIX = "PULI_DISPATCHER_"


def _check_db_url(url: str) -> None:
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ValueError("a sqlite URL names no host: write sqlite:///abs/path")
        if not parts.path.startswith("/"):
            raise ValueError("the sqlite path must be absolute: sqlite:///abs/path")
        return
    if not parts.hostname:
        raise ValueError("the URL names no host: write mysql://user:password@host[:port]/database")
    try:
        parts.port  # noqa: B018 -- reading it raises ValueError for a bad port
    except ValueError:
        raise ValueError("the URL has a bad port") from None
    database = parts.path.strip("/")
    if not database or "/" in database:
        raise ValueError(
            "the URL must name one database: mysql://user:password@host[:port]/database")
    # SQLObject also takes the charset for a Python codec name, so "utf8mb4" fails, and "utf8"
    # means MySQL's 3-byte utf8mb3; without it mysqlclient already speaks utf8mb4.
    if "charset" in urllib.parse.parse_qs(parts.query):
        raise ValueError("leave charset out: the connection already uses utf8mb4")


SCHEMA = {
    "address": Setting(Str(), "Address the HTTP API listens on."),
    "port": Setting(Int(1, 65535), "TCP port the HTTP API listens on."),
    "data_dir": Setting(Path(), "Directory for the embedded database and the logs."),
    "db_url": Setting(
        Url(("sqlite", "mysql"), optional=True),
        "Database URL: sqlite:///abs/path or mysql://user:password@host[:port]/database; "
        "empty means the SQLite file <data_dir>/puli.sqlite.",
        check=_check_db_url),
    "clean": Setting(Bool(), "Wipe the database at start."),
    "log_dir": Setting(Path(optional=True), "Log directory; empty means <data_dir>/log."),
    "log_level": Setting(LogLevel(), "DEBUG, INFO, WARNING or ERROR."),
    "threads": Setting(Int(1), "Request threads of the gunicorn worker."),
    "rn_timeout": Setting(
        Duration(minimum=1),
        "A render node silent for this long is marked unknown and its commands timed out."),
    "retry_delay": Setting(
        Duration(), "Delay before a command in ERROR with attempts left is retried."),
    "retry_timeouts": Setting(
        Bool(),
        "Retry a TIMEOUT command (its render node went silent) like an ERROR, when it has "
        "attempts left; false: it waits for an operator's restart, as in Puli 1.7."),
    "dispatch_interval": Setting(
        Duration(minimum=0.1), "Longest time between two dispatch passes."),
    "flush_interval": Setting(
        Duration(minimum=0.1), "Period of the write-behind flush of changes to the database."),
    "archive_after": Setting(
        Duration(), "Finished jobs are archived out of memory after this long."),
    "job_rn_error_limit": Setting(
        Int(1), "A job stops using a render node after this many errors there."),
    "quarantine_threshold": Setting(
        Int(1),
        "A render node whose last N final commands were errors from N different jobs is "
        "quarantined."),
    "worker_request_timeout": Setting(
        Duration(minimum=0.1),
        "Deadline of one request from the dispatcher to a worker, connection to last byte."),
    "max_request_bytes": Setting(Size(minimum=1024), "Largest request body accepted."),
    "request_timeout": Setting(
        Duration(minimum=0.5),
        "Longest time a request may take to arrive, headers and body: a slower client is "
        "disconnected, so that slow or stalled clients cannot hold the request threads."),
    "max_graph_commands": Setting(Int(1), "Most commands one submitted graph may make."),
    "max_graph_tasks": Setting(Int(1), "Most tasks and task groups one submitted graph may hold."),
    "max_queued_commands": Setting(
        Int(1), "Most commands the farm holds that are not finished (DONE or CANCELED)."),
    "max_queued_commands_per_user": Setting(
        Int(1), "Most unfinished commands the jobs of one user may hold."),
    "max_queued_jobs_per_user": Setting(Int(1), "Most unfinished jobs one user may have."),
    "max_stats_bytes": Setting(
        Size(minimum=256), "Largest 'stats' object a worker may report for one command, as JSON."),
    "pools_backend": Setting(
        Choice("file", "db"),
        "Where pools come from: db (edited through the API) or file (the pools setting)."),
    "pools": Setting(
        Mapping(List(RenderNodeName())),
        "Pool name -> render node names (host:port, or host); used only with pools_backend: file."),
    "licenses": Setting(
        Mapping(Int(0)), "License name -> number of tokens; the initial counters."),
    "auth": Setting(
        Bool(),
        "Require a bearer token with the right role on every route; false only for a single "
        "trusted machine."),
    "audit_retention": Setting(
        Duration(minimum=3600), "The audit trail keeps every state-changing request this long."),
    "worker_ca_file": Setting(
        Path(optional=True),
        "CA certificate (PEM) that workers' TLS certificates are checked against; empty means "
        "the system's CAs."),
    "stats_interval": Setting(
        Duration(minimum=1), "Period of the farm usage samples kept for pulistats."),
}


def load_settings(args=None, /, *, system_file=SYSTEM_PATH, **values) -> config.Settings:
    """The dispatcher's settings, with db_url and log_dir resolved to concrete values.

    With argparse ``args`` from a parser given to config.add_arguments, they load as the
    dispatcher does at start: defaults < ``--config FILE`` (or ``system_file``,
    /etc/puli/dispatcher.yml unless given, if it exists) < PULI_DISPATCHER_* environment
    variables < ``--set``. Without, only the defaults count. ``values``, Python values by
    setting name (``load_settings(data_dir=tmp)``), override every other source. Raises
    config.ConfigError.
    """
    if args is None:
        settings = config.load(SCHEMA, DEFAULTS_PATH, environ={}, values=values)
    else:
        settings = config.from_args(SCHEMA, DEFAULTS_PATH, args, env_prefix=ENV_PREFIX,
                                    system_file=system_file, values=values)
    return settings.replace(
        db_url=settings.db_url or f"sqlite://{settings.data_dir / 'puli.sqlite'}",
        log_dir=settings.log_dir or settings.data_dir / "log")


def file_pools_of(settings, rn_name):
    """With pools_backend: file, the pools whose members name this render node (host:port or host)."""
    host = rn_name.rsplit(":", 1)[0]
    return [pool for pool, members in settings.pools.items()
            if any(m.lower() in (rn_name, host) for m in members)]
