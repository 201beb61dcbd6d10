"""The routes workers call: registration, heartbeat (sysinfos) and command reports.

The command report is the hottest route of the dispatcher (thousands a second on a big farm):
it checks a handful of fields, takes the lock for one model call and answers a two-key dict.
It wakes the dispatch loop only when the report freed resources or produced a worker message.
"""
from ...model import worker_protocol
from ...model.status import CommandStatus
from ..auth import WORKER
from ..settings import file_pools_of
from .common import BadField, field, pools_from_file, read_body

_COMMAND_STATUSES = CommandStatus._value2member_map_


def _report(item, where):
    """One command a worker reports: {id?, assignment, status?, completion?, message?, stats?}."""
    out = {}
    assignment = item.get("assignment")
    if isinstance(assignment, bool) or not isinstance(assignment, int):
        raise BadField(f"{where}assignment", f"'{where}assignment' must be the integer the assignment came with")
    out["assignment"] = assignment
    status = item.get("status")
    if status is not None:
        if isinstance(status, bool) or not isinstance(status, int) or status not in _COMMAND_STATUSES:
            raise BadField(f"{where}status", f"'{where}status' must be a command status (0..8), not {status!r}")
        out["status"] = _COMMAND_STATUSES[status]
    completion = item.get("completion")
    if completion is not None:
        if isinstance(completion, bool) or not isinstance(completion, (int, float)):
            raise BadField(f"{where}completion", f"'{where}completion' must be a number from 0 to 1")
        out["completion"] = completion
    message = item.get("message")
    if message is not None:
        if not isinstance(message, str):
            raise BadField(f"{where}message", f"'{where}message' must be a string")
        out["message"] = message
    stats = item.get("stats")
    if stats is not None:
        if not isinstance(stats, dict):
            raise BadField(f"{where}stats", f"'{where}stats' must be an object")
        out["stats"] = stats
    return out


def token_id(req):
    """A worker's token (None for anybody else, or with auth off): the one a render node is
    bound to, that the model holds its requests to."""
    identity = req.context.identity
    return identity.token_id if identity is not None and identity.role == WORKER else None


class Registration:
    """POST /rendernodes/<name>/: a worker (re)starts and tells what it still runs."""

    def on_post(self, req, resp, name):
        body = read_body(req)
        name = name.lower()
        if "name" in body and str(body["name"]).lower() != name:
            raise BadField("name", f"the body names {body['name']!r} but the URL {name!r}")
        info = {
            "host": field(body, "host", str, None, nullable=True) or name.rsplit(":", 1)[0],
            "cores": field(body, "cores", int, minimum=1),
            "ram": field(body, "ram", int, minimum=0),
        }
        port = field(body, "port", int, None, minimum=1, maximum=65535, nullable=True)
        if port is not None:
            info["port"] = port
        for key, kind in (("speed", float), ("puliversion", str), ("caracteristics", dict),
                          ("systemFreeRam", float), ("secret", str), ("scheme", str)):
            value = field(body, key, kind, None, minimum=0 if kind is float else None, nullable=True)
            if value is not None:
                info[key] = int(value) if key == "systemFreeRam" else value
        pools = body.get("pools") or []
        if not isinstance(pools, list) or not all(isinstance(p, str) for p in pools):
            raise BadField("pools", "'pools' must be a list of pool names")
        info["pools"] = pools
        commands = body.get("commands") or []
        if not isinstance(commands, list):
            raise BadField("commands", "'commands' must be a list of the commands the worker runs")
        running = []
        for i, item in enumerate(commands):
            where = f"commands[{i}]."
            if not isinstance(item, dict):
                raise BadField(f"commands[{i}]", f"'commands[{i}]' must be an object")
            cmd_id = item.get("id")
            if isinstance(cmd_id, bool) or not isinstance(cmd_id, int):
                raise BadField(f"{where}id", f"'{where}id' must be a command id")
            running.append(dict(_report(item, where), id=cmd_id))

        service = self.service
        config_pools = file_pools_of(service.settings, name) if pools_from_file(service) else None
        now = service.now()
        with service.lock:
            farm = service.farm
            new = name not in farm.render_nodes
            for pool in config_pools or ():
                farm.get_pool(pool)     # the configuration is the authority on pools
            stop = worker_protocol.register(farm, name, info, running, now, pools_from_config=config_pools,
                                            token_id=token_id(req))
            rn = farm.render_nodes[name]
            media = {"name": rn.name, "id": rn.id, "status": int(rn.status), "stop": stop,
                     "flushed": service.flushed, "epoch": service.epoch}
        service.changed()
        resp.status = 201 if new else 200
        resp.media = media


class SysInfos:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, name):
        """Heartbeat; 404 for an unknown node, which must then register again."""
        body = read_body(req, required=False)
        info = {}
        for key, kind, minimum in (("systemFreeRam", float, 0), ("systemSwapPercentage", float, 0),
                                   ("cores", int, 1), ("ram", int, 0), ("speed", float, 0),
                                   ("puliversion", str, None), ("caracteristics", dict, None)):
            value = field(body, key, kind, None, minimum=minimum, nullable=True)
            if value is not None:
                info[key] = int(value) if key == "systemFreeRam" else value
        service = self.service
        now = service.now()
        with service.lock:
            farm = service.farm
            rn = worker_protocol.heartbeat(farm, name, info, now, token_id=token_id(req))
            media = {"name": rn.name, "status": int(rn.status), "paused": rn.paused,
                     "flushed": service.flushed, "epoch": service.epoch}
            wake = farm.wake
        if wake:
            service.changed()
        resp.media = media


class CommandReport:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, name, id):
        """Progress or end of a command: 409 with "stop": true when it is no longer the
        worker's to run, 404 for an unknown node or command. "flush" names the flush that
        commits it: the worker keeps a command's end until a heartbeat says it is flushed."""
        report = _report(read_body(req), "")
        service = self.service
        now = service.now()
        with service.lock:
            farm = service.farm
            cmd = worker_protocol.command_update(farm, name, id, report, now, token_id=token_id(req))
            status = int(cmd.status)
            flush = service.write_token()
            wake = farm.wake or bool(farm.outbox)
        if wake:
            service.changed()
        resp.media = {"id": id, "status": status, "flush": flush, "epoch": service.epoch}


def routes(service):
    return [
        ("/rendernodes/{name}/sysinfos", SysInfos(service)),
        ("/rendernodes/{name}/commands/{id:int}", CommandReport(service)),
    ]
