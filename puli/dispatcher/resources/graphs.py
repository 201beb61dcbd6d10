"""Job submission: POST /graphs/ (Puli's wire format, see puli.model.graph)."""
from ..auth import TRUSTED
from .common import read_body


class Graphs:
    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        """Create a job from a graph; nothing is created when the graph is refused. An artist's
        job is the artist's whatever the graph says; a wrangler's or an admin's is the graph's
        user's, or theirs when it names none."""
        identity = req.context.identity
        owner = identity.user if identity.role == "artist" else None
        default = identity.user if identity is not TRUSTED else None
        job = self.service.submit(read_body(req), owner=owner, default_user=default)
        with self.service.lock:
            body = {
                "id": job.id,
                "name": job.name,
                "nodes": [n.id for n in job.walk()],
                "commands": job.command_count,
            }
        req.context.jobs = [job.id]     # for the audit trail
        resp.status = 201
        resp.location = f"/nodes/{job.id}"
        resp.media = body


def routes(service):
    return [("/graphs", Graphs(service))]
