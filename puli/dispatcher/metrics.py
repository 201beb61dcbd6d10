"""The dispatcher's Prometheus metrics, served at GET /metrics: a registry of its own per service.

Every figure is cheap to keep and to read. The farm's counts come from the counters the model
keeps as it goes (commands by status on the root, jobs by status, runs ended by status); the
scrape takes the farm lock for those, and one pass over the render nodes (thousands, never
the commands). The timings the model measures (ready -> running, a node's idle gap) wait in
its bounded buffers until the dispatch loop or a scrape drains them into the histograms,
outside the lock. Requests are counted by a falcon middleware, labelled by route template.
"""
import time

import prometheus_client
from prometheus_client import (CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..model.status import CommandStatus, NodeStatus, RenderNodeStatus
from .auth import _route

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "RequestMetrics"]

COMMAND_NAMES = [s.name for s in CommandStatus]
JOB_NAMES = [s.name for s in NodeStatus]
RN_NAMES = [s.name for s in RenderNodeStatus]
FINAL_NAMES = [(int(s), s.name) for s in (CommandStatus.DONE, CommandStatus.TIMEOUT, CommandStatus.ERROR,
                                           CommandStatus.CANCELED)]
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Buckets, in seconds, for what each histogram measures.
PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
                12 * 3600.0, 86400.0)
IDLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class Metrics:
    """The series of one service, in its own registry (several apps in one process never clash)."""

    def __init__(self, service):
        # The *_created twins of every counter and histogram double the series for nothing a
        # dashboard reads (process-wide, the worker's exporter agrees).
        prometheus_client.disable_created_metrics()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(_FarmCollector(service))
        self.dispatch_pass = Histogram("puli_dispatch_pass_seconds", "Duration of one dispatch pass",
                                       buckets=PASS_BUCKETS, registry=registry)
        self.assignments = Counter("puli_dispatch_assignments", "Commands assigned by dispatch passes",
                                   registry=registry)
        self.assignment_latency = Histogram(
            "puli_assignment_latency_seconds",
            "From a command becoming READY (or requeued to READY) to its worker's first RUNNING report",
            buckets=WAIT_BUCKETS, registry=registry)
        self.node_idle = Histogram(
            "puli_node_idle_seconds",
            "A render node's gap between its last command ending (none left) and its next assignment",
            buckets=IDLE_BUCKETS, registry=registry)
        self.http_requests = Counter("puli_http_requests", "HTTP requests answered",
                                     ("route", "method", "status"), registry=registry)
        self.http_seconds = Histogram("puli_http_request_seconds", "Time to answer an HTTP request",
                                      ("route", "method"), buckets=HTTP_BUCKETS, registry=registry)
        self.flush_seconds = Histogram("puli_flush_seconds", "Duration of a write-behind flush transaction",
                                       buckets=FLUSH_BUCKETS, registry=registry)
        self.flush_lag = Histogram(
            "puli_flush_lag_seconds",
            "Age at commit of the oldest change a flush wrote (counted from the flush before it)",
            buckets=LAG_BUCKETS, registry=registry)
        self.flushes = Counter("puli_flushes", "Flush transactions committed", registry=registry)
        self.database_errors = Counter("puli_database_errors",
                                       "Failed database writes (flushes, the audit trail)", registry=registry)
        self.deliveries = Counter("puli_deliveries", "Messages sent to workers, by outcome",
                                  ("kind", "outcome"), registry=registry)

    def observe_timings(self, timings):
        """What Farm.take_timings() gave (taken under the lock; observed outside it)."""
        waits, gaps = timings
        for seconds in waits:
            self.assignment_latency.observe(seconds)
        for seconds in gaps:
            self.node_idle.observe(seconds)

    def exposition(self):
        return generate_latest(self.registry)


class _FarmCollector:
    """The farm's counts, read at scrape time under the lock: O(statuses + render nodes)."""

    def __init__(self, service):
        self.service = service

    def describe(self):
        return []                       # counted at each scrape: nothing to check at registration

    def collect(self):
        service = self.service
        with service.lock:
            farm = service.farm
            commands = list(farm.root.counts)
            jobs = list(farm.job_counts)
            ended = list(farm.ended)
            nodes = [0] * len(RN_NAMES)
            cores = used = 0
            for rn in farm.render_nodes.values():
                nodes[rn.status] += 1
                if rn.alive:
                    cores += rn.cores
                    used += rn.cores - rn.free_cores
            licenses = [(lic.name, lic.used, lic.maximum) for lic in farm.licenses.values()]
            refused = len(service.held)
        yield _gauge("puli_commands", "Commands in memory, by status", "status", zip(COMMAND_NAMES, commands))
        yield _gauge("puli_jobs", "Jobs in memory, by status", "status", zip(JOB_NAMES, jobs))
        yield _gauge("puli_render_nodes", "Render nodes, by status", "status", zip(RN_NAMES, nodes))
        yield _gauge("puli_cores", "Cores of the render nodes that are up", "state",
                     (("total", cores), ("used", used)))
        family = CounterMetricFamily("puli_command_ends", "Commands that reached a final status (from an unfinished one)",
                                     labels=("status",))
        for index, name in FINAL_NAMES:
            family.add_metric((name,), ended[index])
        yield family
        family = GaugeMetricFamily("puli_license_tokens", "License tokens, by license", labels=("license", "state"))
        for name, in_use, maximum in licenses:
            family.add_metric((name, "used"), in_use)
            family.add_metric((name, "max"), maximum)
        yield family
        yield GaugeMetricFamily("puli_database_up", "1 while the last database write succeeded",
                                value=0 if service.db_error is not None else 1)
        yield GaugeMetricFamily("puli_database_refused_rows", "Changes the database refused, kept aside",
                                value=refused)
        yield GaugeMetricFamily("puli_ready", "1 once the farm is restored and the loop runs",
                                value=1 if service.ready else 0)


def _gauge(name, documentation, label, values):
    family = GaugeMetricFamily(name, documentation, labels=(label,))
    for key, value in values:
        family.add_metric((key,), value)
    return family


class RequestMetrics:
    """Falcon middleware: every answer counted by route template, method and status, and timed.
    The labelled children are looked up once per (route, method, status) and kept."""

    def __init__(self, metrics):
        self.requests = metrics.http_requests
        self.seconds = metrics.http_seconds
        self._children = {}

    def process_request(self, req, resp):
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded):
        started = getattr(req.context, "metrics_started", None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        method = req.method if req.method in METHODS else "other"     # any token is a method
        key = (req.uri_template, method, resp.status_code)
        children = self._children.get(key)
        if children is None:
            route = _route(req.uri_template) if req.uri_template else "unrouted"
            children = self._children[key] = (self.requests.labels(route, method, str(resp.status_code)),
                                              self.seconds.labels(route, method))
        children[0].inc()
        children[1].observe(elapsed)
