"""The OpenAPI 3.0 document of every route the worker's API serves (GET /openapi.json).

Routes are listed once below with their parameters, bodies and answers, as api.py really
serves them; tests check the list against the app's router both ways and fuzz a real worker
with the document. The dispatcher's own document (puli/dispatcher/openapi.py) is built the same
way; the worker imports nothing of the dispatcher.
"""
import copy
import functools
import re

import puli
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from puli.openapi_schema import ANY_OBJ, BOOL, INT, NUM, STR, arr, nullable, obj, ref
from puli.model.limits import BIGINT_MAX, INT_MAX



# The dispatcher's ids and assignments are BIGINTs (puli/model/limits.py); cores and RAM INTs.
ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
COUNT = {"type": "integer", "minimum": 0, "maximum": INT_MAX}
COMMAND_STATUS = {"type": "integer", "minimum": 0, "maximum": 8,
                  "description": "3 RUNNING, 5 DONE, 7 ERROR, 8 CANCELED (what a watcher reports)"}

SCHEMAS = {
    "Error": obj({"title": STR, "description": STR}, required=("title", "description")),
    "Assignment": obj({
        "id": dict(ID, description="the command's id"),
        "assignment": dict(ID, description="the dispatcher's fencing token for this run"),
        # null is taken for absent.
        "taskId": {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX, "nullable": True,
                   "description": "names the directory of the command's log (0 when absent)"},
        "cores": dict(COUNT, nullable=True, description="cores reserved: the cgroup's CPU limit (0: none)"),
        "ramUse": dict(COUNT, nullable=True, description="RAM reserved, MB: the cgroup's memory limit (0: none)"),
        "arguments": obj(additional=True, description="the runner's arguments, e.g. {\"cmd\": "
                                                      "\"...\", \"start\": 1, \"end\": 10}"),
        "environment": obj(additional=True, description="added to the command's environment"),
        "runner": nullable(STR) | {"description": "the runner class's dotted path; null or absent: "
                                                  "the default command-line runner"},
        "maxRunTime": {"type": "number", "nullable": True,
                       "description": "seconds before the watcher kills the command; 0: no limit "
                                      "(a negative one: the watcher ends the run in ERROR)"},
        # Passed on to the commandwatcher as they come (it sets PULI_* variables from them).
        "description": {"description": "the command's description"},
        "user": {"description": "PULI_USER"},
        "taskName": {"description": "PULI_TASK_NAME"},
        "jobId": {"description": "PULI_JOB_ID"},
        "attempt": {"description": "PULI_ATTEMPT"},
        "validationExpression": {}, "relativePathToLogDir": {}, "runnerPackages": {},
        "watcherPackages": {}, "licenses": {},
    }, required=("id", "assignment"), additional=True,
        description="The dispatcher's assignment (puli/model/outbox.py): started under a "
                    "commandwatcher. Other fields are kept in the watcher's assignment.json."),
    "Accepted": obj({"id": INT, "assignment": INT,
                     "watcherPid": nullable(INT) | {"description": "the run's commandwatcher"},
                     "status": COMMAND_STATUS | {"description": "3 (RUNNING): the run has started, "
                                                               "no report needs to say so "
                                                               "(puli-worker leaves it out: its "
                                                               "watcher's report says when)"}},
                    required=("id", "assignment", "watcherPid")),
    "Run": obj({
        "id": INT, "assignment": INT,
        "status": nullable(COMMAND_STATUS) | {"description": "null until the watcher has written "
                                                             "its first state"},
        "completion": NUM, "message": nullable(STR), "taskId": nullable(INT),
        "watcherPid": nullable(INT), "startTime": nullable(NUM) | {"description": "epoch seconds"},
        "stopping": {"type": "boolean", "description": "a stop order is being carried out"},
    }, required=("id", "assignment", "status", "stopping")),
    "Stopping": obj({"id": INT, "assignment": {"type": "integer", "description": "the run stopped"},
                     "stopping": {"type": "boolean", "enum": [True]}},
                    required=("id", "assignment", "stopping")),
    "Pause": obj({"content": {
        "oneOf": [STR, INT],
        "description": "\"0\" resumes; any other text pauses (the killfile: \"-1\" kills the "
                       "running commands, \"-2\" restarts the worker once they ended, \"-3\" "
                       "kills them and restarts); absent: \"\", a pause"}}),
    "Paused": obj({"content": STR, "paused": BOOL}, required=("content", "paused")),
    "SysInfos": obj({
        "name": STR, "host": STR, "port": INT, "pools": arr(STR), "cores": INT,
        "ram": {"type": "integer", "description": "MB"}, "speed": {"type": "number", "description": "GHz"},
        "caracteristics": ANY_OBJ, "puliversion": STR,
        "systemFreeRam": {"type": "integer", "description": "MB"}, "systemSwapPercentage": NUM,
        "load": arr(NUM), "paused": BOOL, "registered": BOOL,
        "isolation": obj({"mode": {"type": "string", "enum": ["systemd", "cgroup2", "cgroup1", "pgroup"]},
                          "controllers": arr(STR), "cgroupKill": BOOL}, required=("mode",)),
    }, required=("name", "cores", "ram", "paused", "registered", "isolation")),
}


def _q(name, schema, description):
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


LOG_QUERY = [_q("offset", {"type": "integer", "minimum": 0}, "from this byte (past the end: nothing)"),
             _q("tail", {"type": "integer", "minimum": 0}, "only the last N lines")]
LOG_HEADERS = {
    "X-Log-Size": {"description": "the log's size in bytes: the next offset",
                   "schema": {"type": "integer", "minimum": 0}, "required": True},
    "X-Log-Offset": {"description": "the byte the answer starts from",
                     "schema": {"type": "integer", "minimum": 0}, "required": True},
}
# An assignment's answer names the run: a stop order for it, and its log.
RUN_LINKS = {
    "StopThisRun": {"operationId": "delete_commands_id",
                    "parameters": {"id": "$response.body#/id", "assignment": "$response.body#/assignment"}},
    "ItsLog": {"operationId": "get_commands_id_log", "parameters": {"id": "$response.body#/id"}},
}

OPERATIONS = []


def op(method, path, summary, *, query=(), body=None, returns=None, ok=200, errors=(), description=None,
       content="application/json", headers=None, links=None):
    OPERATIONS.append(dict(method=method, path=path, summary=summary, query=list(query), body=body,
                           returns=returns, ok=ok, errors=tuple(errors), description=description,
                           content=content, headers=headers, links=links))


op("post", "/commands", "Start an assignment under a commandwatcher", body=ref("Assignment"),
   returns=ref("Accepted"), ok=202, errors=(400, 409, 415, 500, 503), links=RUN_LINKS,
   description="202 once its watcher is started, and again for the run already started under "
               "that assignment. 409 when the node is paused, full (max_commands) or runs the "
               "command under another assignment; 500 when its watcher cannot be started; 503 "
               "while the worker stops.")
op("get", "/commands", "The runs this worker holds, running or ended and not yet taken",
   returns=obj({"commands": arr(ref("Run"))}, required=("commands",)))
op("delete", "/commands/{id}", "Stop a run: its command is killed (SIGTERM, then SIGKILL) and forgotten",
   query=[_q("assignment", {"type": "integer", "minimum": 0}, "only this run (0 or absent: any)")],
   returns=ref("Stopping"), ok=202, errors=(400, 404), links={"ItsLog": RUN_LINKS["ItsLog"]},
   description="404 when this worker holds no such run: the dispatcher takes it as stopped.")
op("get", "/commands/{id}/log", "A command's log, whole or from an offset or its last lines",
   query=LOG_QUERY, returns=STR, content="text/plain", headers=LOG_HEADERS, errors=(400, 404),
   description="Also the log of a command that ended here, until the sweep deletes it.")
op("get", "/log", "The worker's own log", query=LOG_QUERY, returns=STR, content="text/plain",
   headers=LOG_HEADERS, errors=(400, 404))
op("post", "/pause", "Write the killfile: pause, resume, kill or restart", body=ref("Pause"),
   returns=ref("Paused"), ok=202, errors=(400, 415))
op("get", "/sysinfos", "This node's system information, load and state", returns=ref("SysInfos"))
op("post", "/updatesysinfos", "Send the full system information, read afresh, with the next heartbeat",
   returns=obj({"updating": {"type": "boolean", "enum": [True]}}, required=("updating",)), ok=202)
op("get", "/openapi.json", "This document", returns=ANY_OBJ)
op("get", "/metrics", "Prometheus metrics of this worker and its running commands (text exposition format)",
   returns=STR, content=CONTENT_TYPE_LATEST, errors=(403,),
   description="Answered to the bearer token in the worker's metrics_token_file (a Prometheus "
               "scrape's), or to the dispatcher's secret; 403 while metrics_token_file is unset. "
               "Series: puli_worker_running_commands, puli_worker_command_cpu_seconds_total and "
               "puli_worker_command_memory_bytes by command (read from each running command's "
               "cgroup, absent without one), puli_worker_heartbeats_total by outcome, process_*.")

_PATH_PARAMS = {"id": ID}
_REASONS = {
    400: "Bad request: the title and description name the field or header",
    401: "Not the dispatcher: no secret, or not the one of the last registration",
    403: "Metrics are off: metrics_token_file is unset",
    404: "Not found",
    409: "Conflict with what this worker runs",
    411: "A chunked body: send it with a Content-Length",
    413: "Body larger than max_request_bytes",
    415: "Not a JSON body",
    500: "Cannot start the command (its watcher or its cgroup)",
    503: "Stopping",
}
# Every route: a malformed request (a Content-Length that is no number...) is a 400, the secret
# is checked first, the body's size from the headers next.
_COMMON_ERRORS = (400, 401, 411, 413)


def _operation(entry):
    path = entry["path"]
    params = [{"name": p, "in": "path", "required": True, "schema": _PATH_PARAMS[p]}
              for p in re.findall(r"{(\w+)}", path)]
    ok = {"description": "Accepted" if entry["ok"] == 202 else "OK",
          "content": {entry["content"]: {"schema": entry["returns"] or ANY_OBJ}}}
    if entry["headers"]:
        ok["headers"] = entry["headers"]
    if entry["links"]:
        ok["links"] = entry["links"]
    responses = {str(entry["ok"]): ok}
    for code in sorted({*entry["errors"], *_COMMON_ERRORS}):
        responses[str(code)] = {"description": _REASONS[code],
                                "content": {"application/json": {"schema": ref("Error")}}}
    if params:
        responses["404"]["description"] = "Not found (an id outside 1 to 2^63-1 finds nothing either)"
    out = {
        "summary": entry["summary"],
        "operationId": f"{entry['method']}{re.sub(r'[^A-Za-z0-9]+', '_', path).rstrip('_')}",
        "parameters": params + entry["query"],
        "responses": responses,
        "security": [{"bearer": []}],
    }
    if entry["description"]:
        out["description"] = entry["description"]
    if entry["body"] is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": entry["body"]}}}
    return out


@functools.lru_cache(maxsize=1)
def _document():
    paths = {}
    for entry in OPERATIONS:
        paths.setdefault(entry["path"], {})[entry["method"]] = _operation(entry)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Puli worker",
            "version": puli.__version__,
            "description": "The API of a render node's worker. It obeys its dispatcher only: every "
                           "request shows the secret the worker gave at its last registration, "
                           "`Authorization: Bearer <secret>`. Every path also answers with a "
                           "trailing slash. Every answer is JSON but the logs; every error is a "
                           "JSON body {title, description}.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "the secret of the worker's last registration (root on the node "
                               "finds it in <data_dir>/api.secret)"}},
        },
    }


def document():
    """The OpenAPI document, as a fresh dict."""
    return copy.deepcopy(_document())


def operations():
    """(METHOD, path) of every documented operation, paths in OpenAPI form (/commands/{id})."""
    return {(e["method"].upper(), e["path"]) for e in OPERATIONS}
