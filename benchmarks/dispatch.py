"""Dispatcher benchmarks: prints one JSON object of figures (not a test).

    .venv/bin/python benchmarks/dispatch.py [--nodes 5000 --jobs 10000 --per-job 100] [--db mysql|sqlite]

Figures, on a farm of --nodes render nodes (8 cores each, 5 pools) and --jobs x --per-job commands:
- pass_fill: one in-memory pass filling every free slot (assignments per second);
- pass_empty: a pass with no free slot, p50/p99/max over 1,000 passes, the whole model loaded;
- persisted: the same fill pass on a farm restored from the database, plus the write-behind
  flush of every assignment it made (assignments per second, both included);
- restore: seconds to restore the farm from the database, and RSS bytes per command after it
  (measured in a fresh process, all indices built);
- flush_10k: seconds to write 10,000 changed commands;
- submit_10k_http: a 10,000-command graph POSTed to a real puli-dispatcher (gunicorn) on the
  chosen database, seconds until the 201;
- token_check_us: identifying a bearer token already verified once (cached by its hash);
- update_rate: command-update requests per second through that gunicorn (each with its worker
  token checked), against the rate it serves a trivial JSON endpoint (/health, public) in the
  same run (wrk, 32 connections, 5 s each).
"""
import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE, os.path.join(os.path.dirname(HERE), "tests")]

from farmgen import make_farm  # noqa: E402
from puli.scheduler.dispatch import dispatch  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def in_memory(args):
    started = time.perf_counter()
    farm = make_farm(args.nodes, args.jobs, args.per_job)
    built = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    assigned = dispatch(farm, 1.0)
    fill = time.perf_counter() - started
    times = []
    for _ in range(1000):
        t = time.perf_counter()
        dispatch(farm, 2.0)
        times.append(time.perf_counter() - t)
    return farm, {
        "build_seconds": round(built, 2),
        "pass_fill": {"assignments": assigned, "seconds": round(fill, 4), "per_second": round(assigned / fill)},
        "pass_empty_us": {"p50": round(percentile(times, .5) * 1e6, 2), "p99": round(percentile(times, .99) * 1e6, 2),
                          "max": round(max(times) * 1e6, 2)},
    }


def database_url(kind, tmp):
    if kind == "sqlite":
        return f"sqlite://{tmp}/bench.sqlite", None
    import MySQLdb
    name = f"puli_bench_{os.getpid()}"
    from processes import MARIADB, mariadb_database_url
    conn = MySQLdb.connect(**MARIADB)
    conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn.close()
    return mariadb_database_url(name), name


def drop_database(name):
    if name:
        import MySQLdb
        from processes import MARIADB
        conn = MySQLdb.connect(**MARIADB)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def persist(farm, url):
    from puli.store import open_store
    store = open_store(url, clean=True)
    started = time.perf_counter()
    for job in list(farm.root.children):
        store.insert_job(job)
    dirty = farm.take_dirty()
    dirty.render_nodes.update(farm.render_nodes.values())
    dirty.pools.update(farm.pools.values())
    dirty.meta = True
    store.write(store.snapshot(farm, dirty))
    store.close()
    return time.perf_counter() - started


RESTORE_CHILD = r"""
import gc, json, sys, time, psutil
from puli.model.farm import Farm
from puli.store import open_store
from puli.scheduler.dispatch import dispatch
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
store = open_store(sys.argv[1])
farm = Farm()
t = time.perf_counter()
store.load(farm, time.time())
restore = time.perf_counter() - t
gc.collect(); gc.freeze()
after = proc.memory_info().rss
commands = len(farm.commands)
t = time.perf_counter()
assigned = dispatch(farm, time.time())
dirty = farm.take_dirty()
rows = store.snapshot(farm, dirty)
store.write(rows)
persisted = time.perf_counter() - t
# 10,000 changed commands, written in one flush
changed = list(farm.commands.values())[:: max(1, commands // 10000)][:10000]
for cmd in changed:
    farm.set_completion(cmd, 0.5)
t = time.perf_counter()
store.write(store.snapshot(farm, farm.take_dirty()))
flush = time.perf_counter() - t
print(json.dumps({"restore": {"seconds": round(restore, 2), "commands": commands,
                              "rss_bytes_per_command": round((after - before) / commands)},
                  "persisted": {"assignments": assigned, "seconds": round(persisted, 3),
                                "per_second": round(assigned / persisted)},
                  "flush_10k_seconds": round(flush, 3)}))
"""


def restore_and_persisted(url):
    out = subprocess.run([sys.executable, "-c", RESTORE_CHILD, url], capture_output=True, text=True,
                         cwd=os.path.dirname(HERE))
    if out.returncode:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def http_figures(url, tmp):
    from processes import Dispatcher, StandInWorker
    dispatcher = Dispatcher(os.path.join(tmp, "dispatcher"), db_url=url, extra=["--clean"]).start(timeout=300)
    worker = StandInWorker()
    try:
        graph = {"name": "bench", "root": 0, "user": "bench", "tasks": [
            {"type": "Task", "name": "frames", "arguments": {"cmd": "true", "start": 1, "end": 10000}}]}
        t = time.perf_counter()
        status, body = dispatcher.call("POST", "/graphs/", graph)
        submit = time.perf_counter() - t
        assert status == 201, body
        worker.register(dispatcher, cores=64)
        deadline = time.time() + 30
        while len(worker.assignments) < 64 and time.time() < deadline:
            time.sleep(0.05)
        rates = {}
        if shutil.which("wrk"):
            rates = update_rates(dispatcher, worker)
        return {"submit_10k_http_seconds": round(submit, 3), **rates}
    finally:
        worker.close()
        dispatcher.terminate()
        dispatcher.close()


WRK_SCRIPT = """
local paths = {}
local bodies = {}
%s
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("PUT", paths[i], {["Content-Type"] = "application/json",
                                       ["Authorization"] = "Bearer %s"}, bodies[i])
end
"""


def update_rates(dispatcher, worker):
    lines = []
    for a in worker.assignments[:64]:
        path = f"/rendernodes/{worker.name}/commands/{a['id']}/"
        body = json.dumps({"assignment": a["assignment"], "status": 3, "completion": 0.5}).replace('"', '\\"')
        lines.append(f'table.insert(paths, "{path}"); table.insert(bodies, "{body}")')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ("\n".join(lines), dispatcher.worker_token()))
        script = f.name

    def wrk(extra):
        out = subprocess.run(["wrk", "-t1", "-c32", "-d5s", *extra], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return float(line.split()[1])
        return None

    trivial = wrk([f"{dispatcher.url}/health"])
    updates = wrk(["-s", script, dispatcher.url])
    os.unlink(script)
    return {"update_rate": {"trivial_json_per_second": trivial, "command_update_per_second": updates,
                            "ratio": round(updates / trivial, 2) if trivial and updates else None}}


def token_check():
    """Microseconds to identify a bearer token already verified (the cached path every
    command report takes)."""
    from puli.dispatcher.auth import Tokens
    tokens = Tokens(None, time.time)
    token, _ = tokens.create("rn001:8000", "worker", node="rn001:8000")
    tokens.identify(token)
    n = 100_000
    t = time.perf_counter()
    for _ in range(n):
        tokens.identify(token)
    return {"token_check_us": round((time.perf_counter() - t) / n * 1e6, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--per-job", type=int, default=100)
    parser.add_argument("--db", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--skip-db", action="store_true", help="only the in-memory figures")
    args = parser.parse_args()
    farm, figures = in_memory(args)
    figures.update(token_check())
    figures["farm"] = {"render_nodes": args.nodes, "commands": len(farm.commands), "db": args.db}
    if not args.skip_db:
        tmp = tempfile.mkdtemp(prefix="puli-bench-")
        url, dbname = database_url(args.db, tmp)
        try:
            del farm
            fresh = make_farm(args.nodes, args.jobs, args.per_job)
            figures["write_whole_farm_seconds"] = round(persist(fresh, url), 1)
            del fresh
            figures.update(restore_and_persisted(url))
            figures.update(http_figures(url, tmp))
        finally:
            drop_database(dbname)
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
