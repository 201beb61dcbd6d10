"""A farm of simulated render nodes in one process: their API server, their calls, their faults.

Every node listens on its own loopback address (127.77.x.y, the port given or any free one),
all of them served by one aiohttp application that tells the node from the address a request
came to. Their calls to the dispatcher share one client session, whose keep-alive connections
`connections` bounds. Faults, by the options: nodes that die and come back (a reboot: every
run lost, registered again with nothing), nodes slow to answer, nodes refusing assignments,
and commands failing (behaviour.py).
"""
import asyncio
import json
import logging
import platform
import resource
import signal
import socket
import ssl
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

import puli

from .behaviour import Behaviour
from .ledger import Ledger
from .node import Refused, SimNode

log = logging.getLogger("puli.farmsim")

BIGINT_MAX = 2 ** 63 - 1
CALL_TIMEOUT = 10.0     # s for one call to the dispatcher, connection to last byte


@dataclass
class Options:
    dispatcher: str = "http://127.0.0.1:8004"
    nodes: int = 10
    cores: int = 1
    ram: int = 16000
    pools: tuple = ()
    name_prefix: str = "sim"
    address: str = "127.77"             # the nodes' addresses: <address>.x.y
    port: int = 0                       # 0: any free port, per node
    heartbeat_interval: float = 8.0
    progress_interval: float = 0.0      # 0: no progress reports, only RUNNING and the end
    durations: str = "fixed:1"
    fail_fraction: float = 0.0
    die_every: float = 0.0              # s between two node deaths across the farm (0: none)
    down_for: float = 30.0              # s a dead node stays down (0: for good)
    slow_fraction: float = 0.0
    slow_delay: float = 2.0
    refuse_fraction: float = 0.0
    run_for: float = 0.0                # s to run (0: until SIGINT or SIGTERM)
    token: str = ""
    query_token: str = ""               # a viewer token: reconcile with the dispatcher at the end
    ca_file: str = ""
    connections: int = 64
    seed: int = None
    gpus: int = 0


@dataclass
class Stats:
    heartbeats: int = 0
    registrations: int = 0
    deaths: int = 0
    calls: dict = field(default_factory=dict)        # "PUT report" -> {status: count}
    received: dict = field(default_factory=dict)     # "POST /commands/" -> {status: count}
    idle_gaps: list = field(default_factory=list)
    timeline: list = field(default_factory=list)     # [seconds, DONE so far, runs under way]


class SimFarm:
    def __init__(self, options):
        self.options = options
        self.ledger = Ledger()
        self.behaviour = Behaviour(options.durations, options.fail_fraction, options.seed)
        self.stats = Stats()
        self.nodes = []
        self.by_address = {}            # (host, port) -> SimNode
        self.first_starts = {}          # task id -> when a run of it first started here (time.time())
        self.sites = {}                 # SimNode -> its aiohttp site
        self.slow = set()
        self.refusing = set()
        self.session = None
        self.runner = None
        self.started = self.started_at = None
        self.closing = False
        self.stopping = None
        headers = {"Content-Type": "application/json"}
        if options.token:
            headers["Authorization"] = f"Bearer {options.token}"
        self.headers = headers
        self.url = options.dispatcher.rstrip("/")

    def now(self):
        return time.monotonic()

    # -- what the nodes say of themselves --------------------------------------------------------
    def host_info(self, node):
        gpus = [{"name": "Simulated GPU", "memory": 24576, "driver": "sim"} for _ in range(self.options.gpus)]
        caracteristics = {"os": "linux", "distribution": "farmsim", "kernel": platform.release(),
                          "arch": platform.machine(), "hostname": node.name, "cpuname": "simulated",
                          "isolation": "none", "softs": [], "gpus": gpus, "gpuCount": len(gpus)}
        if gpus:
            caracteristics["gpuModel"], caracteristics["gpuMemory"] = gpus[0]["name"], gpus[0]["memory"]
        return {"cores": node.cores, "ram": self.options.ram, "speed": 3.0,
                "caracteristics": caracteristics, "puliversion": puli.__version__}

    def load_info(self):
        return {"systemFreeRam": self.options.ram, "systemSwapPercentage": 0.0, "load": [0.0, 0.0, 0.0]}

    # -- calls to the dispatcher --------------------------------------------------------------
    async def call(self, method, path, body, token_headers=None):
        """(status, body dict), or (None, {}) when the dispatcher did not answer."""
        kind = f"{method} {_route_kind(path)}"
        counts = self.stats.calls.setdefault(kind, {})
        try:
            async with self.session.request(method, self.url + path, data=json.dumps(body),
                                            headers=token_headers or self.headers) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            counts["unanswered"] = counts.get("unanswered", 0) + 1
            log.debug("%s %s: %s", method, path, exc)
            return None, {}
        counts[status] = counts.get(status, 0) + 1
        try:
            answer = json.loads(payload) if payload else {}
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}

    # -- the nodes' API ------------------------------------------------------------------------
    def _app(self):
        app = web.Application(client_max_size=1 << 20, middlewares=[_answers])
        app.router.add_post("/commands/", self._on_assign)
        app.router.add_post("/commands", self._on_assign)
        app.router.add_get("/commands/", self._on_list)
        app.router.add_get("/commands", self._on_list)
        app.router.add_delete("/commands/{id:\\d+}/", self._on_stop)
        app.router.add_delete("/commands/{id:\\d+}", self._on_stop)
        app.router.add_post("/pause", self._on_pause)
        return app

    async def _node_of(self, request):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        node = self.by_address.get(tuple(sockname[:2])) if sockname else None
        if node is None or not node.alive:
            raise _error(503, "Gone", "this node is down")
        if not node.allows(request.headers.get("Authorization")):
            raise _error(401, "Unauthorized", "show the secret this node gave at its registration")
        if node in self.slow:
            await asyncio.sleep(self.options.slow_delay)
        return node

    def _count(self, request, status):
        key = f"{request.method} {request.path}" if request.method != "DELETE" else "DELETE /commands/<id>/"
        counts = self.stats.received.setdefault(key, {})
        counts[status] = counts.get(status, 0) + 1

    async def _on_assign(self, request):
        node = await self._node_of(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(_is_id(body.get(k)) for k in ("id", "assignment")):
            raise _error(400, "Bad request body", "an assignment needs integer 'id' and 'assignment'")
        if node in self.refusing:
            self._count(request, 503)
            raise _error(503, "Refusing", f"{node.name} refuses work (fault injection)")
        return self._accepted(request, node.accept, body)

    async def _on_stop(self, request):
        node = await self._node_of(request)
        try:
            number = int(request.query.get("assignment", "0"))
        except ValueError:
            raise _error(400, "Bad assignment", "'assignment' must be an integer") from None
        return self._accepted(request, node.order_stop, int(request.match_info["id"]), number)

    def _accepted(self, request, act, *args):
        """A node's answer to an order: 202 with what `act` says, or its refusal; counted."""
        try:
            answer = act(*args)
        except Refused as exc:
            self._count(request, exc.status)
            raise _error(exc.status, exc.title, exc.description) from None
        self._count(request, 202)
        return web.json_response(answer, status=202)

    async def _on_list(self, request):
        node = await self._node_of(request)
        return web.json_response({"commands": node.commands()})

    async def _on_pause(self, request):
        node = await self._node_of(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        content = body.get("content", "") if isinstance(body, dict) else None
        if not isinstance(content, (str, int)) or isinstance(content, bool):
            raise _error(400, "Bad content", "'content' must be a string such as \"0\" or \"-1\"")
        return web.json_response(node.pause(content), status=202)

    # -- the farm's life -----------------------------------------------------------------------
    def _listen(self, node):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((node.host, node.port))
        sock.listen(128)
        sock.setblocking(False)
        node.port = sock.getsockname()[1]
        self.by_address[(node.host, node.port)] = node
        return web.SockSite(self.runner, sock)

    async def _bring_up(self, node):
        site = self._listen(node)
        await site.start()
        self.sites[node] = site
        node.start()

    async def run(self):
        """Start the farm, run it until `run_for` has passed or a signal came; the summary."""
        options = self.options
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = min(hard, max(soft, options.nodes * 2 + options.connections + 256))
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        context = ssl.create_default_context(cafile=options.ca_file or None) if self.url.startswith("https") else None
        connector = aiohttp.TCPConnector(limit=options.connections, ssl=context if context else False,
                                         keepalive_timeout=4)
        # trust_env off: the farm's CA, not one an environment variable names.
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                             timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
        self.runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        rng = self.behaviour.rng
        for index in range(options.nodes):
            host = f"{options.address}.{index // 250}.{index % 250 + 1}"
            node = SimNode(self, index, host, options.port)
            self.nodes.append(node)
            if rng.random() < options.slow_fraction:
                self.slow.add(node)
            if rng.random() < options.refuse_fraction:
                self.refusing.add(node)
        self.started, self.started_at = self.now(), time.time()
        try:
            for node in self.nodes:
                await self._bring_up(node)
            background = [asyncio.create_task(self._sample())]
            if options.die_every > 0:
                background.append(asyncio.create_task(self._deaths()))
            try:
                await asyncio.wait_for(self.stopping.wait(), options.run_for or None)
            except TimeoutError:
                pass
            for task in background:
                task.cancel()
            await self._close()
            final = await self._final_statuses() if options.query_token else None
            return self.summary(final)
        finally:
            for node in self.nodes:
                for task in node.tasks:
                    task.cancel()
            await self.runner.cleanup()
            await self.session.close()

    async def _close(self, timeout=10.0):
        """As puli-worker stops: no new work, and the reports waiting go out (for `timeout` s).
        Then nothing more happens, so that what the dispatcher says next is the end's."""
        self.closing = True
        for node in self.nodes:
            node.hold_runs()
        deadline = self.now() + timeout
        while self.now() < deadline and any(node.pending or node.sending for node in self.nodes if node.alive):
            await asyncio.sleep(0.1)
        for node in self.nodes:
            node.freeze()

    async def _sample(self):
        while True:
            await asyncio.sleep(1.0)
            running = sum(1 for node in self.nodes for run in node.runs.values() if not run.final)
            self.stats.timeline.append([round(self.now() - self.started, 1), len(self.ledger.completions), running])

    async def _deaths(self):
        rng = self.behaviour.rng
        while True:
            await asyncio.sleep(self.options.die_every)
            alive = [node for node in self.nodes if node.alive]
            if not alive:
                continue
            node = rng.choice(alive)
            log.info("%s dies", node.name)
            self.stats.deaths += 1
            await node.die()
            site = self.sites.pop(node)
            await site.stop()
            if self.options.down_for > 0:
                asyncio.create_task(self._come_back(node))

    async def _come_back(self, node):
        await asyncio.sleep(self.options.down_for)
        log.info("%s comes back", node.name)
        await self._bring_up(node)

    async def _final_statuses(self):
        """{command id: status name} of every task the farm ran a command of, per the dispatcher."""
        headers = dict(self.headers, Authorization=f"Bearer {self.options.query_token}")
        final = {}
        for task_id in sorted(self.ledger.task_ids):
            status, body = await self.call("GET", f"/tasks/{task_id}/commands", None, headers)
            for command in body.get("commands", ()) if status == 200 else ():
                final[command["id"]] = command.get("statusName") or str(command.get("status"))
        return final

    def summary(self, final=None):
        elapsed = self.now() - self.started
        gaps = sorted(self.stats.idle_gaps)
        return {
            "nodes": self.options.nodes,
            "startedAt": self.started_at,
            "seconds": round(elapsed, 1),
            "completionsPerSecond": round(len(self.ledger.completions) / elapsed, 1) if elapsed else 0.0,
            "idleGap": _percentiles(gaps),
            "heartbeats": self.stats.heartbeats,
            "registrations": self.stats.registrations,
            "deaths": self.stats.deaths,
            "calls": self.stats.calls,
            "received": self.stats.received,
            "timeline": self.stats.timeline,
            "firstStarts": {str(k): v for k, v in self.first_starts.items()},
            "ledger": self.ledger.summary(final),
        }


def _percentiles(values):
    if not values:
        return {"count": 0}
    if len(values) == 1:
        return {"count": 1, "p50": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "p50": round(cuts[49], 4), "p99": round(cuts[98], 4), "max": round(values[-1], 4)}


def _route_kind(path):
    if path.endswith("/sysinfos"):
        return "heartbeat"
    if path.endswith("/paused"):
        return "paused"
    if "/commands/" in path and path.startswith("/rendernodes/"):
        return "report"
    if path.startswith("/tasks/"):
        return "query"
    return "register"


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= BIGINT_MAX


class _Answer(Exception):
    """An error answer, raised from a handler and written by the middleware."""

    def __init__(self, status, title, description):
        super().__init__(description)
        self.response = web.json_response({"title": title, "description": description}, status=status)


@web.middleware
async def _answers(request, handler):
    try:
        return await handler(request)
    except _Answer as exc:
        return exc.response


_error = _Answer
