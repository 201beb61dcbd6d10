"""The dispatcher's Falcon application: routes, error handlers and middleware, nothing else."""
import falcon

from . import auth, errors, openapi, ui
from .metrics import RequestMetrics
from .resources import (commands, common, graphs, identity, licenses, logs, nodes, openjd, pools, query,
                        rendernodes, reports, stats_history, system, tasks, worker_protocol)
from .sampler import RequestCounter

AREAS = (graphs, openjd, nodes, tasks, commands, logs, rendernodes, worker_protocol, pools, licenses, query,
         identity, system, stats_history, reports, ui)


def create_app(service):
    """The WSGI app serving `service` (a puli.dispatcher.service.Service)."""
    settings = service.settings
    app = falcon.App(middleware=[
        RequestMetrics(service.metrics),        # first: it times and counts every answer
        common.RequestLimits(settings.max_request_bytes),
        common.JsonOnly(yaml_paths={"/openjd/jobs": openjd.YAML_TYPES}),
        auth.Authorization(service, openapi.access_table(), enabled=settings.auth),
        auth.Audit(service),
        RequestCounter.of(service),             # pulistats: requests by kind
    ])
    app.req_options.strip_url_path_trailing_slash = True
    json_handler = common.json_handler()
    app.req_options.media_handlers = falcon.media.Handlers({
        falcon.MEDIA_JSON: json_handler,
        falcon.MEDIA_URLENCODED: falcon.media.URLEncodedFormHandler(),    # the monitor's forms only
    })
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)
    for area in AREAS:
        for template, resource in area.routes(service):
            app.add_route(template, resource)
    return app
