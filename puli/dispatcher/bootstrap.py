"""The composition root: build the farm, store, service and WSGI app from settings."""
import logging

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
        for name in settings.pools:
            farm.get_pool(name)
        for rn in farm.render_nodes.values():
            render_node_admin.set_render_node_pools(farm, rn, file_pools_of(settings, rn.name), create=False)


def setup_logging(settings):
    logs.setup(settings.log_dir, settings.log_level, "dispatcher.log")
