"""The OpenAPI 3.0 document of every route the dispatcher serves (GET /openapi.json).

Routes are listed once below with their parameters, bodies and answers; tests check the list
against the app's router both ways.
"""
import copy
import functools
import re

import puli
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from puli.openapi_schema import ANY_OBJ, BOOL, INT, NUM, STR, arr, obj, ref

from . import auth
from .resources import filters


TIME = {"type": "number", "nullable": True, "description": "seconds since the epoch"}
COMMAND_STATUS = {"type": "integer", "minimum": 0, "maximum": 8,
                  "description": "0 BLOCKED, 1 READY, 2 ASSIGNED, 3 RUNNING, 4 FINISHING, 5 DONE, "
                                 "6 TIMEOUT, 7 ERROR, 8 CANCELED"}
NODE_STATUS = {"type": "integer", "minimum": 0, "maximum": 6,
               "description": "0 BLOCKED, 1 READY, 2 RUNNING, 3 DONE, 4 ERROR, 5 CANCELED, 6 PAUSED"}
RN_STATUS = {"type": "integer", "minimum": 0, "maximum": 6,
             "description": "0 UNKNOWN, 1 BOOTING, 2 PAUSED, 3 IDLE, 4 ASSIGNED, 5 WORKING, 6 FINISHING"}

# What workers learn of what the dispatcher committed (and of its restarts).
DURABILITY = {
    "flushed": {"type": "integer", "description": "the last flush whose changes are all committed"},
    "epoch": {"type": "string", "description": "this dispatcher's life: a new one means it restarted "
                                               "and the worker must register again"},
}

# A restart never stops what runs: the answer says what it left alone.
LEFT_ALONE = {
    "leftAlone": {"type": "integer", "description": "running or assigned commands a restart left alone"},
    "leftAloneCommands": arr(obj({"id": INT, "status": COMMAND_STATUS, "statusName": STR,
                                  "renderNode": {"type": "string", "nullable": True}},
                                 description="the first 100 of them")),
}

SCHEMAS = {
    "Error": obj({
        "title": STR,
        "description": STR,
        "field": {"type": "string", "description": "the request field at fault, when one is"},
        "stop": {"type": "boolean", "description": "409 to a worker: stop that command"},
    }, required=("title", "description")),
    "Node": obj({
        "id": INT, "name": STR, "type": {"type": "string", "enum": ["TaskGroup", "Task"]},
        "parent": {"type": "integer", "nullable": True}, "job": {"type": "integer", "nullable": True},
        "user": STR, "priority": INT, "dispatchKey": NUM,
        "maxRN": {"type": "integer", "description": "-1: no cap of its own"},
        "allocatedRN": {"type": "integer", "description": "commands running now"},
        "status": NODE_STATUS, "statusName": STR, "completion": NUM,
        "creationTime": TIME, "startTime": TIME, "updateTime": TIME, "endTime": TIME,
        "readyCommandCount": INT, "doneCommandCount": INT, "commandCount": INT,
        "tags": ANY_OBJ, "paused": BOOL, "timer": TIME,
        "averageTimeByFrame": {"type": "number", "nullable": True, "description": "seconds"},
        "minTimeByFrame": {"type": "number", "nullable": True},
        "maxTimeByFrame": {"type": "number", "nullable": True},
        "dependencies": arr({"type": "array", "description": "[node id, [node statuses]]"}),
        "environment": ANY_OBJ, "arguments": ANY_OBJ, "requirements": ANY_OBJ,
        "poolName": {"type": "string", "description": "jobs only"},
        "poolShareId": {"type": "integer", "description": "jobs only"},
        "userDefinedMaxRN": BOOL,
        "children": arr(INT), "strategy": STR,
        "maxAttempt": {"type": "integer", "nullable": True},
        "runner": STR, "lic": STR, "ramUse": INT, "minNbCores": INT, "maxNbCores": INT,
        "maxRunTime": NUM, "commands": arr(INT),
        "archived": BOOL,
    }, required=("id", "name", "type", "status")),
    "Command": obj({
        "id": INT, "description": STR, "task": INT, "job": INT, "status": COMMAND_STATUS,
        "statusName": STR, "completion": NUM, "attempt": INT, "message": STR,
        "renderNode": {"type": "string", "nullable": True}, "assignment": INT,
        "startTime": TIME, "updateTime": TIME, "endTime": TIME, "creationTime": TIME,
        "nbFrames": INT, "avgTimeByFrame": {"type": "number", "nullable": True},
        "stats": {"type": "object", "nullable": True},
        "arguments": {"type": "object", "description": "single-command reads only"},
    }, required=("id", "status")),
    "RenderNode": obj({
        "id": INT, "name": {"type": "string", "description": "host:port, lower case"},
        "host": STR, "port": INT, "cores": INT, "coresNumber": INT, "freeCores": INT,
        "freeCoresNumber": INT, "ramSize": {"type": "integer", "description": "MB"},
        "freeRam": INT, "speed": NUM, "status": RN_STATUS, "statusName": STR,
        "caracteristics": ANY_OBJ, "pools": arr(STR), "puliversion": STR,
        "systemFreeRam": {"type": "integer", "nullable": True}, "systemSwapPercentage": NUM,
        "lastAliveTime": TIME, "createDate": TIME, "registerDate": TIME, "performance": NUM,
        "paused": BOOL, "quarantined": BOOL, "excluded": BOOL, "isRegistered": BOOL,
        "commands": arr(INT),
    }, required=("name", "status")),
    "Pool": obj({"id": INT, "name": STR, "renderNodes": arr(STR), "poolShares": arr(INT)}),
    "PoolShare": obj({"id": INT, "pool": STR, "poolName": STR, "node": INT, "nodeId": INT,
                      "maxRN": INT, "allocatedRN": INT, "userDefinedMaxRN": BOOL}),
    "License": obj({"name": STR, "max": INT, "used": INT, "rns": arr(STR)}),
    "Graph": obj({
        "name": STR, "user": STR, "poolName": STR, "maxRN": INT, "meta": ANY_OBJ,
        "root": {"type": "integer", "description": "index of the job's node in tasks"},
        "tasks": arr(obj({
            "type": {"type": "string", "enum": ["TaskGroup", "Task"]}, "name": STR,
            "tasks": arr(INT), "dependencies": arr({"type": "array"}), "arguments": ANY_OBJ,
            "environment": ANY_OBJ, "requirements": ANY_OBJ, "tags": ANY_OBJ, "maxRN": INT,
            "priority": INT, "dispatchKey": NUM, "timer": NUM, "strategy": STR, "runner": STR,
            "minNbCores": INT, "maxNbCores": INT, "ramUse": INT, "lic": STR, "maxAttempt": INT,
            "maxRunTime": NUM, "commands": arr(obj({"description": STR, "arguments": ANY_OBJ,
                                                    "nbFrames": {"type": "integer", "minimum": 1}})),
        }, required=("name",))),
    }, required=("tasks",), description="Puli's graph wire format; refused whole when malformed"),
    "GraphCreated": obj({"id": INT, "name": STR, "nodes": arr(INT), "commands": INT}),
    "OpenJDJob": obj({
        "template": {**ANY_OBJ, "description": "an OpenJD job template (jobtemplate-2023-09; extension TASK_CHUNKING)"},
        "parameters": {"type": "object", "additionalProperties": {"type": ["string", "number"]},
                       "description": "job parameter values by name; defaults fill the others"},
        "pool": STR, "priority": INT,
    }, required=("template",), description="sent as JSON, or as YAML (Content-Type: application/yaml)"),
    "OpenJDJobCreated": obj({"id": INT, "name": STR, "nodes": arr(INT), "commands": INT,
                             "openjd": obj({"name": STR, "parameters": ANY_OBJ})}),
    "Changed": obj({"id": INT, "changed": {"type": "integer", "description": "commands changed"},
                    "status": NODE_STATUS, "statusName": STR, **LEFT_ALONE}),
    "QueryResult": obj({
        "summary": obj({"count": INT, "totalInDispatcher": INT, "requestTime": NUM,
                        "requestDate": STR}),
        "items": arr(ANY_OBJ),
    }),
    "EditResult": obj({
        "summary": obj({"editedCount": INT, "filteredCount": INT, "totalInDispatcher": INT,
                        "requestTime": NUM, "requestDate": STR, **LEFT_ALONE}),
        "editedJobs": arr(INT),
    }),
    "CommandReport": obj({
        "assignment": {"type": "integer", "description": "the fencing token the assignment came with"},
        "status": COMMAND_STATUS,
        "completion": {"type": "number", "minimum": 0, "maximum": 1},
        "message": STR,
        "stats": ANY_OBJ,
    }, required=("assignment",)),
    "Registration": obj({
        "name": STR, "host": STR, "port": INT, "cores": INT, "ram": {"type": "integer", "description": "MB"},
        "speed": NUM, "caracteristics": ANY_OBJ, "puliversion": STR, "pools": arr(STR),
        "systemFreeRam": INT,
        "commands": arr(obj({"id": INT, "assignment": INT, "status": COMMAND_STATUS,
                             "completion": NUM, "message": STR}, required=("id", "assignment"))),
    }, required=("cores", "ram")),
    "Registered": obj({"name": STR, "id": INT, "status": RN_STATUS, "stop": arr(INT), **DURABILITY},
                      description="stop: reported commands the worker must kill"),
    "SysInfos": obj({"systemFreeRam": INT, "systemSwapPercentage": NUM, "cores": INT, "ram": INT,
                     "speed": NUM, "puliversion": STR, "caracteristics": ANY_OBJ}),
    "Stats": obj({"date": NUM, "commands": obj(additional=INT), "rendernodes": ANY_OBJ,
                  "jobs": obj(additional=INT), "licenses": arr(ref("License")),
                  "dispatch": ANY_OBJ}),
    "System": obj({"version": STR, "host": STR, "pid": INT, "uptime": NUM, "ready": BOOL,
                   "jobs": INT, "commands": INT, "renderNodes": ANY_OBJ,
                   "db": obj({"enabled": BOOL, "ok": BOOL, "error": {"type": "string", "nullable": True},
                              "pendingWrites": BOOL,
                              "refused": {"type": "integer", "description": "changes the database refused"},
                              "refusedRows": arr(obj({"table": STR, "key": {}, "reason": STR, "since": NUM}))}),
                   "degraded": BOOL, "problems": arr(STR),
                   "dispatch": ANY_OBJ}),
}


def _q(name, schema, description, repeat=False, required=False):
    param = {"name": name, "in": "query", "description": description, "required": required,
             "schema": arr(schema) if repeat else schema}
    if repeat:
        param["style"] = "form"
        param["explode"] = True
    return param


PAGE = [_q("offset", INT, "rows to skip"), _q("limit", INT, "rows to return (default 1000)")]
# The values each kind of filter takes (resources/filters.py).
_FILTER_SCHEMAS = {
    "ints": INT, "strs": STR, "patterns": STR, "node_statuses": NODE_STATUS,
    "command_statuses": COMMAND_STATUS, "rn_statuses": RN_STATUS, "date": STR, "window": STR,
    "int_comparisons": STR, "float_comparisons": STR, "tags": obj(additional=arr(STR)),
}


def constraints(table):
    """The constraint_<key> parameters of a route's filters."""
    return [_q(filters.PARAM_PREFIX + f.key, _FILTER_SCHEMAS[f.kind], f.doc, f.repeat) for f in table.values()]


def filter_body(table, **more):
    """The POST body of a route's filters."""
    schemas = {f.key: arr(_FILTER_SCHEMAS[f.kind]) if f.repeat else _FILTER_SCHEMAS[f.kind]
               for f in table.values()}
    return obj({**schemas, **more})


JOB_CONSTRAINTS = constraints(filters.JOB_QUERY)
ATTR = _q("attr", STR, "fields to return (default: Puli's columns); tags:<key> for a tag", True)


def _body(schema, example=None, types=("application/json",)):
    media = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {t: media for t in types}}


def _fields(**props):
    return obj(props, required=tuple(props))


OPERATIONS = []
JSON = "application/json"


def op(method, path, summary, *, role, own=None, query=(), body=None, returns=None, ok=200, errors=(),
       description=None, media=(JSON,), links=None, example=None, body_types=("application/json",)):
    """One route. `role`: who may call it (one role or a tuple; auth.py's ranks apply), `own`:
    where an artist's own job is found (see auth.Access); both are enforced by auth.py from
    here, and published as the operation's security and x-puli-role. `ok`: its success status,
    or several; `media`: their content types, or {content type: schema} (errors are always
    JSON); `links`: the operations its answer leads to (see follow); `example`: a body it takes;
    `body_types`: the content types its body may come as."""
    roles = (role,) if isinstance(role, str) else tuple(role)
    assert all(r in (*auth.ROLES, auth.PUBLIC) for r in roles), (path, roles)
    OPERATIONS.append(dict(method=method, path=path, summary=summary, query=list(query), body=body,
                           returns=returns, ok=ok, errors=tuple(errors), description=description,
                           access=auth.Access(roles, own), media=media, links=links or {}, example=example,
                           body_types=tuple(body_types)))


NODE = ref("Node")
NODE_ERRORS = (400, 404)


def follow(*targets, **parameters):
    """OpenAPI links to the operations `targets` (operationIds), each given `parameters`
    (OpenAPI runtime expressions): what a client, and the stateful fuzz, does next."""
    return {target: (target, parameters) for target in targets}


BY_ID = {"id": "$response.body#/id"}
BY_NAME = {"name": "$response.body#/name"}

# -- submission and the tree --------------------------------------------------------------------------
GRAPH_EXAMPLE = {
    "name": "shot010", "user": "ann", "poolName": "default", "root": 0,
    "tasks": [{"type": "TaskGroup", "name": "shot010", "tasks": [1, 2]},
              {"type": "Task", "name": "render", "maxNbCores": 4,
               "arguments": {"cmd": "nuke -x -F %%MI_START%%-%%MI_END%% comp.nk", "start": 1, "end": 100,
                             "packetSize": 10}},
              {"type": "Task", "name": "review", "dependencies": [[1, [3]]],
               "arguments": {"cmd": "make-review shot010"}}],
}
op("post", "/graphs", "Submit a job", body=ref("Graph"), returns=ref("GraphCreated"), ok=201,
   errors=(400, 413), description="Validated whole before anything is created; Location names the job's node.", role="artist",
   example=GRAPH_EXAMPLE, links=follow("get_nodes_id", "get_nodes_id_children", "put_nodes_id_status", "put_nodes_id_paused",
                "put_nodes_id_cancel", "put_nodes_id_pool", "get_tasks_id_tree", "get_tasks_id_commands", **BY_ID))
op("post", "/openjd/jobs", "Submit an OpenJD job template with its parameter values", body=ref("OpenJDJob"),
   returns=ref("OpenJDJobCreated"), ok=201, errors=(400, 413, 415), role="artist",
   body_types=("application/json", "application/yaml"),
   description="Validated and expanded by openjd-model (a refusal carries its message, naming the place): "
               "steps become Tasks, their parameter spaces (or chunks) Commands. JSON or YAML body.",
   links=follow("get_nodes_id", "get_tasks_id_tree", **BY_ID))
op("get", "/nodes", "The farm's root node (id 1); its children are the jobs", returns=NODE, role="viewer")
op("get", "/nodes/{id}", "A node (job, TaskGroup or Task); archived nodes come from the database",
   returns=NODE, errors=(404, 503), role="viewer")
op("get", "/nodes/{id}/children", "Children of a node, filtered, sorted and paged", query=[
    _q("id", INT, "child ids", True), _q("status", NODE_STATUS, "statuses", True),
    _q("user", STR, "users", True), _q("days", NUM, "created in the last N days"),
    _q("tags:<key>", STR, "tag values (one parameter per tag key)", True),
    _q("sortField", STR, "a node field or tags:<key>; '-' prefix sorts descending"),
    _q("offset", STR, "an integer, or 'last' for the last page"), _q("limit", INT, "default 25"),
], returns=obj({"children": arr(NODE), "total": INT, "offset": INT, "limit": INT}), errors=NODE_ERRORS, role="viewer")
op("put", "/nodes/{id}/status", "Restart (1), force DONE (3) or cancel (5) a subtree",
   query=[_q("cmdStatus", COMMAND_STATUS, "with status 1: retry only commands in these statuses", True)],
   body=obj({"status": {"type": "integer", "enum": [1, 3, 5]}, "cascade": BOOL}, required=("status",)),
   returns=ref("Changed"), errors=NODE_ERRORS, role="artist", own="node")
op("put", "/nodes/{id}/paused", "Pause or resume a subtree (running commands go on)",
   body=_fields(paused=BOOL), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("put", "/nodes/{id}/pauseKill", "Pause a subtree and kill its running commands (back to READY)",
   returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("put", "/nodes/{id}/cancel", "Cancel every unfinished command of a subtree", returns=ref("Changed"),
   errors=NODE_ERRORS, role="artist", own="node")
op("put", "/nodes/{id}/pool", "Move a job to another pool",
   body=obj({"poolName": STR, "maxRN": INT}, required=("poolName",)), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
for _name, _schema, _what in (
        ("name", STR, "Rename a node"), ("priority", INT, "Set a node's priority"),
        ("dispatchKey", NUM, "Set a node's dispatchKey (higher: larger share of its pool)"),
        ("maxRN", INT, "Cap the commands running at once (-1: none); a job's goes to its pool share"),
        ("user", STR, "Set a node's user"), ("prod", STR, "Set a node's prod tag"),
        ("maxAttempt", INT, "Set the attempts of every task below"),
        ("timer", {"type": "number", "nullable": True}, "Hold the subtree until this time (epoch seconds)"),
        ("strategy", STR, "Set a TaskGroup's strategy")):
    op("put", f"/nodes/{{id}}/{_name}", _what, body=_fields(**{_name: _schema}), returns=NODE,
       errors=NODE_ERRORS, role="artist", own="node")

# -- tasks -------------------------------------------------------------------------------------------
op("get", "/tasks", "Every TaskGroup and Task, a page at a time", query=PAGE,
   returns=obj({"tasks": arr(NODE), "total": INT, "offset": INT, "limit": INT}), role="viewer")
op("get", "/tasks/{id}", "One task or group", returns=obj({"tasks": arr(NODE)}), errors=(404,), role="viewer")
op("post", "/tasks/delete", "Archive finished jobs (DONE or CANCELED); all or nothing",
   body=obj({"taskids": {"oneOf": [arr(INT), STR], "description": "ids, or '1,2,3'"}}, required=("taskids",)),
   returns=obj({"archived": arr(INT), "count": INT}), errors=(400, 404, 409), role="admin")
for _method in ("put", "post"):
    op(_method, "/tasks/{id}/env", "Replace a node's environment",
       body=_fields(environment=obj(additional=STR)), returns=NODE, errors=NODE_ERRORS, role="artist",
       own="node")
op("put", "/tasks/{id}/arguments", "Replace a node's arguments", body=_fields(arguments=ANY_OBJ),
   returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("post", "/tasks/{id}/arguments", "Merge into a node's arguments", body=_fields(arguments=ANY_OBJ),
   returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("get", "/tasks/{id}/commands", "Commands of a subtree",
   query=[_q("status", COMMAND_STATUS, "command statuses", True), *PAGE],
   returns=obj({"commands": arr(ref("Command")), "rootTask": INT, "total": INT, "offset": INT, "limit": INT}),
   errors=NODE_ERRORS, role="viewer",
   links=follow("get_commands_id", "put_commands_id", "get_commands_id_log", id="$response.body#/commands/0/id"))
op("get", "/tasks/{id}/tree", "Every node and command of a subtree",
   returns=obj({"tasks": arr(NODE), "commands": arr(ref("Command"))}), errors=(404,), role="viewer")
op("put", "/tasks/{id}/comment", "Set the comment tag", body=_fields(comment=STR), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("put", "/tasks/{id}/user", "Set the user", body=_fields(user=STR), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("put", "/tasks/{id}/ram", "Set the RAM (MB) every task below reserves per command",
   body=_fields(ramUse=INT), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")
op("put", "/tasks/{id}/timer", "Hold the subtree until this time (epoch seconds, null: no timer)",
   body=_fields(timer={"type": "number", "nullable": True}), returns=NODE, errors=NODE_ERRORS, role="artist", own="node")

# -- commands ----------------------------------------------------------------------------------------
op("get", "/commands", "Commands by id, a page at a time",
   query=[_q("status", COMMAND_STATUS, "command statuses", True), *PAGE],
   returns=obj({"commands": arr(ref("Command")), "total": INT, "offset": INT, "limit": INT}), role="viewer")
op("get", "/commands/{id}", "A command, with its arguments", returns=ref("Command"), errors=(404,), role="viewer")
op("get", "/commands/{id}/log", "A command's log, from the worker that runs (or ran) it (text/plain)",
   query=[_q("offset", INT, "from this byte"), _q("tail", INT, "the last N lines only"),
          _q("follow", BOOL, "wait (up to 10 s) for more than the offset while the command runs")],
   returns=STR, media=("text/plain; charset=utf-8",), errors=(404, 502), role="viewer",
   description="X-Log-Size names the log's size: the next offset; X-Command-Status the command's status.")
op("put", "/commands/{id}", "Restart (1), force DONE (5) or cancel (8) a command",
   body=_fields(status={"type": "integer", "enum": [1, 5, 8]}), returns=ref("Command"), errors=NODE_ERRORS, role="artist", own="command")

# -- render nodes --------------------------------------------------------------------------------------
RN = ref("RenderNode")
op("get", "/rendernodes", "Every render node", returns=obj({"rendernodes": arr(RN)}), role="viewer")
op("get", "/rendernodes/{name}", "A render node", returns=RN, errors=(404,), role="viewer")
op("delete", "/rendernodes/{name}", "Forget a render node; its commands go back to the queue",
   returns=obj({"name": STR, "removed": BOOL}), errors=(404,), role="wrangler")
op("post", "/rendernodes/{name}", "Worker: register (at start and after a 404 heartbeat)",
   body=ref("Registration"), returns=ref("Registered"), ok=(201, 200), errors=(400, 409),
   example={"host": "127.0.0.1", "port": 8000, "cores": 16, "ram": 65536, "speed": 3.2, "puliversion": "2.0",
            "caracteristics": {"os": "linux"}, "pools": ["default"], "commands": []},
   links=follow("get_rendernodes_name", "put_rendernodes_name_sysinfos", "put_rendernodes_name_paused",
                "put_rendernodes_name_reset", "delete_rendernodes_name", **BY_NAME),
   description="201 for a new node, 200 for a known one. `commands` lists what the worker still "
               "runs: those whose assignment is current stay where they are; the others are "
               "answered in `stop` and must be killed. Our commands it no longer runs are "
               "requeued. With pools_backend: file the pools come from the configuration.", role="worker")
op("put", "/rendernodes/{name}/sysinfos", "Worker: heartbeat, with optional system information",
   body=ref("SysInfos"), returns=obj({"name": STR, "status": RN_STATUS, "paused": BOOL, **DURABILITY}),
   errors=(400, 404),
   description="404 means the dispatcher does not know the node: the worker must register again.", role="worker")
op("put", "/rendernodes/{name}/commands/{id}", "Worker: progress or end of a command",
   body=ref("CommandReport"),
   returns=obj({"id": INT, "status": COMMAND_STATUS,
                "flush": {"type": "integer", "description": "the flush that commits this report (0: at once); "
                                                             "keep a command's end until `flushed` reaches it"},
                "epoch": DURABILITY["epoch"]}),
   errors=(400, 404, 409),
   description="409 with \"stop\": true when the command is no longer this worker's under that "
               "assignment (cancelled, reassigned, timed out): kill it and drop it. 404 for an "
               "unknown node (register again) or command.", role="worker")
op("put", "/rendernodes/{name}/paused", "Pause or resume a render node (operators and the worker)",
   body=obj({"paused": BOOL, "killproc": BOOL}, required=("paused",)), returns=RN, errors=(400, 404),
   description="killproc requeues what the node runs; resuming also lifts a quarantine.", role=("wrangler", "worker"))
op("put", "/rendernodes/{name}/reset", "Stop what a node runs and requeue those commands",
   returns=obj({"name": STR, "requeued": arr(INT)}), errors=(404,), role="wrangler")
op("put", "/rendernodes/quarantine", "Put render nodes in quarantine or release them",
   body=_fields(quarantine=BOOL, rns=arr(STR)), returns=obj({"quarantine": BOOL, "rns": arr(STR)}),
   errors=(400, 404), role="wrangler")
op("put", "/rendernodes/performance", "Set render nodes' performance (best first in dispatch)",
   body=obj(additional=NUM, description="render node name -> performance"), returns=obj(additional=NUM),
   errors=(400, 404), role="wrangler")

# -- pools and shares ----------------------------------------------------------------------------------
FILE_POOLS = "409 when pools_backend is file: pools come from the configuration."
op("get", "/pools", "Every pool", returns=obj({"pools": obj(additional=ref("Pool"))}), role="viewer")
op("get", "/pools/{name}", "A pool", returns=ref("Pool"), errors=(404,), role="viewer")
op("post", "/pools/{name}", "Create a pool", returns=ref("Pool"), ok=201, errors=(400, 409), description=FILE_POOLS, role="admin",
   links=follow("get_pools_name", "put_pools_name_rendernodes", "delete_pools_name", **BY_NAME))
op("delete", "/pools/{name}", "Delete a pool that holds no job", returns=obj({"name": STR, "deleted": BOOL}),
   errors=(404, 409), description=FILE_POOLS, role="admin")
op("put", "/pools/{name}/rendernodes", "Replace a pool's render nodes", body=_fields(renderNodes=arr(STR)),
   returns=ref("Pool"), errors=(400, 404, 409), description=FILE_POOLS, role="admin")
op("get", "/poolshares", "Every current pool share", returns=obj({"poolShares": arr(ref("PoolShare"))}), role="viewer")
op("post", "/poolshares", "Move a job to a pool (a new share)",
   body=obj({"poolName": STR, "nodeId": INT, "maxRN": INT}, required=("poolName", "nodeId")),
   returns=ref("PoolShare"), ok=(201, 200), errors=(400, 404), role="wrangler",
   description="201 for a new share, 200 when the job already was in that pool.",
   links=follow("get_poolshares_id", "put_poolshares_id", **BY_ID))
op("get", "/poolshares/{id}", "A pool share", returns=ref("PoolShare"), errors=(404,), role="viewer")
for _method in ("post", "put"):
    op(_method, "/poolshares/{id}", "Set the job's maxRN through its share (-1 or 0: its fair share)",
       body=_fields(maxRN=INT), returns=ref("PoolShare"), errors=(400, 404), role="artist", own="share")

# -- licenses ------------------------------------------------------------------------------------------
op("get", "/licenses", "Every license counter", returns=obj({"licenses": arr(ref("License"))}), role="viewer")
op("get", "/licenses/{name}", "A license counter", returns=ref("License"), errors=(404,), role="viewer")
op("put", "/licenses/{name}", "Set (or create) a license counter", body=_fields(maxlic=INT),
   returns=ref("License"), errors=(400,), role="admin",
   links=follow("get_licenses_name", "delete_licenses_name", **BY_NAME))
op("delete", "/licenses/{name}", "Release the tokens render nodes hold",
   body=_fields(rns={"oneOf": [STR, arr(STR)], "description": "'host:port,host:port' or a list"}),
   returns=ref("License"), errors=(400, 404), role="wrangler")

# -- identities and the audit trail -----------------------------------------------------------------
TOKEN = obj({"id": INT, "user": STR, "role": {"type": "string", "enum": list(auth.ROLES)},
             "node": {"type": "string", "nullable": True}, "created": NUM, "lastUsed": TIME,
             "expires": TIME, "revoked": BOOL})
op("get", "/tokens", "Every token (never their values)", returns=obj({"tokens": arr(TOKEN)}), role="admin")
op("post", "/tokens", "Make a token; the answer holds its value, shown this once",
   body=obj({"user": STR, "role": {"type": "string", "enum": list(auth.ROLES)}, "node": STR,
             "expires": {"type": "string", "description": "a duration from now: 30d, 12h"}},
            required=("user", "role")),
   returns=obj({"token": STR, "id": INT, "user": STR, "role": STR}), ok=201, errors=(400,), role="admin",
   links=follow("delete_tokens_id", **BY_ID))
op("delete", "/tokens/{id}", "Revoke a token", returns=obj({"revoked": arr(INT)}), errors=(404,), role="admin")
op("get", "/audit", "Who did what: every state-changing request, newest first", query=[
    _q("user", STR, "one user's"), _q("since", STR, "a duration back (2h, 7d) or a date"),
    _q("job", INT, "requests that acted on this job"), _q("limit", INT, "default 100")],
   returns=obj({"records": arr(obj({"time": NUM, "user": STR, "role": STR, "method": STR, "route": STR,
                                    "path": STR, "targets": ANY_OBJ, "status": INT,
                                    "outcome": {"type": "string", "nullable": True}}))}),
   errors=(400,), role="wrangler")

# -- query and edit ------------------------------------------------------------------------------------
QUERY = ref("QueryResult")
op("get", "/query", "Jobs as rows of the chosen fields",
   query=[ATTR, _q("tree", BOOL, "nest each job's nodes under 'items'"), *JOB_CONSTRAINTS],
   returns=QUERY, errors=(400,), role="viewer")
op("get", "/query/command", "Commands as rows of the chosen fields", query=[
    ATTR, _q("constraint_id", INT, "nodes (usually jobs) whose commands to list", True),
    *constraints(filters.COMMAND_QUERY),
    _q("offset", INT, "rows to skip"), _q("limit", INT, "rows to return (default: all)"),
], returns=QUERY, errors=(400,), role="viewer")
op("get", "/query/rn", "Render nodes as rows of the chosen fields", query=[
    _q("attr", STR, "fields; caracteristics:<key> for one caracteristic", True),
    *constraints(filters.RN_QUERY),
], returns=QUERY, errors=(400,), role="viewer")
op("post", "/query/job", "Jobs, with their subtree and commands when recursive",
   body=filter_body(filters.JOB_SEARCH, recursive=BOOL), returns=QUERY, errors=(400,), role="viewer")
op("post", "/query/rendernode", "Render nodes matching the filters",
   body=filter_body(filters.RN_SEARCH), returns=QUERY, errors=(400,), role="viewer")
EDIT = "Refused (400) without any constraint_* parameter."
op("put", "/edit/status", "Restart (1), force DONE (3) or cancel (5) the filtered jobs",
   query=[_q("update_status", INT, "1, 3 or 5", required=True), *JOB_CONSTRAINTS],
   returns=ref("EditResult"), errors=(400,), description=EDIT, role="artist", own="filter")
op("put", "/edit/maxrn", "Set the filtered jobs' maxRN",
   query=[_q("value", INT, "-1 or 0: no cap", required=True), *JOB_CONSTRAINTS],
   returns=ref("EditResult"), errors=(400,), description=EDIT, role="artist", own="filter")
op("put", "/edit/prio", "Set the filtered jobs' dispatchKey",
   query=[_q("value", NUM, "the dispatchKey", required=True), *JOB_CONSTRAINTS],
   returns=ref("EditResult"), errors=(400,), description=EDIT, role="artist", own="filter")
op("put", "/pause", "Pause the filtered jobs", query=JOB_CONSTRAINTS, returns=ref("EditResult"),
   errors=(400,), description=EDIT, role="artist", own="filter")
op("put", "/resume", "Resume the filtered jobs", query=JOB_CONSTRAINTS, returns=ref("EditResult"),
   errors=(400,), description=EDIT, role="artist", own="filter")

# -- system --------------------------------------------------------------------------------------------
op("get", "/stats", "Farm snapshot: commands, render nodes, jobs, licenses, last dispatch pass",
   returns=ref("Stats"), role="viewer")
# -- pulistats (puli/stats, puli/dispatcher/sampler.py) -------------------------------------------------
op("get", "/stats/history", "Recorded farm samples as series over a window", query=[
    _q("window", STR, "2h, 24h (default), 7d, 30d or FROM..TO (epoch seconds or ISO dates)"),
    _q("resolution", STR, "seconds per point: 300, 5m, 1h or auto (default, about 240 points)"),
    _q("group_by", STR, "prod, user, step, type or pool: series become that group's values"),
    _q("series", STR, "comma-separated series name prefixes (rn/, cores/, ram/, commands/, jobs/, "
                      "by/, lic/, dispatch/, requests/); with group_by, the metrics (jobs, err, "
                      "paused, ready, running, allocated, readyCommands, runningCommands)"),
    _q("jobs", BOOL, "add the summaries of the jobs that ended in the window"),
], returns=obj({"from": NUM, "to": NUM, "resolution": NUM, "samples": INT, "times": arr(NUM),
                "series": obj(additional=arr(NUM)), "jobs": arr(ANY_OBJ)}), errors=(400,), role="viewer")
HTML, SVG = "text/html; charset=utf-8", "image/svg+xml"
op("get", "/reports", "The latest pulistats report (HTML, last 24 h; regenerated when older than 10 min)",
   returns=STR, media=(HTML,), role="viewer")
op("get", "/reports/{name}", "A file of the latest report (.html, .svg, .csv, manifest.json)",
   media={HTML: STR, SVG: STR, "text/csv; charset=utf-8": STR, JSON: ANY_OBJ}, errors=(404,), role="viewer")
op("get", "/reports/view", "The stats viewer: an HTML form and the chart it asks for", query=[
    _q("window", STR, "as /stats/history"), _q("value", STR, "nodes, jobs, err, paused, ready, "
                                              "allocated, running, readyCommands, runningCommands"),
    _q("group", STR, "prod, user, step, type or pool"), _q("states", STR, "node states shown", True),
    _q("resolution", STR, "as /stats/history"), _q("kind", STR, "line or stacked"),
    _q("scale", STR, "linear or log")], returns=STR, media=(HTML,), role="viewer")
op("get", "/reports/view.svg", "The viewer's chart as SVG (download=1: as an attachment)",
   query=[_q("download", BOOL, "Content-Disposition: attachment")],
   returns=STR, media=(SVG,), errors=(400,), role="viewer")
op("get", "/system", "The dispatcher's state: version, uptime, readiness, database", returns=ref("System"), role="viewer")
op("get", "/health", "A small answer for probes, without taking the farm lock; 200 even when degraded",
   returns=obj({"ok": BOOL, "ready": BOOL, "status": {"type": "string", "enum": ["ok", "degraded"]},
                "problems": arr(STR)}), role="public")
op("get", "/metrics", "Prometheus metrics of the dispatcher and its farm (text exposition format)",
   returns=STR, media=(CONTENT_TYPE_LATEST,), role="viewer",
   description="For a Prometheus scrape job with a viewer token as its bearer token "
               "(authorization: {type: Bearer, credentials_file: ...}). Series: puli_commands, "
               "puli_jobs and puli_render_nodes by status; puli_dispatch_pass_seconds, "
               "puli_dispatch_assignments_total, puli_assignment_latency_seconds, "
               "puli_node_idle_seconds; puli_http_requests_total and puli_http_request_seconds by "
               "route template; puli_flush_seconds, puli_flush_lag_seconds, puli_flushes_total, "
               "puli_database_errors_total; puli_command_ends_total, puli_deliveries_total; process_*. "
               "README.md, section Metrics, lists them all.")
op("get", "/openapi.json", "This document", returns=ANY_OBJ, role="public")

# -- the web monitor (puli/dispatcher/ui): HTML pages; their errors are pages too ---------------------
def page(path, summary, *, role="viewer", query=(), ok=200, errors=(404,), method="get", form=None):
    """A page of the web monitor; `form`: the schema of the HTML form it takes."""
    op(method, path, summary, role=role, query=query, returns=STR, ok=ok, errors=errors, media=(HTML,),
       body=form, body_types=("application/x-www-form-urlencoded",),
       description="A page of the web monitor: its answers and its errors are HTML.")
    OPERATIONS[-1]["page"] = True


UI_QUERY = [_q("sort", STR, "a column, '-' first for descending"), _q("offset", INT, "rows to skip"),
            _q("limit", INT, "rows per page")]
page("/ui", "The monitor's home: its jobs page", role="public", ok=302, errors=())
page("/ui/signin", "The sign-in form (?next=: the monitor page to go to after)", role="public",
     query=[_q("next", STR, "a /ui/ page")], errors=())
page("/ui/signin", "Sign in with a token: a session cookie (HttpOnly, SameSite=Strict) and back to next",
     role="public", method="post", ok=303, errors=(400, 401),
     form=obj({"token": STR, "csrf": STR, "next": STR}, required=("token", "csrf")))
page("/ui/signout", "Sign out: the session ends", method="post", ok=303, errors=(403,),
     form=obj({"csrf": STR}, required=("csrf",)))
op("get", "/ui/static/{name}", "The monitor's stylesheet and script", role="public", returns=STR,
   media=("text/css; charset=utf-8", "text/javascript; charset=utf-8"), errors=(404,))
OPERATIONS[-1]["page"] = True           # its errors are pages too
page("/ui/jobs", "Jobs: filters, sort, pages, and actions on the selected ones",
     query=[*constraints(filters.JOB_UI), *UI_QUERY], errors=())
page("/ui/jobs/{id}", "A job: its tree, a task's commands (?task=, ?offset=) and their actions",
     query=[_q("task", INT, "the task whose commands are listed"), _q("offset", INT, "commands to skip")])
page("/ui/commands/{id}/log", "A command's log: its tail, then followed while it runs")
page("/ui/rendernodes", "Render nodes: status, pools, what they run, cores, RAM, GPUs, heartbeats",
     query=[*constraints(filters.RN_UI), _q("offset", INT, "rows to skip")], errors=())
page("/ui/pools", "Pools, their render nodes and the jobs' shares", errors=())
page("/ui/licenses", "License counters and who holds them", errors=())
page("/ui/audit", "The audit trail (?user=)", role="wrangler", query=[_q("user", STR, "one user's")], errors=())

_PATH_PARAMS = {"id": INT, "name": STR}
_REASONS = {400: "Bad request: the description names the field", 404: "Not found",
            409: "Conflict with the current state", 413: "Body too large", 503: "Database unavailable"}


def _operation(entry):
    path = entry["path"]
    params = [{"name": p, "in": "path", "required": True, "schema": _PATH_PARAMS[p]}
              for p in re.findall(r"{(\w+)}", path)]
    media = entry["media"]
    if not isinstance(media, dict):
        media = dict.fromkeys(media, entry["returns"] or ANY_OBJ)
    responses = {}
    for code in (entry["ok"],) if isinstance(entry["ok"], int) else entry["ok"]:
        responses[str(code)] = {"description": "OK" if code == 200 else "Created",
                                "content": {m: {"schema": schema} for m, schema in media.items()}}
        if entry["links"]:
            responses[str(code)]["links"] = {
                name: {"operationId": target, "parameters": parameters}
                for name, (target, parameters) in entry["links"].items()}
    error = {HTML: {"schema": STR}} if entry.get("page") else {"application/json": {"schema": ref("Error")}}
    for code in entry["errors"]:
        responses[str(code)] = {"description": _REASONS.get(code, "Error"), "content": error}
    responses["default"] = {"description": "Any error (a JSON body; an HTML page for the monitor's pages)",
                            "content": error}
    out = {
        "summary": entry["summary"],
        "operationId": f"{entry['method']}{re.sub(r'[^A-Za-z0-9]+', '_', path).rstrip('_')}",
        "tags": [path.strip("/").split("/")[0].split(".")[0]],
        "parameters": params + entry["query"],
        "responses": responses,
    }
    if entry["description"]:
        out["description"] = entry["description"]
    if entry["body"] is not None:
        out["requestBody"] = _body(entry["body"], entry["example"], entry["body_types"])
    access = entry["access"]
    out["x-puli-role"] = list(access.roles)
    if access.own:
        out["x-puli-own"] = access.own
    if auth.PUBLIC not in access.roles:
        out["security"] = [{"bearer": []}]
        responses["401"] = {"description": "No token, or an unknown, expired or revoked one", "content": error}
        responses["403"] = {"description": f"Needs the role {' or '.join(access.roles)}", "content": error}
        if entry.get("page") and entry["method"] == "get":
            responses["303"] = {"description": "No session: the sign-in form"}
    return out


@functools.lru_cache(maxsize=1)
def _document():
    paths = {}
    for entry in OPERATIONS:
        paths.setdefault(entry["path"], {})[entry["method"]] = _operation(entry)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Puli dispatcher",
            "version": puli.__version__,
            "description": "Puli's HTTP API. Every path also answers with a trailing slash. "
                           "Bodies are JSON objects; every error is a JSON body "
                           "{title, description}. A route's `x-puli-role` names who may call "
                           "it (viewer < artist < wrangler < admin; worker apart), with a bearer "
                           "token: `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `puli-dispatcher tokens create`"}},
        },
    }


def document():
    """The OpenAPI document, as a fresh dict."""
    return copy.deepcopy(_document())


def operations():
    """(method, path) of every documented operation, paths in OpenAPI form (/nodes/{id})."""
    return {(e["method"].upper(), e["path"]) for e in OPERATIONS}


def access_table():
    """(METHOD, path) -> auth.Access of every route: what the middleware enforces."""
    return {(e["method"].upper(), e["path"]): e["access"] for e in OPERATIONS}
