"""OpenJD submission: POST /openjd/jobs, a job template and its parameter values (JSON or YAML)
made into a Puli job (puli.openjd); refused whole, with openjd-model's message, when invalid."""
import falcon

from ...openjd.document import parse_body
from ...openjd.errors import OpenJDError
from ...openjd.translate import translate
from ..auth import TRUSTED

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class OpenJDJobs:
    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        """Create a job from an OpenJD template; its owner as for POST /graphs."""
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        # The body's length is bounded by RequestLimits before this reads it.
        raw = req.bounded_stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise falcon.HTTPBadRequest(title="Invalid OpenJD job", description="the body is not UTF-8 text") from None
        try:
            body = parse_body(text, media_type)
            graph = translate(body, self.service.farm.quotas.graph_commands)
        except OpenJDError as exc:
            raise falcon.HTTPBadRequest(title="Invalid OpenJD job", description=str(exc)) from None
        identity = req.context.identity
        owner = identity.user if identity.role == "artist" else None
        default = identity.user if identity is not TRUSTED else None
        job = self.service.submit(graph, owner=owner, default_user=default)
        with self.service.lock:
            answer = {
                "id": job.id,
                "name": job.name,
                "nodes": [n.id for n in job.walk()],
                "commands": job.command_count,
                "openjd": {"name": job.tags.get("openjdName"), "parameters": job.tags.get("openjdParameters")},
            }
        req.context.jobs = [job.id]
        resp.status = 201
        resp.location = f"/nodes/{job.id}"
        resp.media = answer


def routes(service):
    return [("/openjd/jobs", OpenJDJobs(service))]
