"""The composition root: build the farm, store, service and WSGI app from settings."""
import ipaddress
import logging
import os
import time

from .. import logs
from ..model import render_node_admin
from ..model.farm import Farm
from .service import Service
from .settings import file_pools_of

log = logging.getLogger("puli.dispatcher")


def build(settings):
    """Restore the farm and start the service; returns (service, WSGI app)."""
    from ..store import open_store
    from .app import create_app

    farm = Farm(rn_timeout=settings.rn_timeout, retry_delay=settings.retry_delay,
                job_rn_error_limit=settings.job_rn_error_limit,
                quarantine_threshold=settings.quarantine_threshold,
                retry_timeouts=settings.retry_timeouts)
    store = _open_store_when_up(open_store, settings)
    service = Service(farm, store, settings)
    service.restore()
    with service.lock:
        apply_config(service, settings)
    first_admin_token(service, settings)
    service.start()
    log.info("dispatcher ready: %s", service.summary())
    return service, create_app(service)


DATABASE_PATIENCE = 60.0    # s a starting dispatcher waits for its database (booting with it)


def _open_store_when_up(open_store, settings, patience=DATABASE_PATIENCE):
    """The store, once its server answers: at boot the database may start after the
    dispatcher. A refusal (a bad password, a bad database) fails at once."""
    from ..store import StoreError
    deadline = time.monotonic() + patience
    while True:
        try:
            return open_store(settings.db_url, clean=settings.clean)
        except StoreError as exc:
            if not exc.unreachable or time.monotonic() >= deadline:
                raise
            log.warning("waiting for the database (%s): %s", f"{patience:g} s at most", exc)
            time.sleep(1.0)


def apply_config(service, settings):
    """What the config declares: licenses not yet known, and pools with the file backend."""
    farm = service.farm
    for name, count in settings.licenses.items():
        if name not in farm.licenses:
            farm.set_license(name, count)
    if settings.pools_backend == "file":
        for name in settings.pools:
            farm.get_pool(name)
        for rn in farm.render_nodes.values():
            render_node_admin.set_render_node_pools(farm, rn, file_pools_of(settings, rn.name), create=False)


def first_admin_token(service, settings):
    """With auth on and no token at all (a first start): an admin token, written to
    <data_dir>/admin.token for its owner only. The log names the file, never the token."""
    if not settings.auth:
        if not ipaddress_is_loopback(settings.address):
            log.warning("auth is off and the API listens on %s: anybody who reaches it may do "
                        "everything (auth: false is for a single trusted machine)", settings.address)
        return
    if service.tokens.count():
        return
    token, _ = service.tokens.create("admin", "admin")
    path = settings.data_dir / "admin.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    log.warning("no token existed: an admin token was written to %s (readable by this user only); "
                "make the others with 'puli-dispatcher tokens create'", path)


def ipaddress_is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def setup_logging(settings):
    logs.setup(settings.log_dir, settings.log_level, "dispatcher.log")
