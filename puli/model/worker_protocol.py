"""What workers tell the farm: registrations, heartbeats and command reports, fenced by assignment.

A report counts only for the command's current assignment on that render node; anything else
is a StaleAssignment, which tells the worker to stop that run and forget it.
"""
import ipaddress
import re

from . import limits
from .errors import Conflict, Forbidden, InvalidValue, NotFound, StaleAssignment
from .lookup import get_command, get_render_node
from .render_node_admin import set_render_node_pools
from .status import ACTIVE, FINAL, CommandStatus as CS


def register(farm, name, info, running, now, pools_from_config=None, token_id=None):
    """A worker (re)starts. Returns the ids of reported commands it must stop.

    `running` lists what the worker still runs: {id, assignment, status, completion, message}.
    Commands it still runs under their current assignment stay where they are (nothing runs
    twice); ours that it no longer has go back to the queue. The first token to register a
    node is the only one that may speak for it afterwards, and a registration cannot move a
    node that is alive to another address (a forged one would redirect its work).
    """
    name = name.lower()
    _check_node_info(name, info)
    for item in running or ():
        _check_report(item, farm.quotas.stats_bytes)
    host, _, port = name.rpartition(":") if ":" in name else (name, "", "")
    host, port = info.get("host") or host, info.get("port") or (int(port) if port else 8000)
    rn = farm.render_nodes.get(name)
    if rn is not None:
        check_binding(rn, token_id)
        if rn.alive and (rn.host, rn.port) != (host, port) and rn.register_date is not None:
            raise Conflict(f"render node {name} is alive at {rn.host}:{rn.port}: a registration "
                           f"cannot move it to {host}:{port} (wait {farm.rn_timeout:g} s of silence, "
                           "or remove the node first)")
    else:
        rn = farm.add_render_node(name, now)
    if rn.token_id is None and token_id is not None:
        rn.token_id = token_id
    rn.host, rn.port = host, port
    rn.secret = info.get("secret")
    rn.scheme = info.get("scheme") or "http"
    for key, attr in (("cores", "cores"), ("ram", "ram"), ("speed", "speed"),
                      ("puliversion", "puliversion"), ("caracteristics", "caracteristics")):
        if key in info:
            setattr(rn, attr, info[key])
    used_cores = sum(c.cores for c in rn.commands.values())
    used_ram = sum(c.ram for c in rn.commands.values())
    rn.free_cores = rn.cores - used_cores
    rn.free_ram = rn.ram - used_ram
    rn.register_date = now
    if "systemFreeRam" in info:
        rn.system_free_ram = info["systemFreeRam"]
    if pools_from_config is not None:
        set_render_node_pools(farm, rn, pools_from_config, create=False)
    else:
        set_render_node_pools(farm, rn, info.get("pools") or [])
    farm.dirty.render_nodes.add(rn)

    reported = {}
    for item in running or ():
        reported[item["id"]] = item
    stop = []
    for cmd in list(rn.commands.values()):
        item = reported.get(cmd.id)
        if item is None or item.get("assignment") != cmd.assignment:
            farm.requeue(cmd, now)      # the worker lost it (rebooted): run it again
    for cmd_id, item in reported.items():
        cmd = farm.commands.get(cmd_id)
        try:
            _check_fence(cmd, rn, item.get("assignment"))
        except (StaleAssignment, NotFound):
            stop.append(cmd_id)
            continue
        _apply_report(farm, cmd, item, now)
    touch(farm, rn, now)
    return stop


def _text_list(name, max_chars):
    def check(values):
        if not isinstance(values, list):
            raise InvalidValue(f"{name} must be a list of strings")
        for value in values:
            limits.text(name, value, max_chars)
    return check


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _host(value):
    """A host name or an IP address, never a URL nor anything with a path: it becomes one."""
    limits.text("host", value, limits.NAME_CHARS)
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        raise InvalidValue(f"host must be a host name or an IP address, not {value!r}")
    return value


def _secret(value):
    if not isinstance(value, str) or not 16 <= len(value) <= limits.NAME_CHARS:
        raise InvalidValue("secret must be a string of 16 to 255 characters")


def _scheme(value):
    if value not in ("http", "https"):
        raise InvalidValue(f"scheme must be http or https, not {value!r}")


# What a worker says of its node, as the store keeps it.
_NODE_INFO = {
    "host": _host,
    "secret": _secret,
    "scheme": _scheme,
    "port": lambda v: limits.integer("port", v, 1, 65535),
    "cores": lambda v: limits.integer("cores", v, 1),
    "ram": lambda v: limits.integer("ram (MB)", v, 0),
    "speed": lambda v: limits.number("speed", v, 0),
    "puliversion": lambda v: limits.text("puliversion", v, limits.NAME_CHARS),
    "caracteristics": lambda v: limits.json_text("caracteristics", v),
    "systemFreeRam": lambda v: limits.integer("systemFreeRam (MB)", v, 0),
    "systemSwapPercentage": lambda v: limits.number("systemSwapPercentage", v, 0, 100),
    "pools": _text_list("pools", limits.NAME_CHARS),
}


def _check_node_info(name, info):
    limits.text("a render node's name", name, limits.NAME_CHARS)
    host, colon, port = name.rpartition(":")
    if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidValue(f"render node {name!r}: the part after ':' must be a port (1-65535)")
    for key, value in info.items():
        check = _NODE_INFO.get(key)
        if check is not None and value is not None:
            check(value)


def check_binding(rn, token_id):
    """Only the token that registered a node speaks for it (token_id None: auth is off)."""
    if token_id is not None and rn.token_id is not None and rn.token_id != token_id:
        raise Forbidden(f"render node {rn.name} is bound to another token: only the token that "
                        "registered it may speak for it")


def touch(farm, rn, now):
    """The node was heard from: alive and reachable again."""
    rn.last_alive = now
    if not rn.alive or not rn.reachable:
        rn.alive = rn.reachable = True
        farm.refresh_render_node(rn)


def unreachable(farm, rn):
    """The worker did not take an assignment: give it nothing more until it is heard from."""
    rn.reachable = False
    farm.refresh_render_node(rn)


def heartbeat(farm, name, info, now, token_id=None):
    """The periodic news of a node (NotFound when it must register first)."""
    rn = get_render_node(farm, name)
    check_binding(rn, token_id)
    _check_node_info(rn.name, info)
    if "systemFreeRam" in info:
        rn.system_free_ram = info["systemFreeRam"]
    if "systemSwapPercentage" in info:
        rn.system_swap_percentage = info["systemSwapPercentage"]
    for key in ("cores", "ram", "speed", "puliversion", "caracteristics"):
        if key in info and getattr(rn, key) != info[key]:
            if key == "cores":
                rn.free_cores += info[key] - rn.cores
            elif key == "ram":
                rn.free_ram += info[key] - rn.ram
            setattr(rn, key, info[key])
            farm.dirty.render_nodes.add(rn)
    touch(farm, rn, now)
    farm.refresh_render_node(rn)
    return rn


def _check_fence(cmd, rn, assignment):
    if cmd is None:
        raise NotFound("unknown command")
    if cmd.render_node is not rn or not cmd.assignment or cmd.assignment != assignment:
        raise StaleAssignment(f"command {cmd.id} is no longer assigned to {rn.name} under assignment {assignment}")
    if cmd.status not in ACTIVE and cmd.status not in FINAL:
        raise StaleAssignment(f"command {cmd.id} is {cmd.status.name}, not running on {rn.name}")


def command_update(farm, name, command_id, report, now, token_id=None):
    """A worker reports progress or the end of a command it runs.

    Refused (StaleAssignment) when the report's assignment is not the command's current one:
    the worker must then stop the command. A late report never overwrites a newer state.
    """
    rn = get_render_node(farm, name)
    check_binding(rn, token_id)
    cmd = get_command(farm, command_id)
    _check_report(report, farm.quotas.stats_bytes)
    touch(farm, rn, now)
    _check_fence(cmd, rn, report.get("assignment"))
    _apply_report(farm, cmd, report, now)
    return cmd


def _check_report(report, stats_bytes):
    """Refuse what the store could not keep before anything of the report is applied."""
    status = report.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)
                               or status not in CS._value2member_map_):
        raise InvalidValue(f"status {limits.show(status)} is not a command status (0..8)")
    if report.get("completion") is not None:
        limits.number("completion", report["completion"])
    if report.get("stats") is not None:
        encoded = limits.json_text("stats", report["stats"])
        if len(encoded) > stats_bytes:
            raise InvalidValue(f"stats are {len(encoded)} bytes as JSON; at most {stats_bytes} are "
                               "kept per command (max_stats_bytes)")


MAX_MESSAGE = 4096                      # characters of a command's message that are kept


def _apply_report(farm, cmd, report, now):
    status = report.get("status")
    if status is not None:
        status = CS(status)
    if cmd.status in FINAL:
        return                          # a repeated final report: already applied
    if "message" in report and report["message"] is not None:
        cmd.message = str(report["message"])[:MAX_MESSAGE]
        farm.dirty.commands.add(cmd)
    if report.get("stats") is not None:
        cmd.stats = report["stats"]
        farm.dirty.commands.add(cmd)
    completion = report.get("completion")
    if completion is not None and status not in (CS.DONE,):
        farm.set_completion(cmd, min(max(float(completion), 0.0), 1.0))
    cmd.update_time = now
    if status is None or status == cmd.status:
        return
    if status == CS.RUNNING:
        farm.set_status(cmd, CS.RUNNING, now)
    elif status in (CS.DONE, CS.ERROR):
        if cmd.status == CS.ASSIGNED:
            farm.run_started(cmd, now)  # it ran and ended before a RUNNING report got here
        farm.finish(cmd, status, now)
    elif status == CS.CANCELED:
        farm.requeue(cmd, now)          # killed on the node, not by a user: run it again
    elif status == CS.TIMEOUT:
        farm.finish(cmd, CS.ERROR, now)  # its max run time passed on the worker
