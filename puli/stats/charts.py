"""pygal charts from a history (puli/stats/history.py query result).

Every chart is described by a Chart: its title, its kind and its series (name -> values); the
SVG carries no external script: each point gets an SVG <title>, the browser's own tooltip, so a
report works offline and from file://.
"""
import csv
import datetime
import html
import io
import re
from collections import Counter

import pygal
from pygal.style import DefaultStyle

RN_ORDER = ("Working", "Assigned", "Finishing", "Idle", "Booting", "Paused", "Unknown")
JOB_STATES = ("BLOCKED", "READY", "RUNNING", "ERROR", "PAUSED")
COMMAND_STATES = ("BLOCKED", "READY", "ASSIGNED", "RUNNING", "FINISHING", "TIMEOUT", "ERROR")
GROUP_TITLES = {"prod": "prod", "user": "user", "step": "step", "type": "job type", "pool": "pool"}


class Chart:
    """A chart to draw: kind is line, stacked or bar; labels are the x labels."""

    def __init__(self, id, title, kind, series, labels, y_title="", log=False, note=""):
        self.id, self.title, self.kind = id, title, kind
        self.series = {k: v for k, v in series.items()}
        self.labels, self.y_title, self.log, self.note = labels, y_title, log, note

    @property
    def empty(self):
        return not self.series or not any(any(v) for v in self.series.values())

    def svg(self, width=900, height=420):
        if self.kind == "bar":
            chart = pygal.HorizontalBar(**_options(width, height, self.log))
        elif self.kind == "stacked":
            chart = pygal.StackedLine(fill=True, **_options(width, height, self.log))
        else:
            chart = pygal.Line(**_options(width, height, self.log))
        chart.title = self.title
        chart.y_title = self.y_title
        chart.x_labels = self.labels
        if self.kind != "bar" and len(self.labels) > 12:
            chart.x_labels_major_every = max(1, len(self.labels) // 8)
            chart.show_minor_x_labels = False
        for name, values in self.series.items():
            if self.log:
                values = [v if v and v > 0 else None for v in values]
            chart.add(name, values)
        return add_titles(chart.render(is_unicode=True), list(self.series))

    def csv(self):
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["x", *self.series])
        for i, label in enumerate(self.labels):
            writer.writerow([label, *(values[i] if i < len(values) else "" for values in self.series.values())])
        return out.getvalue()


def _options(width, height, log):
    return dict(width=width, height=height, js=[], style=DefaultStyle, logarithmic=log,
                x_label_rotation=20, legend_at_bottom=True, legend_at_bottom_columns=4,
                truncate_legend=30, show_dots=True, dots_size=1.5, interpolate=None,
                explicit_size=True, print_values=False, no_data_text="no data in this window")


_POINT = re.compile(r'<g class="series serie-(\d+)|<desc class="value">([^<]*)</desc>'
                    r'((?:<desc class="[xy][^"]*">[^<]*</desc>)*)(?:<desc class="x_label">([^<]*)</desc>)?')


def add_titles(svg, names):
    """An SVG <title> in each point's group: a hover tooltip without any script."""
    current = [0]

    def replace(match):
        if match.group(1) is not None:
            current[0] = int(match.group(1))
            return match.group(0)
        name = names[current[0]] if current[0] < len(names) else ""
        label = match.group(4)
        text = f"{name} — {label}: {match.group(2)}" if label else f"{name}: {match.group(2)}"
        return f"{match.group(0)}<title>{html.escape(html.unescape(text), quote=False)}</title>"
    return _POINT.sub(replace, svg)


def time_labels(times, step):
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 3600 else "%m-%d %H:%M" if step < 86400 else "%Y-%m-%d"
    if times and times[-1] - times[0] > 86400 and step < 86400:
        fmt = "%m-%d %H:%M"
    return [datetime.datetime.fromtimestamp(t).strftime(fmt) for t in times]


def _pick(series, prefix, order=None, suffix=None, rename=None):
    out = {}
    for key, values in series.items():
        if not key.startswith(prefix) or (suffix and not key.endswith(suffix)):
            continue
        name = key[len(prefix):]
        if suffix:
            name = name[:-len(suffix)]
        out[rename(name) if rename else name] = values
    if order:
        out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
    return out


def _nonzero(series):
    return {k: v for k, v in series.items() if any(v)}


def _top(series, n=12):
    """The n biggest series by their sum; the rest summed as 'others'."""
    ranked = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    out = dict(ranked[:n])
    if len(ranked) > n:
        out["others"] = [sum(col) for col in zip(*(v for _, v in ranked[n:]))]
    return out


def time_charts(hist):
    """The charts drawn from samples, by page."""
    s, labels = hist["series"], time_labels(hist["times"], hist["resolution"])
    pages = {"usage": [], "queue": [], "allocation": [], "licenses": [], "dispatcher": []}
    add = lambda page, *a, **kw: pages[page].append(Chart(*a, labels=labels, **kw))  # noqa: E731
    add("usage", "rn-status", "Render nodes by status", "stacked", _pick(s, "rn/", RN_ORDER), y_title="nodes")
    add("usage", "cores", "Cores", "line", _pick(s, "cores/"), y_title="cores")
    add("usage", "ram", "RAM (MB)", "line", _pick(s, "ram/"), y_title="MB")
    pools = sorted({k.split("/")[1] for k in s if k.startswith("rnpool/")})
    for pool in pools:
        add("usage", f"rn-pool-{_slug(pool)}", f"Render nodes of pool {pool} by status", "stacked",
            _nonzero(_pick(s, f"rnpool/{pool}/", RN_ORDER)), y_title="nodes")
    add("queue", "jobs", "Jobs by status", "stacked", _pick(s, "jobs/", JOB_STATES), y_title="jobs")
    add("queue", "commands", "Commands by status (unfinished)", "stacked",
        {k: v for k, v in _pick(s, "commands/", COMMAND_STATES).items() if k in COMMAND_STATES},
        y_title="commands")
    for dim, title in GROUP_TITLES.items():
        add("allocation", f"allocated-{dim}", f"Allocated render nodes by {title}", "stacked",
            _top(_pick(s, f"by/{dim}/", suffix="/allocated")), y_title="nodes")
        add("allocation", f"ready-{dim}", f"Ready commands by {title}", "stacked",
            _top(_pick(s, f"by/{dim}/", suffix="/readyCommands")), y_title="commands")
        add("allocation", f"jobs-{dim}", f"Unfinished jobs by {title}", "stacked",
            _top(_pick(s, f"by/{dim}/", suffix="/jobs")), y_title="jobs")
    lic = _pick(s, "lic/", suffix="/used")
    add("licenses", "licenses", "License tokens in use", "line", lic, y_title="tokens")
    for name in lic:
        add("licenses", f"lic-{_slug(name)}", f"License {name}: used and maximum", "line",
            {"used": s[f"lic/{name}/used"], "max": s.get(f"lic/{name}/max", [])}, y_title="tokens")
    add("dispatcher", "dispatch-ms", "Dispatch pass duration (ms)", "line",
        {"average": s.get("dispatch/avgMs", []), "longest": s.get("dispatch/maxMs", []),
         "stats sample": s.get("dispatch/sampleMs", [])}, y_title="ms")
    add("dispatcher", "dispatch-passes", "Dispatch passes and assignments per sample", "line",
        {"passes": s.get("dispatch/passes", []), "assigned": s.get("dispatch/assigned", [])})
    add("dispatcher", "requests", "Requests per second by kind", "stacked", _pick(s, "requests/"),
        y_title="requests/s")
    return pages


def job_charts(jobs):
    """The charts drawn from the summaries of jobs that ended in the window."""
    causes, nodes, hours = Counter(), Counter(), []
    for job in jobs:
        causes.update(job.get("failures") or {})
        nodes.update(job.get("failuresByNode") or {})
        hours.append((job.get("nodeHours") or 0.0, job))
    top = sorted(hours, key=lambda h: -h[0])[:15]

    def bar(id, title, counts, y_title):
        items = counts.most_common(20) if isinstance(counts, Counter) else counts
        return Chart(id, title, "bar", {name: [round(v, 6)] for name, v in items}, [""], y_title=y_title)
    return {
        "failures": [bar("failures-cause", "Failed commands by cause", causes, "commands"),
                     bar("failures-node", "Failures by render node", nodes, "failures")],
        "jobs": [bar("top-jobs", "Top jobs by node-hours",
                     [(f"{j['id']} {j.get('name', '')}"[:40], h) for h, j in top], "node-hours")],
    }


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
