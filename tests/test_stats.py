"""pulistats units: sampling a model farm, job summaries, the SQLite tables, downsampling,
history queries, and reports from empty or short histories."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from puli.dispatcher.sampler import Sampler, failure_cause
from puli.dispatcher.service import Service
from puli.model.status import CommandStatus as CS
from puli.stats import history, report
from puli.store import open_store
from puli.store.stats import MemoryStats, StatsStore

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from farmgen import make_farm  # noqa: E402


def sampled(source, n=10, start=1000.0, step=60.0, nodes=20, jobs=6):
    farm = make_farm(nodes=nodes, jobs=jobs, commands_per_job=5, pools=2)
    service = Service(farm)
    sampler = Sampler(service, interval=step, source=source)
    for i in range(n):
        sampler.sample(now=start + i * step)
    return service, sampler


def test_sample_has_every_family_of_series():
    _, sampler = sampled(MemoryStats(), n=1)
    s = sampler.latest
    assert s["rn/Idle"] == 20 and s["cores/total"] == 160 and s["cores/used"] == 0
    assert s["commands/READY"] == 30 and s["jobs/READY"] == 6
    assert s["rnpool/pool0/Idle"] == 10
    assert s["by/user/user0/readyCommands"] == 5 and s["by/pool/pool1/jobs"] == 3
    assert s["by/prod/-/jobs"] == 6
    assert "dispatch/avgMs" in s


def test_ended_job_is_summarised_once():
    source = MemoryStats()
    service, sampler = sampled(source, n=1)
    farm = service.farm
    job = farm.root.children[0]
    rn = next(iter(farm.render_nodes.values()))
    for i, cmd in enumerate(job.tasks().__next__().commands):
        farm.assign(cmd, rn, 1, 2000.0)
        farm.set_status(cmd, CS.RUNNING, 2000.0)
        if i == 0:
            cmd.message = "exit code 3"
            farm.finish(cmd, CS.ERROR, 2010.0)
        else:
            farm.finish(cmd, CS.DONE, 2000.0 + 10 * i)
    sampler.sample(now=2100.0)
    sampler.sample(now=2160.0)
    (summary,) = source.jobs(0, 1e12)
    assert summary["id"] == job.id and summary["failures"] == {"exit code": 1}
    assert summary["failuresByNode"] == {rn.name: 1}
    assert summary["timePerFrame"] == {"avg": 25.0, "min": 10.0, "max": 40.0}
    assert summary["nodeHours"] == pytest.approx((10 + 10 + 20 + 30 + 40) / 8 / 3600)


def test_failure_causes_from_the_worker_figures():
    figures = {"exitCode": None, "signal": None, "oom": False, "timedOut": False}
    assert failure_cause(CS.ERROR, "whatever", {**figures, "oom": True, "signal": 9}) == "out of memory"
    assert failure_cause(CS.ERROR, "", {**figures, "timedOut": True, "signal": 15}) == "max run time"
    assert failure_cause(CS.ERROR, "render crashed", {**figures, "signal": 11}) == "signal"
    assert failure_cause(CS.ERROR, "frame 3: boom", {**figures, "exitCode": 2}) == "exit code"
    assert failure_cause(CS.TIMEOUT, "", {**figures, "exitCode": 2}) == "node lost"
    # exit code 0 but a runner's error: the message decides
    assert failure_cause(CS.ERROR, "no output written", {**figures, "exitCode": 0}) == "error"


def test_failure_causes():
    assert failure_cause(CS.ERROR, "out of memory: limit 100 MB", {}) == "out of memory"
    assert failure_cause(CS.ERROR, "exceeded max run time of 5 s", {}) == "max run time"
    assert failure_cause(CS.TIMEOUT, "render node x silent for more than 30 s", {}) == "node lost"
    assert failure_cause(CS.ERROR, "killed by signal 9", {}) == "signal"
    assert failure_cause(CS.ERROR, "exit code 1", {}) == "exit code"


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """The store-level stats tests run on both databases Puli supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/puli.sqlite"
    return request.getfixturevalue("mariadb_url")


@pytest.fixture
def stats_store(db_url):
    store = open_store(db_url)
    try:
        yield StatsStore(store)
    finally:
        store.close()


def test_tables_round_trip_and_downsampling(db_url):
    store = open_store(db_url)
    try:
        source = StatsStore(store)
        day = 86400.0
        start = 1_700_000_000.0 - 1_700_000_000.0 % 3600
        for i in range(0, 40 * 24 * 12):            # 40 days, one sample each 5 minutes
            t = start + i * 300.0
            source.write(t, {"rn/Idle": 2.0, "x": float(i % 2)})
        now = start + 40 * day
        source.compact(now)
        rows = source.samples(0, 1e12)
        by_res = {r: [row for row in rows if row[1] == r] for r in (0, 300, 3600)}
        assert by_res[0] and min(t for t, _, _ in by_res[0]) >= now - 2 * day - 3600
        assert by_res[300] and max(t for t, _, _ in by_res[300]) < now - 2 * day
        assert by_res[3600] and max(t for t, _, _ in by_res[3600]) < now - 30 * day
        assert by_res[3600][0][2] == {"rn/Idle": 2.0, "x": 0.5}
        times = [t for t, _, _ in rows]
        assert len(times) == len(set(times))     # the resolutions do not overlap
        hist = history.query(source, "30d", "auto", now=now)
        assert hist["series"]["rn/Idle"] and all(v == 2.0 for v in hist["series"]["rn/Idle"])
    finally:
        store.close()


def test_history_parameters():
    source = MemoryStats()
    assert history.parse_window("2h", 10_000.0) == (2800.0, 10_000.0)
    assert history.parse_window("100..200", 0) == (100.0, 200.0)
    for bad in ("yesterday", "200..100"):
        with pytest.raises(history.BadQuery):
            history.query(source, bad, now=1000.0)
    with pytest.raises(history.BadQuery):
        history.query(source, "2h", group_by="prod", series="shoes", now=1000.0)


def test_empty_and_one_sample_reports_are_readable(tmp_path):
    hist = history.query(MemoryStats(), "24h", now=1e9, summaries=True)
    manifest = report.build(hist, tmp_path / "empty")
    assert manifest["charts"] == {}
    assert "No samples were recorded" in (tmp_path / "empty" / "index.html").read_text()
    assert "Nothing to draw" in (tmp_path / "empty" / "usage.html").read_text()
    source = MemoryStats()
    sampled(source, n=1, start=1e9 - 10)
    manifest = report.build(history.query(source, "24h", now=1e9, summaries=True), tmp_path / "one")
    assert manifest["charts"]["rn-status"]["points"] == 1
    ET.fromstring((tmp_path / "one" / "rn-status.svg").read_text())
    json.loads((tmp_path / "one" / "manifest.json").read_text())


def _run_job(farm, job, rn, outcomes):
    """Run the first task's commands on rn: outcomes[i] is (status, message, stats) or None (DONE)."""
    for i, cmd in enumerate(job.tasks().__next__().commands):
        farm.assign(cmd, rn, 1, 2000.0)
        farm.set_status(cmd, CS.RUNNING, 2000.0)
        status, message, stats = outcomes[i] if i < len(outcomes) and outcomes[i] else (CS.DONE, "", None)
        cmd.message = message
        if stats is not None:
            cmd.stats = stats
        farm.finish(cmd, status, 2000.0 + 10 * (i + 1))


def test_summary_uses_the_worker_figures():
    source = MemoryStats()
    service, sampler = sampled(source, n=1)
    farm = service.farm
    job = farm.root.children[0]
    rn = next(iter(farm.render_nodes.values()))

    def figures(**kw):
        return {"wallSeconds": 10.0, "cpuSeconds": 7.5, "exitCode": None, "signal": None, "oom": False,
                "timedOut": False, "memoryPeakMb": 100.0, **kw}
    _run_job(farm, job, rn, [
        (CS.ERROR, "frame 1: exit code 3", figures(oom=True, signal=9, memoryPeakMb=64.0)),
        (CS.ERROR, "killed by signal SIGSEGV", figures(exitCode=2)),     # the figures win
        None,
        (CS.DONE, "", figures(exitCode=0, cpuSeconds=2.5, memoryPeakMb=512.0)),
        (CS.ERROR, "exceeded max run time of 5 s", {}),                  # an older row: the message
    ])
    sampler.sample(now=2100.0)
    (summary,) = source.jobs(0, 1e12)
    assert summary["failures"] == {"out of memory": 1, "exit code": 1, "max run time": 1}
    assert summary["cpuSeconds"] == pytest.approx(7.5 + 7.5 + 2.5)
    assert summary["memoryPeakMb"] == 512.0


def test_summary_without_figures_has_no_cpu_time():
    source = MemoryStats()
    service, sampler = sampled(source, n=1)
    farm = service.farm
    _run_job(farm, farm.root.children[0], next(iter(farm.render_nodes.values())), [])
    sampler.sample(now=2100.0)
    (summary,) = source.jobs(0, 1e12)
    assert summary["cpuSeconds"] is None and summary["failures"] == {}


def test_recording_a_farm_into_the_database(stats_store):
    service, sampler = sampled(stats_store, n=5, start=1000.0)
    farm = service.farm
    job = farm.root.children[0]
    _run_job(farm, job, next(iter(farm.render_nodes.values())),
             [(CS.ERROR, "x", {"exitCode": 1, "signal": None, "oom": False, "timedOut": False,
                               "cpuSeconds": 1.25, "wallSeconds": 10.0})])
    sampler.sample(now=2100.0)
    sampler.sample(now=2160.0)                   # the job is summarised once
    rows = stats_store.samples(0, 1e12)
    assert [t for t, _, _ in rows] == [1000.0, 1060.0, 1120.0, 1180.0, 1240.0, 2100.0, 2160.0]
    assert all(r == 0 for _, r, _ in rows)
    assert rows[0][2]["rn/Idle"] == 20 and rows[0][2]["by/prod/-/jobs"] == 6
    assert stats_store.job_ids() == {job.id}
    (summary,) = stats_store.jobs(0, 1e12)
    assert summary["id"] == job.id and summary["failures"] == {"exit code": 1}
    assert summary["cpuSeconds"] == 1.25
    assert stats_store.jobs(0, 1000.0) == []


def test_history_queries_on_the_database(stats_store):
    sampled(stats_store, n=30, start=10_000.0, step=60.0)
    now = 10_000.0 + 30 * 60
    hist = history.query(stats_store, "1h", "5m", now=now, summaries=True)
    assert hist["samples"] == 30 and hist["resolution"] == 300
    assert len(hist["times"]) == 7 and hist["series"]["rn/Idle"] == [20.0] * 7
    by_user = history.query(stats_store, "1h", "auto", group_by="user", series="readyCommands", now=now)
    assert by_user["series"] and all(name.startswith("user") for name in by_user["series"])
    assert all(v == 5.0 for values in by_user["series"].values() for v in values)
    window = history.query(stats_store, "10000..10300", "60", now=now)
    assert window["samples"] == 6 and window["times"][0] == 9960.0     # buckets start on a multiple of 60
    assert history.query(stats_store, "1h", now=1e6)["samples"] == 0


def test_job_summaries_on_the_database(stats_store):
    stats_store.write(100.0, {"a": 1.0}, [{"id": 5, "end": 90.0, "name": "old", "failures": {"signal": 2}},
                                        {"id": 6, "end": 95.0, "name": "é unicode ✓"}])
    stats_store.write(200.0, {"a": 2.0}, [{"id": 5, "end": 150.0, "name": "rerun", "failures": {}}])
    assert stats_store.job_ids() == {5, 6}
    jobs = stats_store.jobs(0, 1e12)
    assert [(j["id"], j["name"]) for j in jobs] == [(6, "é unicode ✓"), (5, "rerun")]
    assert stats_store.jobs(96.0, 149.0) == []
    stats_store.hour_keep = 100.0
    stats_store.compact(210.0)                   # summaries older than hour_keep go
    assert stats_store.job_ids() == {5}
