"""How the CLIs print what they got: human tables fitted to the terminal, CSV and JSON, in one place.

A table is a list of `Column`s over the items the dispatcher answered. JSON prints the items as
they came; CSV prints their raw values (times as seconds since the epoch, as the API gives them);
only the human table formats values, and only on a terminal does it fit the width and color
status names.
"""
import csv
import json
import os
import shutil
import sys
import time

from ..model.status import CommandStatus, NodeStatus, RenderNodeStatus

FORMATS = ("table", "json", "csv")

NODE_STATUS = {int(s): s.name for s in NodeStatus}
COMMAND_STATUS = {int(s): s.name for s in CommandStatus}
RN_STATUS = {int(s): s.name for s in RenderNodeStatus}

# SGR codes by status name (the three enums share no name with different meanings).
_COLORS = {
    "BLOCKED": "2", "BOOTING": "2",
    "RUNNING": "36", "ASSIGNED": "36", "WORKING": "36", "FINISHING": "36",
    "DONE": "32", "IDLE": "32",
    "ERROR": "1;31", "TIMEOUT": "1;31", "UNKNOWN": "31",
    "CANCELED": "35",
    "PAUSED": "33",
}


# -- value formats for humans ------------------------------------------------------------------------
def text(value):
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def when(ts):
    """A time of day with its date, short: 11-26 08:01."""
    if ts is None:
        return "-"
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


def duration(seconds):
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def ago(ts, now=None):
    if ts is None:
        return "never"
    return duration((now or time.time()) - ts) + " ago"


def percent(completion):
    if completion is None:
        return "-"
    return f"{completion * 100:.0f}"


def max_rn(value):
    return "-" if value is None or value <= 0 else str(value)


def megabytes(mb):
    """RAM given in MB, shown in GB when large."""
    if mb is None:
        return "-"
    if mb >= 1024:
        return f"{mb / 1024:.1f}G"
    return f"{int(mb)}M"


def run_time(active):
    """A function of an item giving how long it has run: until its end, until now while its
    status is one of `active`, else until its last change (an ERROR or PAUSED job is not
    running up the clock)."""
    def elapsed(item):
        start = item.get("startTime")
        if start is None:
            return None
        end = item.get("endTime")
        if end is None:
            end = time.time() if item.get("status") in active else item.get("updateTime")
        return None if end is None else end - start
    return elapsed


node_run_time = run_time({int(NodeStatus.RUNNING)})
command_run_time = run_time({int(CommandStatus.ASSIGNED), int(CommandStatus.RUNNING),
                             int(CommandStatus.FINISHING)})


def status_name(names):
    """A formatter of a status code into its name from `names` (a code unknown here stays a number)."""
    def fmt(code):
        if code is None:
            return "-"
        return names.get(code, str(code))
    return fmt


# -- columns and tables --------------------------------------------------------------------------
class Column:
    """One column: its header, the item's value (a key or a function) and how to show it.

    `shrink`: order in which the column is truncated when the table is too wide (0 first);
    `drop`: order in which it is left out when truncating is not enough; `status`: its text is a
    status name, colored on a terminal.
    """

    def __init__(self, header, key, fmt=text, right=False, shrink=None, drop=None, status=False,
                 minimum=8):
        self.header = header
        self.key = key
        self.fmt = fmt
        self.right = right
        self.shrink = shrink
        self.drop = drop
        self.status = status
        self.minimum = minimum

    def value(self, item):
        return self.key(item) if callable(self.key) else item.get(self.key)

    def cell(self, item):
        return self.fmt(self.value(item))


def columns_for(keys, statuses=None):
    """Plain columns for the fields the user picked (-a); statuses names the `status` field's codes."""
    out = []
    for key in keys:
        if key == "status" and statuses:
            out.append(Column("status", key, status_name(statuses), status=True))
        elif key.endswith(("Time", "Date")) or key == "lastAliveTime":
            out.append(Column(key, key, when))
        else:
            out.append(Column(key, key, shrink=len(out)))
    return out


def _fit(columns, widths, width):
    """Which columns to show and how wide, so that the table fits in `width` characters.

    Truncating a column and leaving one out share one order (`shrink` and `drop` ranks): the
    first step that makes the table fit ends it; room left over goes back to the truncated
    columns, the first truncated first.
    """
    shown = list(range(len(columns)))
    natural, widths = widths, list(widths)

    def total():
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    steps = sorted([(c.shrink, 0, i) for i, c in enumerate(columns) if c.shrink is not None]
                   + [(c.drop, 1, i) for i, c in enumerate(columns) if c.drop is not None])
    for _, drop, i in steps:
        excess = total() - width
        if excess <= 0:
            break
        if drop:
            shown.remove(i)
        elif i in shown:
            floor = min(widths[i], max(columns[i].minimum, len(columns[i].header)))
            widths[i] = max(floor, widths[i] - excess)
    for i in sorted((i for i in shown if columns[i].shrink is not None), key=lambda i: columns[i].shrink):
        slack = width - total()
        if slack <= 0:
            break
        widths[i] = min(natural[i], widths[i] + slack)
    return shown, widths


def _clip(value, width, ellipsis):
    if len(value) <= width:
        return value
    return value[:max(width - len(ellipsis), 0)] + ellipsis


def table_lines(items, columns, width=None, color=False, ellipsis="…"):
    """The lines of a table of `items`; fitted to `width` when given."""
    cells = [[c.cell(item) for c in columns] for item in items]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    if width:
        shown, widths = _fit(columns, widths, width)

    def line(values, header=False):
        parts = []
        for i in shown:
            col, w = columns[i], widths[i]
            value = _clip(values[i], w, ellipsis)
            padded = value.rjust(w) if col.right else value.ljust(w)
            if color and header:
                padded = f"\x1b[1m{padded}\x1b[0m"
            elif color and col.status and value in _COLORS:
                padded = f"\x1b[{_COLORS[value]}m{padded}\x1b[0m"
            parts.append(padded)
        return "  ".join(parts).rstrip()

    return [line([c.header for c in columns], header=True)] + [line(row) for row in cells]


def job_summary(job, paint=str):
    """The lines that head `puliquery job`: what the job is and where it stands."""
    get = job.get
    status = NODE_STATUS.get(get("status"), text(get("status")))
    tags = get("tags") or {}
    lines = [
        f"job {get('id')}  {get('name')}  {paint(status)}  {percent(get('completion'))}%"
        f"  owner {get('user') or '-'}",
        f"  prod {tags.get('prod') or '-'}  shot {tags.get('shot') or '-'}"
        f"  pool {get('poolName') or '-'}  dispatchKey {text(get('dispatchKey'))}"
        f"  maxRN {max_rn(get('maxRN'))}  running {get('allocatedRN') or 0}",
        f"  submitted {when(get('creationTime'))}  started {when(get('startTime'))}"
        f"  ended {when(get('endTime'))}  run time {duration(node_run_time(job))}"
        f"  commands {get('doneCommandCount') or 0}/{get('commandCount') or 0} done",
    ]
    if tags.get("openjdName") is not None:
        # A job submitted as an Open Job Description template: its name and parameter values.
        parameters = tags.get("openjdParameters") or {}
        shown = "  ".join(f"{k}={v}" for k, v in parameters.items()) if isinstance(parameters, dict) else "-"
        lines.append(f"  OpenJD {tags['openjdName']}  parameters {shown or '-'}")
    return lines


# -- trees ---------------------------------------------------------------------------------------------
def _tree_order(roots, children_of):
    """(node, depth, tree prefix) of every node under `roots`, depth first, in order."""
    out = []
    stack = [(node, 0, "", "") for node in reversed(roots)]
    while stack:
        node, depth, prefix, indent = stack.pop()
        out.append((node, depth, prefix))
        children = children_of(node)
        for k, child in reversed(list(enumerate(children))):
            last = k == len(children) - 1
            stack.append((child, depth + 1, indent + ("└ " if last else "├ "),
                          indent + ("  " if last else "│ ")))
    return out


def flatten_tree(items):
    """/query?tree items (nested under "items") as rows, each with its depth."""
    rows = []
    for item, depth, prefix in _tree_order(items, lambda item: item.get("items", [])):
        row = {k: v for k, v in item.items() if k != "items"}
        row.update(depth=depth, _tree=prefix)
        rows.append(row)
    return rows


def tree_rows(job_id, tasks):
    """A job's nodes (/tasks/<id>/tree) in tree order, each with its depth."""
    by_id = {t["id"]: t for t in tasks}
    roots = [by_id[job_id]] if job_id in by_id else []
    order = _tree_order(roots, lambda node: [by_id[c] for c in node.get("children") or () if c in by_id])
    return [dict(node, depth=depth, _tree=prefix) for node, depth, prefix in order]


def _tree_name(item):
    return item.get("_tree", "") + str(item.get("name", ""))


# -- the listings' layouts: shrink/drop ranks say what gives way first on a narrow terminal ------------
JOB_COLUMNS = [
    Column("ID", "id", right=True),
    Column("ST", "status", status_name(NODE_STATUS), status=True),
    Column("NAME", _tree_name, shrink=0, minimum=20),
    Column("PROD", "prod", shrink=4, drop=6, minimum=10),
    Column("SHOT", "shot", shrink=3, drop=5, minimum=10),
    Column("OWNER", "user", shrink=7, minimum=8),
    Column("%", "completion", percent, right=True),
    Column("PRIO", "dispatchKey", right=True, drop=10),
    Column("MAXRN", "maxRN", max_rn, right=True, drop=9),
    Column("ALLOC", "allocatedRN", right=True, drop=11),
    Column("SUBMITTED", "creationTime", when, drop=8),
    Column("START", "startTime", when, drop=2),
    Column("END", "endTime", when, drop=1),
    Column("RUN TIME", node_run_time, duration, right=True),
]
LONG_JOB_COLUMNS = JOB_COLUMNS + [
    Column("POOL", "pool", shrink=12, minimum=6),
    Column("CMDS", "commandCount", right=True),
    Column("READY", "readyCommandCount", right=True),
    Column("DONE", "doneCommandCount", right=True),
    Column("ATTEMPT", "maxAttempt", right=True),
    Column("AVG/FRAME", "averageTimeByFrame", duration, right=True),
]
TASK_COLUMNS = [
    Column("ID", "id", right=True),
    Column("ST", "status", status_name(NODE_STATUS), status=True),
    Column("NAME", _tree_name, shrink=0, minimum=20),
    Column("%", "completion", percent, right=True),
    Column("CMDS", "commandCount", right=True),
    Column("DONE", "doneCommandCount", right=True),
    Column("READY", "readyCommandCount", right=True),
    Column("START", "startTime", when, drop=2),
    Column("END", "endTime", when, drop=1),
    Column("RUN TIME", node_run_time, duration, right=True),
]
COMMAND_COLUMNS = [
    Column("ID", "id", right=True),
    Column("ST", "status", status_name(COMMAND_STATUS), status=True),
    Column("JOB", "job", right=True, drop=6),
    Column("TASK", "task", right=True, drop=5),
    Column("DESC", "description", shrink=1, minimum=16),
    Column("%", "completion", percent, right=True),
    Column("ATT", "attempt", right=True, drop=7),
    Column("RENDER NODE", "renderNode", shrink=4, minimum=10),
    Column("START", "startTime", when, drop=3),
    Column("END", "endTime", when, drop=2),
    Column("RUN TIME", command_run_time, duration, right=True),
    Column("MESSAGE", "message", shrink=0, minimum=10),
]
RN_COLUMNS = [
    Column("ID", "id", right=True),
    Column("ST", "status", status_name(RN_STATUS), status=True),
    Column("HOST", "name", shrink=5, minimum=12),
    Column("CORES", "coresNumber", right=True),
    Column("FREE", "freeCoresNumber", right=True),
    Column("RAM", "ramSize", megabytes, right=True),
    Column("FREE RAM", "freeRam", megabytes, right=True),
    Column("GHZ", "speed", right=True, drop=4),
    Column("VERSION", "puliversion", shrink=2, drop=3),
    Column("%SWAP", "systemSwapPercentage", right=True, drop=1),
    Column("LAST PING", "lastAliveTime", ago, right=True, drop=6),
    Column("POOLS", "pools", shrink=0),
    Column("QUARANTINE", "quarantined", lambda q: "yes" if q else "", drop=7),
]
POOL_COLUMNS = [
    Column("NAME", "name", shrink=1, minimum=10),
    Column("ID", "id", right=True),
    Column("NODES", lambda p: len(p["renderNodes"]), right=True),
    Column("JOBS", lambda p: len(p["poolShares"]), right=True),
    Column("RENDER NODES", "renderNodes", shrink=0),
]
POOLSHARE_COLUMNS = [
    Column("ID", "id", right=True),
    Column("POOL", "poolName", shrink=0),
    Column("JOB", "nodeId", right=True),
    Column("MAXRN", "maxRN", max_rn, right=True),
    Column("ALLOC", "allocatedRN", right=True),
    Column("SET BY USER", "userDefinedMaxRN", lambda v: "yes" if v else ""),
]
LICENSE_COLUMNS = [
    Column("NAME", "name", shrink=1),
    Column("USED", "used", right=True),
    Column("MAX", "max", right=True),
    Column("RENDER NODES", "rns", shrink=0),
]


def _targets(record):
    t = record.get("targets") or {}
    parts = [f"job {','.join(map(str, t['jobs']))}"] if t.get("jobs") else []
    parts += [f"{k} {','.join(map(str, v))}" for k, v in t.items() if k != "jobs" and v]
    return "; ".join(parts) or "-"


AUDIT_COLUMNS = [
    Column("TIME", "time", when),
    Column("USER", "user", shrink=2, minimum=6),
    Column("ROLE", "role"),
    Column("REQUEST", lambda r: f"{r['method']} {r['path']}", shrink=1, minimum=16),
    Column("ON", _targets, shrink=3, minimum=8),
    Column("STATUS", "status", right=True),
    Column("OUTCOME", lambda r: r.get("outcome") or "ok", shrink=0, drop=1),
]


# -- CSV and JSON --------------------------------------------------------------------------------
def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def field_names(items):
    """The keys of the items, in the order they first appear (not the "_" ones, for display)."""
    names = {}
    for item in items:
        for key in item:
            if not key.startswith("_"):
                names.setdefault(key, None)
    return list(names)


# -- the output ----------------------------------------------------------------------------------
def terminal_width(stream):
    """The width to fit tables to: $COLUMNS, else the terminal's; None when not on a terminal."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if stream.isatty():
        return shutil.get_terminal_size().columns
    return None


class Output:
    """Where and how a command prints: `fmt` is table, json or csv."""

    def __init__(self, fmt="table", stream=None, width=None, color=None):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        tty = self.stream.isatty()
        self.width = terminal_width(self.stream) if width is None else width
        if color is None:
            color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.color = color
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            "…".encode(encoding)
            self.ellipsis = "…"
        except (UnicodeEncodeError, LookupError):
            self.ellipsis = "~"

    def write(self, line=""):
        self.stream.write(line + "\n")

    def paint(self, value):
        """A status name colored when on a terminal."""
        if self.color and value in _COLORS:
            return f"\x1b[{_COLORS[value]}m{value}\x1b[0m"
        return value

    def json(self, data):
        json.dump(data, self.stream, indent=2, sort_keys=False)
        self.write()

    def csv(self, rows, fields=None):
        fields = fields or field_names(rows)
        writer = csv.writer(self.stream, lineterminator="\n")
        writer.writerow(fields)
        for row in rows:
            writer.writerow([_csv_value(row.get(f)) for f in fields])

    def table(self, items, columns):
        for line in table_lines(items, columns, self.width, self.color, self.ellipsis):
            self.write(line)

    def items(self, items, columns, footer=None, raw=None, fields=None):
        """A list: the table (and its footer), the CSV of `items`, or the JSON of `raw` (default
        `items`)."""
        if self.fmt == "json":
            self.json(items if raw is None else raw)
        elif self.fmt == "csv":
            self.csv(items, fields)
        else:
            self.table(items, columns)
            if footer:
                self.write(footer)

    def result(self, data, lines, rows=None):
        """The outcome of an action: `data` as JSON, `rows` as CSV, else the lines for humans."""
        if self.fmt == "json":
            self.json(data)
        elif self.fmt == "csv" and rows is not None:
            self.csv(rows)
        else:
            for line in lines:
                self.write(line)
