"""The dispatcher's Falcon application: routes, error handlers and middleware, nothing else."""
import falcon

from . import errors
from .resources import (commands, common, graphs, licenses, nodes, pools, query, rendernodes,
                        reports, stats_history, system, tasks, worker_protocol)
from .sampler import RequestCounter

AREAS = (graphs, nodes, tasks, commands, rendernodes, worker_protocol, pools, licenses, query, system,
         stats_history, reports)


def create_app(service):
    """The WSGI app serving `service` (a puli.dispatcher.service.Service)."""
    max_bytes = service.settings.max_request_bytes
    app = falcon.App(middleware=[common.RequestLimits(max_bytes),
                                     RequestCounter.of(service)])   # pulistats: requests by kind
    app.req_options.strip_url_path_trailing_slash = True
    # Bodies are JSON whatever they are labelled (curl -d sends form-urlencoded).
    json_handler = common.json_handler()
    for media_type in (falcon.MEDIA_JSON, falcon.MEDIA_URLENCODED, "text/plain"):
        app.req_options.media_handlers[media_type] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)
    for area in AREAS:
        for template, resource in area.routes(service):
            app.add_route(template, resource)
    return app
