"""/commands/: list (paged: there may be a million), read, and restart / force DONE / cancel one."""
from ...model import job_operations, lookup
from .. import views
from .common import command_page, command_statuses, field, page, param_ints, read_body


class Commands:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        """Commands by id, filtered by ?status= (repeatable), ?offset= and ?limit= (1000)."""
        statuses = command_statuses("status", param_ints(req, "status"))
        offset, limit = page(req)
        with self.service.lock:
            farm = self.service.farm
            resp.media = command_page(farm.commands.values(), farm.root.counts, statuses, offset, limit)


class Command:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        with self.service.lock:
            cmd = lookup.get_command(self.service.farm, id)
            resp.media = views.command(cmd, detail=True)

    def on_put(self, req, resp, id):
        """{status: 1} restarts the command, 5 forces it DONE, 8 cancels it."""
        status = field(read_body(req), "status", int)
        service = self.service
        now = service.now()
        with service.lock:
            cmd = lookup.get_command(service.farm, id)
            job_operations.set_command_status(service.farm, cmd, status, now)
            resp.media = views.command(cmd)
        service.changed()


def routes(service):
    return [
        ("/commands", Commands(service)),
        ("/commands/{id:int}", Command(service)),
    ]
