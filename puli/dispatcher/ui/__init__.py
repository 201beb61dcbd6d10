"""The web monitor (/ui/): server-rendered pages of the farm for wranglers and artists.

Pages read the model under the farm lock and render Jinja templates after it; their actions
are the API's own routes, called by the page's script with the session cookie and its CSRF
token, so that roles, artists' own jobs and the audit trail hold exactly as for the tools.
"""
from . import farm, jobs, signin


def routes(service):
    return [*signin.routes(service), *jobs.routes(service), *farm.routes(service)]
