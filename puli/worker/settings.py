"""The worker's settings: schema, defaults file, and loading as the worker does at start."""

import os
import pathlib
import socket

from puli import config
from puli.config import (Bool, Choice, Duration, Int, List, LogLevel, Path, RenderNodeName, Setting,
                         Size, Str, Umask, Url)

DEFAULTS_PATH = pathlib.Path(__file__).resolve().parent.parent / "defaults" / "worker.yml"
SYSTEM_PATH = "/etc/puli/worker.yml"
ENV_PREFIX = "PULI_WORKER_"


class OptionalName(RenderNodeName):
    """A render node name, or empty for the default one."""

    def convert(self, value):
        if value in ("", None):
            return ""
        return super().convert(value)


SCHEMA = {
    "dispatcher_url": Setting(Url(("http", "https")), "URL of the dispatcher."),
    "address": Setting(Str(), "Address the worker's HTTP API listens on."),
    "port": Setting(Int(1, 65535), "TCP port the worker's HTTP API listens on."),
    "name": Setting(OptionalName(),
                    "The render node's name, host:port; empty means <short hostname>:<port>."),
    "host": Setting(Str(empty=True),
                    "Host the dispatcher calls this worker back on; empty means this host's FQDN."),
    "data_dir": Setting(Path(), "Directory for the running commands' state and the logs."),
    "log_dir": Setting(Path(optional=True), "Log directory; empty means <data_dir>/log."),
    "log_level": Setting(LogLevel(), "DEBUG, INFO, WARNING or ERROR."),
    "heartbeat_interval": Setting(Duration(minimum=0.1), "Period of the heartbeat."),
    "sysinfo_interval": Setting(Duration(minimum=1),
                                "Period of the full system information sent with a heartbeat."),
    "pools": Setting(List(Str()), "Pools this render node joins when it registers."),
    "softs": Setting(List(Str()), "Software installed on this node (caracteristics.softs)."),
    "isolation": Setting(Choice("auto", "systemd", "cgroup2", "cgroup1", "pgroup"),
                         "How commands are isolated: auto, systemd (a unit of the worker user's "
                         "systemd manager per command), cgroup2, cgroup1 or pgroup."),
    "cgroup_root": Setting(Path(), "Where the cgroup hierarchies are mounted."),
    "kill_grace": Setting(Duration(), "Delay between SIGTERM and SIGKILL when a command is stopped."),
    "command_umask": Setting(
        Umask(), "The umask commands run with (the files they make), whatever the worker's own."),
    "log_max_bytes": Setting(Size(minimum=4096), "A command's log is rotated at this size."),
    "pids_max": Setting(Int(0), "Most processes a command may run at once; 0 means no limit."),
    "gpu_detection": Setting(Bool(), "Detect NVIDIA GPUs with nvidia-smi."),
    "killfile": Setting(Path(optional=True),
                        "The killfile, whose presence pauses the node; empty means <data_dir>/killfile."),
    "max_commands": Setting(Int(0), "Most commands run at once; 0 means one per core."),
    "token": Setting(Str(empty=True),
                     "This render node's token (a worker token from 'puli-dispatcher tokens create "
                     "--role worker'); or token_file."),
    "token_file": Setting(Path(optional=True),
                          "A file holding the token, readable by the worker's user only."),
    "ca_file": Setting(Path(optional=True),
                       "CA certificate (PEM) the dispatcher's TLS certificate is checked against "
                       "(an https dispatcher_url); empty means the system's CAs."),
    "tls_cert": Setting(Path(optional=True),
                        "Certificate (PEM) the worker's API serves TLS with; empty: plain HTTP."),
    "tls_key": Setting(Path(optional=True), "The private key of tls_cert."),
    "metrics_token_file": Setting(
        Path(optional=True),
        "A file holding the token Prometheus shows (as a bearer token) for GET /metrics, readable "
        "by the worker's user only; empty: /metrics is refused (403)."),
    "max_request_bytes": Setting(Size(minimum=1024), "Largest request body the worker's API accepts."),
    "request_timeout": Setting(
        Duration(minimum=0.5),
        "Longest time a request to the worker's API may take to arrive, headers and body."),
    "log_retention": Setting(
        Duration(minimum=60), "Command logs and directories of ended commands are kept this long."),
    "logs_max_total": Setting(
        Size(minimum=1024 * 1024),
        "Most disk the logs of ended commands may take together; the oldest go first past it."),
}


def load_settings(args=None, /, *, system_file=SYSTEM_PATH, **values) -> config.Settings:
    """The worker's settings, with name, host, log_dir and killfile resolved to concrete values.

    With argparse ``args`` from a parser given to config.add_arguments, they load as the worker
    does at start: defaults < ``--config FILE`` (or ``system_file``, /etc/puli/worker.yml unless
    given, if it exists) < PULI_WORKER_* environment variables < ``--set``. Without, only the
    defaults count. ``values``, Python values by setting name, override every other source.
    Raises config.ConfigError.
    """
    if args is None:
        settings = config.load(SCHEMA, DEFAULTS_PATH, environ={}, env_prefix=ENV_PREFIX,
                               values=values)
    else:
        settings = config.from_args(SCHEMA, DEFAULTS_PATH, args, env_prefix=ENV_PREFIX,
                                    system_file=system_file, values=values)
    short_host = socket.gethostname().split(".")[0]
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise config.ConfigError(["tls_cert and tls_key go together: set both, or neither"])
    if settings.metrics_token_file:
        read_secret_file(settings.metrics_token_file, "metrics_token_file")     # refused at start
    return settings.replace(
        name=(settings.name or f"{short_host}:{settings.port}").lower(),
        host=settings.host or _callback_host(),
        log_dir=settings.log_dir or settings.data_dir / "log",
        killfile=settings.killfile or settings.data_dir / "killfile",
        token=settings.token or (read_secret_file(settings.token_file, "token_file") if settings.token_file else ""))


def read_secret_file(path, name):
    """The first line of a file that only its owner may read (ConfigError otherwise)."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise config.ConfigError([f"{name} {path}: others may read it (mode {mode & 0o777:o}); "
                                      f"make it readable by its owner only: chmod 600 {path}"])
        with open(path) as f:
            value = f.readline().strip()
    except OSError as exc:
        raise config.ConfigError([f"{name} {path}: cannot read it: {exc.strerror}"]) from None
    if not value:
        raise config.ConfigError([f"{name} {path}: it is empty"])
    return value


def _callback_host():
    """This host's fully qualified name, unless the resolver only knows it as localhost."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if fqdn.startswith("localhost") else fqdn
