"""Series over a time window from the recorded samples: what GET /stats/history answers and
what reports and the viewer draw.

window: "2h", "90m", "24h", "7d", "30d", or "FROM..TO" (epoch seconds or ISO dates, either side
may be empty: "2024-05-01..", "..2024-05-02T12:00"). resolution: seconds, "5m", "1h" or "auto"
(about POINTS points). series: prefixes of the flat series names ("rn/", "by/prod/", ...).
group_by: prod, user, step, type or pool: the series become the group's values for the metric
named by series (jobs, err, paused, ready, running, allocated, readyCommands, runningCommands).
"""
import datetime
import math
import re
import time

GROUPS = ("prod", "user", "step", "type", "pool")
METRICS = ("jobs", "err", "paused", "ready", "running", "allocated", "readyCommands", "runningCommands")
POINTS = 240
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BadQuery(ValueError):
    """A parameter of a history query is wrong: `field` names it."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


def duration(text, field="window"):
    match = _DURATION.match(str(text))
    if not match:
        raise BadQuery(field, f"{field} {text!r} is not a duration (2h, 24h, 7d, 30d, 300s)")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value <= 0:
        raise BadQuery(field, f"{field} must be more than 0")
    return value


def moment(text, field="window"):
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise BadQuery(field, f"{text!r} is neither epoch seconds nor an ISO date (2024-05-01T12:00)") from None


def parse_window(text, now):
    """(start, end) of a window expression."""
    text = (text or "24h").strip()
    if ".." in text:
        left, right = text.split("..", 1)
        end = moment(right) if right.strip() else now
        start = moment(left) if left.strip() else end - 86400.0
        if start >= end:
            raise BadQuery("window", f"window {text!r} ends before it starts")
        return start, end
    return now - duration(text), now


def parse_resolution(text, start, end, minimum=1.0):
    if text in (None, "", "auto"):
        return max(minimum, math.ceil((end - start) / POINTS))
    return max(minimum, duration(text, "resolution"))


def _wanted(series, group_by):
    """A predicate on series names and a renaming function."""
    if group_by:
        if group_by not in GROUPS:
            raise BadQuery("group_by", f"group_by must be one of {', '.join(GROUPS)}")
        metrics = series or ["allocated"]
        for metric in metrics:
            if metric not in METRICS:
                raise BadQuery("series", f"with group_by, series must be among {', '.join(METRICS)}")
        prefix = f"by/{group_by}/"
        suffixes = tuple("/" + m for m in metrics)
        single = len(metrics) == 1

        def keep(key):
            return key.startswith(prefix) and key.endswith(suffixes)

        def name(key):
            rest = key[len(prefix):]
            return rest.rsplit("/", 1)[0] if single else rest
        return keep, name
    prefixes = tuple(series or ())

    def keep(key):
        return not prefixes or key.startswith(prefixes)
    return keep, (lambda key: key)


def query(source, window="24h", resolution="auto", group_by=None, series=None, now=None,
          summaries=False, minimum=1.0):
    """The history as a JSON-able dict: times (bucket starts), series name -> values (0
    where a bucket's samples lack a series), and job summaries when asked."""
    now = time.time() if now is None else now
    start, end = parse_window(window, now)
    step = parse_resolution(resolution, start, end, minimum)
    if isinstance(series, str):
        series = [s for s in series.split(",") if s]
    keep, name = _wanted(series or [], group_by)
    rows = source.samples(start, end)
    if resolution in (None, "", "auto") and len(rows) > 1:
        # A history shorter than the window: spread its points over what was recorded.
        step = parse_resolution("auto", rows[0][0], rows[-1][0], max(minimum, rows[1][1] or 0))
    buckets = {}
    names = {}
    for t, _, sample in rows:
        bucket = buckets.get(b := math.floor(t / step) * step)
        if bucket is None:
            bucket = buckets[b] = [0, {}]
        bucket[0] += 1
        sums = bucket[1]
        for key, value in sample.items():
            if keep(key):
                n = names.get(key)
                if n is None:
                    n = names[key] = name(key)
                sums[n] = sums.get(n, 0.0) + value
    times = sorted(buckets)
    out_series = {n: [] for n in sorted(set(names.values()))}
    for t in times:
        count, sums = buckets[t]
        for n, values in out_series.items():
            v = sums.get(n)
            values.append(round(v / count, 3) if v is not None else 0)
    result = {"from": start, "to": end, "resolution": step, "samples": len(rows),
              "groupBy": group_by, "times": times, "series": out_series}
    if summaries:
        result["jobs"] = source.jobs(start, end)
    return result
