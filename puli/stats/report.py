"""The static pulistats report: index.html, one page per theme, an SVG and a CSV per chart.

build(history, out_dir) takes a history query result with job summaries (history.query(...,
summaries=True), or GET /stats/history?jobs=1) and writes the site; a short or empty history
gives pages that say so. manifest.json lists every chart with its series and point counts.
"""
import datetime
import html
import json
import os
import time

from . import charts

PAGES = (("usage", "Farm usage"), ("queue", "Queue"), ("allocation", "Allocation"),
         ("licenses", "Licenses"), ("failures", "Failures"), ("jobs", "Top jobs"),
         ("dispatcher", "Dispatcher"))

CSS = """body{font-family:sans-serif;margin:1.5em;color:#222;background:#fff}
nav a{margin-right:1em}.chart{margin:1em 0 2em}.chart object{display:block;max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#eee}.empty{color:#666;font-style:italic}"""


def _date(t):
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _page(title, nav, body):
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>\n"
            f"{body}\n</body></html>\n")


def _nav():
    return "<a href='index.html'>Summary</a>" + "".join(
        f"<a href='{name}.html'>{html.escape(title)}</a>" for name, title in PAGES)


def summary_rows(hist):
    """(label, value) lines describing the window: averages and peaks of the main series."""
    s = hist["series"]
    rows = [("window", f"{_date(hist['from'])} to {_date(hist['to'])}"),
            ("samples", hist.get("samples", len(hist["times"])))]

    def stat(key, label):
        values = s.get(key)
        if values:
            rows.append((label, f"avg {sum(values) / len(values):.1f}, max {max(values):g}"))
    stat("rn/Working", "working render nodes")
    stat("rn/Idle", "idle render nodes")
    stat("cores/used", "cores used")
    stat("commands/READY", "ready commands")
    stat("commands/RUNNING", "running commands")
    stat("dispatch/avgMs", "dispatch pass (ms)")
    jobs = hist.get("jobs") or []
    if jobs:
        failures = sum(sum((j.get("failures") or {}).values()) for j in jobs)
        rows.append(("jobs ended", len(jobs)))
        rows.append(("failed commands (final)", failures))
        rows.append(("node-hours of ended jobs", f"{sum(j.get('nodeHours') or 0 for j in jobs):.2f}"))
        cpu = [j["cpuSeconds"] for j in jobs if j.get("cpuSeconds") is not None]
        if cpu:
            rows.append(("CPU hours of ended jobs (measured)", f"{sum(cpu) / 3600:.2f}"))
    return rows


def build(hist, out_dir, title="Puli farm report"):
    """Write the report under out_dir; returns the manifest (chart id -> description)."""
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    pages = charts.time_charts(hist) if hist["times"] else {name: [] for name, _ in PAGES}
    pages.update(charts.job_charts(hist.get("jobs") or []))
    manifest = {"title": title, "from": hist["from"], "to": hist["to"], "samples": hist.get("samples", 0),
                "resolution": hist["resolution"], "charts": {}}
    nav = _nav()
    for name, page_title in PAGES:
        parts = []
        drawn = [c for c in pages.get(name, []) if not c.empty]
        for chart in drawn:
            with open(os.path.join(out_dir, f"{chart.id}.svg"), "w") as f:
                f.write(chart.svg())
            with open(os.path.join(out_dir, f"{chart.id}.csv"), "w") as f:
                f.write(chart.csv())
            manifest["charts"][chart.id] = {
                "page": name, "title": chart.title, "kind": chart.kind, "svg": f"{chart.id}.svg",
                "csv": f"{chart.id}.csv", "points": len(chart.labels),
                "series": {k: len(v) for k, v in chart.series.items()}}
            parts.append(f"<div class='chart'><h2>{html.escape(chart.title)}</h2>"
                         f"<object type='image/svg+xml' data='{chart.id}.svg' width='900' height='420'>"
                         f"{html.escape(chart.title)}</object>"
                         f"<a href='{chart.id}.svg' download>SVG</a> · "
                         f"<a href='{chart.id}.csv' download>CSV</a></div>")
        if name == "jobs" and hist.get("jobs"):
            parts.append(_jobs_table(hist["jobs"]))
        if not parts:
            parts.append(f"<p class='empty'>Nothing to draw for {_date(hist['from'])} to "
                         f"{_date(hist['to'])}: no {'samples' if name not in ('failures', 'jobs') else 'ended jobs'} "
                         "were recorded in this window yet.</p>")
        with open(os.path.join(out_dir, f"{name}.html"), "w") as f:
            f.write(_page(f"{title}: {page_title}", nav, "\n".join(parts)))
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary_rows(hist))
    note = "" if hist["times"] else ("<p class='empty'>No samples were recorded in this window yet: "
                                     "the dispatcher samples the farm every stats_interval.</p>")
    links = "".join(f"<li><a href='{name}.html'>{html.escape(t)}</a> "
                    f"({sum(1 for c in manifest['charts'].values() if c['page'] == name)} charts)</li>"
                    for name, t in PAGES)
    index = (f"{note}<table>{rows}</table><h2>Pages</h2><ul>{links}</ul>"
             f"<p>Generated {_date(time.time())} in {time.perf_counter() - started:.2f} s.</p>")
    with open(os.path.join(out_dir, "index.html"), "w") as f:
        f.write(_page(title, nav, index))
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _jobs_table(jobs):
    top = sorted(jobs, key=lambda j: -(j.get("nodeHours") or 0))[:30]
    head = "<tr><th>job</th><th>user</th><th>prod</th><th>status</th><th>commands</th>" \
           "<th>node-hours</th><th>s/frame avg</th><th>min</th><th>max</th><th>failures</th></tr>"
    rows = []
    for j in top:
        tpf = j.get("timePerFrame") or {}
        cells = [f"{j['id']} {j.get('name', '')}", j.get("user"), j.get("prod") or "", j.get("status"),
                 j.get("commands"), f"{j.get('nodeHours') or 0:.3f}",
                 *(f"{tpf[k]:.2f}" if k in tpf else "" for k in ("avg", "min", "max")),
                 sum((j.get("failures") or {}).values())]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<h2>Ended jobs by node-hours</h2><table>{head}{''.join(rows)}</table>"
