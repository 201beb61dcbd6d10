"""The browser viewer (what pulistatsviewer did in PyQt4): a plain HTML form, and one pygal chart
drawn per request from the recorded history."""
import html
import urllib.parse

from . import charts, history

VALUES = (("nodes", "render nodes by status"), ("jobs", "unfinished jobs"), ("err", "jobs in error"),
          ("paused", "paused jobs"), ("ready", "ready jobs"), ("allocated", "allocated render nodes"),
          ("running", "running jobs"), ("readyCommands", "ready commands"),
          ("runningCommands", "running commands"))
GROUPS = (("prod", "prod"), ("user", "user"), ("step", "step"), ("type", "job type"), ("pool", "pool"))
STATES = ("Working", "Assigned", "Idle", "Paused", "Unknown", "Booting", "Finishing")
DEFAULTS = {"window": "24h", "value": "nodes", "group": "prod", "resolution": "auto",
            "kind": "stacked", "scale": "linear"}


def options(params):
    """The form's values from query parameters (a dict of str or list), defaults filled in."""
    out = {k: (params.get(k) or v) for k, v in DEFAULTS.items()}
    for k in DEFAULTS:
        if isinstance(out[k], list):
            out[k] = out[k][-1]
    states = params.get("states") or list(STATES[:4])
    out["states"] = [states] if isinstance(states, str) else list(states)
    if out["value"] not in dict(VALUES):
        raise history.BadQuery("value", f"value must be one of {', '.join(dict(VALUES))}")
    if out["group"] not in dict(GROUPS):
        raise history.BadQuery("group", f"group must be one of {', '.join(dict(GROUPS))}")
    if out["kind"] not in ("line", "stacked"):
        raise history.BadQuery("kind", "kind must be line or stacked")
    if out["scale"] not in ("linear", "log"):
        raise history.BadQuery("scale", "scale must be linear or log")
    return out


def chart(source, opts, now):
    """The Chart the options ask for."""
    if opts["value"] == "nodes":
        hist = history.query(source, opts["window"], opts["resolution"], series=["rn/"], now=now)
        series = {k: v for k, v in charts._pick(hist["series"], "rn/", charts.RN_ORDER).items()
                  if k in opts["states"]}
        title = "Render nodes by status"
    else:
        hist = history.query(source, opts["window"], opts["resolution"], group_by=opts["group"],
                             series=[opts["value"]], now=now)
        series = charts._top(hist["series"])
        title = f"{dict(VALUES)[opts['value']].capitalize()} by {dict(GROUPS)[opts['group']]}"
    labels = charts.time_labels(hist["times"], hist["resolution"])
    return charts.Chart("view", title, opts["kind"], series, labels, log=opts["scale"] == "log"), hist


def _select(name, choices, current):
    items = "".join(f"<option value='{v}'{' selected' if v == current else ''}>{html.escape(t)}</option>"
                    for v, t in choices)
    return f"<label>{name} <select name='{name}'>{items}</select></label>"


def page(opts, hist, error=None):
    """The form and the chart (an <object> of view.svg with the same query)."""
    query = urllib.parse.urlencode({**{k: opts[k] for k in DEFAULTS}, "states": opts["states"]}, doseq=True)
    states = "".join(f"<label><input type='checkbox' name='states' value='{s}'"
                     f"{' checked' if s in opts['states'] else ''}>{s}</label> " for s in STATES)
    form = (
        "<form method='get' action='view'>"
        f"<label>window <input name='window' value='{html.escape(opts['window'])}' size='24' "
        "title='2h, 24h, 7d, 30d or FROM..TO (2024-05-01..2024-05-02T12:00)'></label> "
        f"{_select('value', VALUES, opts['value'])} {_select('group', GROUPS, opts['group'])} "
        f"<label>resolution <input name='resolution' value='{html.escape(opts['resolution'])}' size='6' "
        "title='auto, 60s, 5m, 1h'></label> "
        f"{_select('kind', (('stacked', 'stacked'), ('line', 'line')), opts['kind'])} "
        f"{_select('scale', (('linear', 'linear'), ('log', 'log')), opts['scale'])}"
        f"<div>node states: {states}</div><button type='submit'>Draw</button></form>")
    if error:
        body = f"<p class='error'>{html.escape(error)}</p>"
    elif not hist["times"]:
        body = ("<p class='empty'>No samples were recorded in this window yet: the dispatcher "
                "samples the farm every stats_interval.</p>")
    else:
        body = (f"<p>{hist['samples']} samples, one point every {hist['resolution']:g} s.</p>"
                f"<object id='chart' type='image/svg+xml' data='view.svg?{html.escape(query)}' "
                "width='900' height='420'>chart</object>"
                f"<p><a href='view.svg?{html.escape(query)}&amp;download=1'>Save as SVG</a></p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Puli stats viewer</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}label{margin-right:.8em}"
            "form div{margin:.5em 0}.empty,.error{color:#a00}</style></head><body>"
            f"<h1>Puli stats viewer</h1><p><a href='./'>latest report</a></p>{form}{body}</body></html>\n")
