"""pulistats end to end: a real dispatcher samples a real worker's farm running jobs (some of
which fail); /stats/history, `pulistats report`, /reports/ and the viewer are read back, and
the report and the viewer are opened in headless Chromium."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from processes import ROOT, Dispatcher, SignedInBrowser, wait_for
from test_worker_support import WorkerProcess, registered, sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def graph(name, cmd, frames, prod, user, type_):
    return {"name": name, "root": 0, "user": user,
            "tasks": [{"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1,
                       "tags": {"prod": prod, "type": type_},
                       "arguments": {"cmd": cmd, "start": 1, "end": frames}}]}


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    base = tmp_path_factory.mktemp("statsfarm")
    # An explicit SQLite URL: a /etc/puli/dispatcher.yml left by another test must not count.
    dispatcher = Dispatcher(base / "dispatcher", db_url=f"sqlite:///{base}/dispatcher/puli.sqlite", extra=("--set", "stats_interval=1s",
                                                        "--set", "retry_delay=0.2"))
    worker = WorkerProcess(dispatcher.url, base / "worker", token=dispatcher.worker_token())
    try:
        dispatcher.start()
        worker.start()
        wait_for(lambda: registered(dispatcher, worker.name), what="the worker's registration")
        jobs = [
            graph("ok-shots", "sleep 0.3", 4, "alpha", "ann", "render"),
            graph("broken", "exit 3", 2, "beta", "bob", "sim"),
            graph("ok-comp", "sleep 0.2", 3, "beta", "ann", "comp"),
        ]
        ids = []
        for g in jobs:
            status, body = dispatcher.call("POST", "/graphs/", g)
            assert status == 201, body
            ids.append(body["id"])

        def all_ended():
            return all(dispatcher.get(f"/nodes/{i}")[1]["status"] in (3, 4, 5) for i in ids)
        wait_for(all_ended, 60, interval=0.2, what="the jobs to end")

        def summarised():
            status, body = dispatcher.get("/stats/history?window=1h&jobs=true")
            assert status == 200, (body, dispatcher.tail())
            return body if len(body["jobs"]) == 3 and body["samples"] >= 4 else None
        wait_for(summarised, 30, interval=0.5, what="three job summaries and a few samples")
        dispatcher.ids = ids
        dispatcher.base = base
        yield dispatcher
    finally:
        worker.close()
        sweep(worker.data_dir)
        dispatcher.close()


def test_history_has_farm_series_and_job_summaries(farm):
    status, body = farm.get("/stats/history?window=1h&resolution=1s&jobs=1")
    assert status == 200, body
    s = body["series"]
    assert len(body["times"]) >= 4
    for key in ("rn/Idle", "cores/total", "commands/DONE", "jobs/DONE", "dispatch/avgMs"):
        assert key in s and len(s[key]) == len(body["times"])
    assert max(s["cores/total"]) >= 1
    assert any(k.startswith("requests/") for k in s)
    assert max(s["commands/DONE"]) >= 7
    jobs = {j["name"]: j for j in body["jobs"]}
    assert jobs["broken"]["failures"] == {"exit code": 2}
    assert jobs["broken"]["failuresByNode"] and sum(jobs["broken"]["failuresByNode"].values()) == 2
    ok = jobs["ok-shots"]
    assert ok["commands"] == 4 and ok["failures"] == {} and ok["nodeHours"] > 0
    per_frame = ok["timePerFrame"]
    assert 0 < per_frame["min"] <= per_frame["avg"] <= per_frame["max"]
    # One frame per command: the four commands' run times add up to the job's wall time.
    assert ok["wallSeconds"] == pytest.approx(4 * per_frame["avg"])
    # The watcher measured the CPU time of every command and the worker sent it.
    assert ok["cpuSeconds"] is not None and ok["cpuSeconds"] >= 0
    assert jobs["broken"]["cpuSeconds"] is not None


def test_history_group_by_prod(farm):
    status, body = farm.get("/stats/history?window=1h&group_by=prod&series=jobs")
    assert status == 200, body
    assert {"alpha", "beta"} <= set(body["series"])


def test_history_refuses_bad_parameters(farm):
    status, body = farm.get("/stats/history?window=yesterday")
    assert status == 400 and body["field"] == "window"
    status, body = farm.get("/stats/history?group_by=shoe")
    assert status == 400 and body["field"] == "group_by"


def _run_pulistats(*args, token):
    return subprocess.run([sys.executable, "-m", "puli.cli.pulistats", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env=dict(os.environ, PULI_TOKEN=token))


def test_pulistats_text_summary(farm):
    done = _run_pulistats("--server", farm.url, "--window", "1h", token=farm.token)
    assert done.returncode == 0, done.stderr
    assert "render nodes" in done.stdout and "jobs ended" in done.stdout and "top job" in done.stdout


def test_pulistats_report_has_every_chart_with_its_series(farm, tmp_path):
    out = tmp_path / "report"
    done = _run_pulistats("report", "--server", farm.url, "--window", "1h", "--resolution", "1s",
                          "--out", str(out), token=farm.token)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    charts = manifest["charts"]
    points = charts["rn-status"]["points"]
    assert points >= 4
    assert "Idle" in charts["rn-status"]["series"]
    assert all(n == points for n in charts["rn-status"]["series"].values())
    assert {"total", "used", "idle"} <= set(charts["cores"]["series"])
    assert "DONE" in charts["jobs"]["series"] or "ERROR" in charts["jobs"]["series"]
    assert charts["failures-cause"]["series"] == {"exit code": 1}
    assert len(charts["failures-node"]["series"]) == 1
    assert set(charts["top-jobs"]["series"]) == {f"{i} {n}" for i, n in zip(farm.ids, ("ok-shots", "broken", "ok-comp"))}
    assert "average" in charts["dispatch-ms"]["series"]
    assert charts["requests"]["series"]
    for chart in charts.values():
        svg = (out / chart["svg"]).read_text()
        ET.fromstring(svg)
        assert "<title>" in svg                   # the tooltips
        csv_lines = (out / chart["csv"]).read_text().splitlines()
        assert len(csv_lines) == chart["points"] + 1
    for page in ("index", "usage", "queue", "allocation", "licenses", "failures", "jobs", "dispatcher"):
        assert (out / f"{page}.html").exists()


def _get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def _svg_refs(html):
    import re
    return re.findall(r"data='([^']+\.svg[^']*)'", html)


def test_reports_served_by_the_dispatcher_and_their_svgs_load(farm):
    status, ctype, body = _get(farm.url + "/reports/", farm.token)
    assert status == 200 and ctype.startswith("text/html")
    for page in ("usage.html", "failures.html", "dispatcher.html"):
        status, _, html = _get(farm.url + "/reports/" + page, farm.token)
        refs = _svg_refs(html.decode())
        assert refs
        for ref in refs:
            status, ctype, svg = _get(farm.url + "/reports/" + ref, farm.token)
            assert status == 200 and ctype == "image/svg+xml"
            ET.fromstring(svg)


def test_viewer_form_and_chart(farm):
    status, _, html = _get(farm.url + "/reports/view?window=1h&value=allocated&group=prod&kind=line&scale=log", farm.token)
    assert status == 200
    html = html.decode()
    assert "<form" in html and "Save as SVG" in html
    (ref,) = _svg_refs(html)
    status, ctype, svg = _get(farm.url + "/reports/" + ref.replace("&amp;", "&"), farm.token)
    assert status == 200 and ctype == "image/svg+xml"
    ET.fromstring(svg)
    status, _, html = _get(farm.url + "/reports/view?window=1h&value=nodes&states=Idle&states=Working", farm.token)
    assert "samples" in html.decode()


def png_is_not_blank(path):
    """Decode the PNG's pixel rows (zlib) and check they are not one flat colour."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return len(set(raw)) > 16


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("REQUIRE_ALL_TESTS"),
                    reason="chromium is not installed (apt-get install chromium; scripts/test does)")
@pytest.mark.parametrize("path,name", [("/reports/usage.html", "pulistats-report.png"),
                                       ("/reports/view?window=1h&value=runningCommands&group=prod&kind=line",
                                        "pulistats-viewer.png")])
def test_chromium_screenshot_is_not_blank(farm, path, name):
    assert CHROMIUM, "REQUIRE_ALL_TESTS=1 (scripts/test) but chromium is not installed"
    shot = farm.base / name
    profile = tempfile.mkdtemp(prefix="puli-chromium-")
    browser = SignedInBrowser(farm.url, farm.new_token("supervisor", "viewer"))
    try:
        dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              browser.url + path], capture_output=True, text=True, timeout=90)
        assert "<object" in dom.stdout, dom.stderr[-2000:]
        done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--window-size=1000,1100", f"--screenshot={shot}", browser.url + path],
                              capture_output=True, text=True, timeout=90)
        assert shot.exists(), done.stderr[-2000:]
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    assert png_is_not_blank(shot)
    for ref in _svg_refs(dom.stdout):
        status, _, svg = _get(farm.url + "/reports/" + ref.replace("&amp;", "&"), farm.token)
        assert status == 200
        ET.fromstring(svg)
    if os.environ.get("PULI_SAVE_SCREENSHOTS"):
        dest = Path(ROOT) / "docs"
        dest.mkdir(exist_ok=True)
        shutil.copy(shot, dest / name)
