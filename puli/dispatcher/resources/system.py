"""/stats (Puli's farm snapshot), /system (the dispatcher's state), /metrics (Prometheus) and
/openapi.json."""
import os
import platform
import socket
import time

import puli

from ...model.status import CommandStatus, RenderNodeStatus
from .. import openapi, views
from ..metrics import CONTENT_TYPE_LATEST


class Stats:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        """Commands by status from the root's counters (O(1)), render nodes (one pass over
        them), jobs by status, licenses, and the last dispatch pass."""
        service = self.service
        with service.lock:
            farm = service.farm
            counts = farm.root.counts
            commands = {s.name: counts[s] for s in CommandStatus}
            commands["TOTAL"] = sum(counts)
            by_status = dict.fromkeys((s.name.capitalize() for s in RenderNodeStatus), 0)
            total_cores = idle_cores = 0
            for rn in farm.render_nodes.values():
                total_cores += rn.cores
                by_status[views.RENDER_NODE_STATUS_NAMES[int(rn.status)].capitalize()] += 1
                if rn.status != RenderNodeStatus.UNKNOWN:
                    idle_cores += max(rn.free_cores, 0)
            jobs = {views.NODE_STATUS_NAMES[s]: n for s, n in enumerate(farm.job_counts)}
            jobs["TOTAL"] = len(farm.root.children)
            licenses = [views.license(lic) for lic in farm.licenses.values()]
            dispatch = dict(service.last_pass)
        resp.media = {
            "date": time.time(),
            "commands": commands,
            "rendernodes": {
                "total": sum(by_status.values()),
                "totalCores": total_cores,
                "idleCores": idle_cores,
                "missingRenderNodes": by_status["Unknown"],
                "renderNodesByStatus": by_status,
            },
            "jobs": jobs,
            "licenses": licenses,
            "dispatch": dispatch,
        }


class System:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        service = self.service
        now = service.now()
        with service.lock:
            farm = service.farm
            alive = sum(1 for rn in farm.render_nodes.values() if rn.alive)
            counts = farm.root.counts
            media = {
                "version": puli.__version__,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "python": platform.python_version(),
                "startedAt": service.started_at,
                "uptime": now - service.started_at,
                "ready": service.ready,
                "jobs": len(farm.root.children),
                "commands": sum(counts),
                "runningCommands": counts[CommandStatus.ASSIGNED] + counts[CommandStatus.RUNNING],
                "renderNodes": {"total": len(farm.render_nodes), "alive": alive},
                "db": {"enabled": service.store is not None, "ok": service.db_error is None,
                       "error": service.db_error, "pendingWrites": service.pending_writes(),
                       "refused": len(service.held), "refusedRows": service.held_rows()},
                "degraded": bool(service.problems()),
                "problems": service.problems(),
                "dispatch": dict(service.last_pass),
                "summary": service.summary(),
            }
        resp.media = media


class Health:
    """A small JSON answer, without the farm lock: for load balancers and probes. It stays
    200 while degraded (the database down, rows it refused): the API still serves."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        problems = self.service.problems()
        resp.media = {"ok": True, "ready": self.service.ready,
                      "status": "degraded" if problems else "ok", "problems": problems}


class Metrics:
    """The Prometheus text format of the service's registry (metrics.py)."""

    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        self.service.drain_timings()
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.service.metrics.exposition()


class OpenAPI:
    def on_get(self, req, resp):
        resp.media = openapi.document()


def routes(service):
    return [
        ("/stats", Stats(service)),
        ("/system", System(service)),
        ("/health", Health(service)),
        ("/metrics", Metrics(service)),
        ("/openapi.json", OpenAPI()),
    ]
