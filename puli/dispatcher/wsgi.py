"""The composition root: build the farm, store, service and WSGI app from settings."""
import logging
import logging.handlers
import sys

from ..model.farm import Farm
from ..model import actions
from .service import Service
from .settings import file_pools_of

log = logging.getLogger("puli.dispatcher")


def build(settings):
    """Restore the farm and start the service; returns (service, WSGI app)."""
    from ..store import open_store
    from .app import create_app

    farm = Farm(rn_timeout=settings.rn_timeout, retry_delay=settings.retry_delay,
                job_rn_error_limit=settings.job_rn_error_limit,
                quarantine_threshold=settings.quarantine_threshold)
    store = open_store(settings.db_url, clean=settings.clean)
    service = Service(farm, store, settings)
    service.restore()
    with service.lock:
        apply_config(service, settings)
    service.start()
    log.info("dispatcher ready: %s", service.summary())
    return service, create_app(service)


def apply_config(service, settings):
    """What the config declares: licenses not yet known, and pools with the file backend."""
    farm = service.farm
    for name, count in settings.licenses.items():
        if name not in farm.licenses:
            farm.set_license(name, count)
    if settings.pools_backend == "file":
        for name, members in settings.pools.items():
            farm.get_pool(name)
        for rn in farm.render_nodes.values():
            actions.set_render_node_pools(farm, rn, file_pools_of(settings, rn.name), create=False)


def setup_logging(settings):
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("puli")
    root.setLevel(settings.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.StreamHandler(sys.stderr),
                    logging.handlers.RotatingFileHandler(settings.log_dir / "dispatcher.log",
                                                         maxBytes=5 << 20, backupCount=10)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
