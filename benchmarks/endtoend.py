"""The farm as a whole, at scale: a real dispatcher on MariaDB, thousands of simulated nodes (not a test).

    .venv/bin/python benchmarks/endtoend.py                      # 1,000 and 5,000 nodes, then the kill -9 run
    .venv/bin/python benchmarks/endtoend.py --runs 500 --queue 50000 --warmup 20 --measure 30 --no-doc

Each run: a fresh MariaDB database and a real `puli-dispatcher` (gunicorn, auth on); a queue of
`--queue` one-frame commands submitted through the API (one graph of `--tasks` tasks);
`puli-farmsim` with the run's nodes (4 cores each by default), whose commands last long enough
for the farm to offer `--offered` completions a second at full occupancy; after `--warmup` s,
a window of `--measure` s. A probe job of one command at a time, submitted every few seconds,
measures ready→running under load: from its submission's 201 (committed: it is READY) to its
run starting on a simulated node. A run named N:kill gets a `kill -9` of the dispatcher (the
whole gunicorn process group) in the middle of its window, and is restarted at once.

Prints one JSON object: per run, sustained completions/s (the window's mean, and its worst
10 s), probe latency p50/p99/max, the nodes' idle gap between two commands (p50/p99/max, from
the simulator), requests/s by route, dispatcher CPU (cores) and peak RSS, the dispatch pass,
the flush and its lag (change → committed) from /metrics, restore time, and the simulator's
ledger: commands run twice and lost. With --doc (the default for a full run) docs/scale.md
and its charts are written again from the figures.
"""
import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import MySQLdb  # noqa: E402
import psutil  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from processes import MARIADB, Dispatcher, http, mariadb_database_url, wait_for  # noqa: E402

FARMSIM = os.path.join(os.path.dirname(sys.executable), "puli-farmsim")
POOL = "sim"
PROBE_EVERY = 3.0       # s between two probes
SAMPLE_EVERY = 5.0      # s between two /metrics samples


# -- one run -------------------------------------------------------------------------------------
class Run:
    def __init__(self, args, nodes, kill, work):
        self.args, self.nodes, self.kill = args, nodes, kill
        self.work = work
        self.database = f"puli_bench_e2e_{secrets.token_hex(3)}"
        self.samples = []           # (time, metrics)
        self.kill_index = None      # the first sample of the restarted dispatcher
        self.probes = []            # (task id, time READY)
        self.figures = {"nodes": nodes, "cores": args.cores, "queue": args.queue, "kill": kill}

    def durations(self):
        """Commands that last long enough for the farm to offer `offered` completions/s at full
        occupancy: mean = slots / offered, spread ±50%."""
        mean = self.nodes * self.args.cores / self.args.offered
        return f"uniform:{mean * 0.5:.3f}-{mean * 1.5:.3f}"

    def execute(self):
        server = MySQLdb.connect(**MARIADB)
        with server.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
        farm = None
        dispatcher = Dispatcher(os.path.join(self.work, "dispatcher"), db_url=mariadb_database_url(self.database),
                                extra=("--set", "flush_interval=1s", "--set", "dispatch_interval=2s",
                                       "--set", "log_level=WARNING"))
        try:
            dispatcher.start(timeout=120)
            self.dispatcher = dispatcher
            self.viewer = dispatcher.create_token("bench", "viewer")
            tokens = {name: os.path.join(self.work, f"{name}.token") for name in ("worker", "viewer")}
            for name, token in (("worker", dispatcher.worker_token()), ("viewer", self.viewer)):
                with open(tokens[name], "w") as f:
                    f.write(token)
            self.submit_queue()
            summary_path = os.path.join(self.work, "farmsim.json")
            log = open(os.path.join(self.work, "farmsim.log"), "wb")
            farm = subprocess.Popen(
                [FARMSIM, "--dispatcher", dispatcher.url, "--token-file", tokens["worker"],
                 "--query-token-file", tokens["viewer"], "--nodes", str(self.nodes), "--cores", str(self.args.cores),
                 "--pools", POOL, "--durations", self.durations(), "--connections", str(self.args.connections),
                 "--seed", "1", "--output", summary_path, "--log-level", "ERROR"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wait_for(lambda: self.registered() >= self.nodes, timeout=300, interval=1.0,
                     what=f"{self.nodes} simulated nodes registered")
            self.figures["registeredAfter"] = round(time.time() - self.farm_started, 1)
            self.window(farm)
            farm.send_signal(signal.SIGTERM)
            farm.wait(600)
            log.close()
            with open(summary_path) as f:
                summary = json.load(f)
            self.digest(summary)
            self.restore_time(dispatcher)
            return self.figures
        finally:
            if farm is not None and farm.poll() is None:
                os.killpg(farm.pid, signal.SIGKILL)
                farm.wait()
            try:
                dispatcher.kill()
            except ProcessLookupError:
                pass
            with server.cursor() as cursor:
                cursor.execute("SET SESSION lock_wait_timeout = 30")
                cursor.execute(f"DROP DATABASE `{self.database}`")
            server.close()

    def submit_queue(self):
        per_task = self.args.queue // self.args.tasks
        tasks = [{"type": "TaskGroup", "name": "queue", "tasks": list(range(1, self.args.tasks + 1))}]
        tasks += [{"type": "Task", "name": f"frames{t}", "minNbCores": 1, "maxNbCores": 1,
                   "arguments": {"cmd": "render -f %%MI_FRAME%%", "start": 1, "end": per_task}}
                  for t in range(self.args.tasks)]
        started = time.time()
        # (A million commands take the dispatcher tens of seconds to commit.)
        status, body = http("POST", f"{self.dispatcher.url}/graphs/", {
            "name": "queue", "root": 0, "user": "bench", "poolName": POOL, "tasks": tasks},
            timeout=900, token=self.dispatcher.token)
        assert status == 201, body
        self.figures["submitSeconds"] = round(time.time() - started, 1)
        self.farm_started = time.time()

    def registered(self):
        status, body = self.dispatcher.get("/rendernodes/", token=self.viewer)
        return sum(1 for rn in body.get("rendernodes", ()) if rn["name"].startswith("sim")) if status == 200 else 0

    def metrics(self):
        request = urllib.request.Request(f"{self.dispatcher.url}/metrics",
                                         headers={"Authorization": f"Bearer {self.viewer}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def window(self, farm):
        """Warm up, then measure; the probes and the /metrics samples run meanwhile."""
        stop = threading.Event()
        probing = threading.Thread(target=self.probe, args=(stop,), daemon=True)
        deadline = time.time() + self.args.warmup
        while time.time() < deadline:
            time.sleep(0.5)
            if farm.poll() is not None:
                raise RuntimeError(f"puli-farmsim exited with {farm.returncode}")
        probing.start()
        self.window_start = time.time()
        cpu = {name: process_cpu(pid) for name, pid in self.neighbours(farm).items()}
        end = self.window_start + self.args.measure
        killed = not self.kill
        while time.time() < end:
            metrics = self.metrics()
            if metrics is not None:
                self.samples.append((time.time(), metrics))
            if not killed and time.time() >= self.window_start + self.args.measure / 2:
                killed = True
                self.kill_and_restart()
            time.sleep(min(SAMPLE_EVERY, max(0.0, end - time.time())))
        self.window_end = time.time()
        # Who else used the machine's cores over the window: the simulator, MariaDB.
        for name, pid in self.neighbours(farm).items():
            if name in cpu and cpu[name] is not None:
                used = process_cpu(pid)
                if used is not None:
                    self.figures[f"{name}CpuCores"] = round((used - cpu[name]) / (self.window_end - self.window_start), 2)
        stop.set()
        probing.join()

    def neighbours(self, farm):
        found = {"simulator": farm.pid}
        for process in psutil.process_iter(["name"]):
            if process.info["name"] in ("mariadbd", "mysqld"):
                found["mariadb"] = process.pid
        return found

    def probe(self, stop):
        n = 0
        while not stop.wait(PROBE_EVERY):
            n += 1
            task = {"type": "Task", "name": f"probe{n}", "minNbCores": 1, "maxNbCores": 1,
                    "arguments": {"cmd": "render -f 1", "duration": 0.5}}
            try:
                status, body = self.dispatcher.call("POST", "/graphs/", {
                    "name": f"probe{n}", "root": 0, "user": "probe", "poolName": POOL, "tasks": [task]})
            except OSError:
                continue                    # the dispatcher is down (the kill -9 run)
            if status == 201:
                self.probes.append((body["id"], time.time()))

    def kill_and_restart(self):
        dispatcher = self.dispatcher
        killed = time.time()
        dispatcher.kill()
        dispatcher.proc.wait()
        dispatcher.start(timeout=300)
        self.figures["afterKill"] = {"readySeconds": round(time.time() - killed, 1)}
        # Dispatching again: the new process's first assignment (its counters start at 0).
        wait_for(lambda: (self.metrics() or {}).get(("puli_dispatch_assignments_total", ()), 0) > 0,
                 timeout=120, interval=0.2, what="the restarted dispatcher assigning")
        self.figures["afterKill"]["dispatchingSeconds"] = round(time.time() - killed, 1)
        self.kill_index = len(self.samples)

    # -- the figures ---------------------------------------------------------------------------
    def digest(self, summary):
        figures = self.figures
        timeline = [(summary["startedAt"] + t, done) for t, done, _ in summary["timeline"]]
        inside = [(t, d) for t, d in timeline if self.window_start <= t <= self.window_end]
        if len(inside) >= 2:
            (t0, d0), (t1, d1) = inside[0], inside[-1]
            figures["completionsPerSecond"] = round((d1 - d0) / (t1 - t0), 1)
            tens = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(inside, inside[10:])]
            figures["worst10sCompletionsPerSecond"] = round(min(tens), 1) if tens else None
        self.timeline = [(round(t - self.window_start, 1), d) for t, d in timeline]
        # A probe's graph is its one task: the job's id is the task's.
        starts = summary["firstStarts"]
        self.latencies = [(round(ready - self.window_start, 1), round(starts[str(task)] - ready, 3))
                          for task, ready in self.probes if str(task) in starts]
        figures["probeLatency"] = percentiles([latency for _, latency in self.latencies])
        figures["probesStarted"] = f"{len(self.latencies)}/{len(self.probes)}"
        figures["idleGap"] = summary["idleGap"]
        ledger = summary["ledger"]
        figures["ledger"] = {"runs": ledger["runs"], "done": ledger["done"],
                             "ranTwice": len(ledger["ranTwice"]), "lost": len(ledger["lost"])}
        if ledger["ranTwice"] or ledger["lost"]:
            figures["ledgerDetail"] = {k: dict(list(ledger[k].items())[:10]) for k in ("ranTwice", "lost")}
        figures["heartbeatsPerSecond"] = round(summary["heartbeats"] / summary["seconds"], 1)
        figures["simulatorCalls"] = summary["calls"]
        self.server_figures()

    def server_figures(self):
        samples = self.samples
        if self.kill_index is not None:
            samples = samples[self.kill_index:]     # counters start again with the new process
        if len(samples) < 2:
            return
        (t0, first), (t1, last) = samples[0], samples[-1]
        span = t1 - t0
        rates = {}
        for (name, labels), value in last.items():
            if name == "puli_http_requests_total":
                labels = dict(labels)
                key = f"{labels.get('method')} {labels.get('route')}"
                rates[key] = rates.get(key, 0.0) + (value - first.get((name, tuple(sorted(labels.items()))), 0.0)) / span
        self.figures["requestsPerSecond"] = {k: round(v, 1) for k, v in sorted(rates.items(), key=lambda kv: -kv[1]) if v >= 0.05}
        cpu = ("process_cpu_seconds_total", ())
        if cpu in last and cpu in first:
            self.figures["dispatcherCpuCores"] = round((last[cpu] - first[cpu]) / span, 2)
        rss = [m.get(("process_resident_memory_bytes", ()), 0) for _, m in self.samples]
        self.figures["dispatcherRssMiB"] = round(max(rss) / 2 ** 20) if rss else None
        for name, key in (("puli_dispatch_pass_seconds", "dispatchPass"), ("puli_flush_seconds", "flush"),
                          ("puli_flush_lag_seconds", "flushLag"),
                          ("puli_assignment_latency_seconds", "readyToRunningAllCommands")):
            self.figures[key] = histogram(first, last, name)
        errors = ("puli_database_errors_total", ())
        self.figures["databaseErrors"] = last.get(errors, 0) - first.get(errors, 0)

    def restore_time(self, dispatcher):
        """Stop the dispatcher cleanly and start it again on the same database: time to READY."""
        dispatcher.terminate(timeout=120)
        started = time.time()
        dispatcher.start(timeout=600)
        self.figures["restoreSeconds"] = round(time.time() - started, 1)
        metrics = self.metrics() or {}
        self.figures["commandsInMemory"] = int(sum(v for (name, _), v in metrics.items() if name == "puli_commands"))


def process_cpu(pid):
    """CPU seconds (user + system) a process has used, or None when it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def percentiles(values):
    if not values:
        return {"count": 0}
    values = sorted(values)
    if len(values) == 1:
        return {"count": 1, "p50": round(values[0], 3), "p99": round(values[0], 3), "max": round(values[0], 3)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "p50": round(cuts[49], 3), "p99": round(cuts[98], 3), "max": round(values[-1], 3)}


def histogram(first, last, name):
    """count, mean and the p50/p99 bucket bounds of a histogram over the window."""
    buckets = []
    for (sample, labels), value in last.items():
        if sample == f"{name}_bucket":
            bound = float(dict(labels)["le"])
            buckets.append((bound, value - first.get((sample, labels), 0.0)))
    if not buckets:
        return None
    buckets.sort()
    total = buckets[-1][1]
    count = last.get((f"{name}_count", ()), 0) - first.get((f"{name}_count", ()), 0)
    seconds = last.get((f"{name}_sum", ()), 0) - first.get((f"{name}_sum", ()), 0)
    out = {"count": int(count), "mean": round(seconds / count, 4) if count else None}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}AtMost"] = next((bound for bound, n in buckets if total and n >= q * total), None)
    return out


# -- the page ------------------------------------------------------------------------------------
def write_doc(results, runs, args, command):
    import pygal

    docs = os.path.join(ROOT, "docs")
    style = pygal.style.CleanStyle
    completions = pygal.XY(title="Completions per second over the measured window", x_title="s",
                           y_title="completions/s", style=style, show_dots=False, width=900, height=360)
    latency = pygal.XY(title="Probe ready→running latency (s) over the window", x_title="s",
                       y_title="s", style=style, stroke=False, width=900, height=360)
    for run in runs:
        label = f"{run.nodes} nodes{' (kill -9)' if run.kill else ''}"
        points = run.timeline
        rates = [((a[0] + b[0]) / 2, (b[1] - a[1]) / (b[0] - a[0]))
                 for a, b in zip(points, points[5:]) if b[0] > a[0] and 0 <= a[0] <= args.measure]
        completions.add(label, rates)
        latency.add(label, run.latencies)
    completions.render_to_file(os.path.join(docs, "scale-completions.svg"))
    latency.render_to_file(os.path.join(docs, "scale-latency.svg"))

    def cell(figure, *keys):
        for key in keys:
            figure = figure.get(key) if isinstance(figure, dict) else None
        return "–" if figure is None else figure

    rows = [("completions/s (window mean)", ("completionsPerSecond",)),
            ("completions/s (worst 10 s)", ("worst10sCompletionsPerSecond",)),
            ("probe ready→running p50 (s)", ("probeLatency", "p50")),
            ("probe ready→running p99 (s)", ("probeLatency", "p99")),
            ("probe ready→running max (s)", ("probeLatency", "max")),
            ("node idle gap p50 (s)", ("idleGap", "p50")),
            ("node idle gap p99 (s)", ("idleGap", "p99")),
            ("dispatcher CPU (cores)", ("dispatcherCpuCores",)),
            ("dispatcher peak RSS (MiB)", ("dispatcherRssMiB",)),
            ("dispatch pass mean (s)", ("dispatchPass", "mean")),
            ("flush mean (s)", ("flush", "mean")),
            ("flush lag p99 ≤ (s)", ("flushLag", "p99AtMost")),
            ("heartbeats/s", ("heartbeatsPerSecond",)),
            ("queue submission (s)", ("submitSeconds",)),
            ("restore after a clean stop (s)", ("restoreSeconds",)),
            ("after kill -9: READY (s)", ("afterKill", "readySeconds")),
            ("after kill -9: dispatching (s)", ("afterKill", "dispatchingSeconds")),
            ("commands run twice", ("ledger", "ranTwice")),
            ("commands lost", ("ledger", "lost"))]
    header = "| | " + " | ".join(f"{r['nodes']} nodes{' + kill -9' if r['kill'] else ''}" for r in results) + " |"
    lines = [header, "|---" * (len(results) + 1) + "|"]
    for title, keys in rows:
        lines.append(f"| {title} | " + " | ".join(str(cell(r, *keys)) for r in results) + " |")
    routes = sorted({k for r in results for k in (r.get("requestsPerSecond") or {})},
                    key=lambda k: -max((r.get("requestsPerSecond") or {}).get(k, 0) for r in results))
    route_lines = ["| route | " + " | ".join(f"{r['nodes']}{' + kill' if r['kill'] else ''}" for r in results) + " |",
                   "|---" * (len(results) + 1) + "|"]
    for route in routes[:12]:
        route_lines.append(f"| `{route}` | " + " | ".join(str((r.get("requestsPerSecond") or {}).get(route, "–"))
                                                         for r in results) + " |")
    text = f"""# Puli at farm scale

Written by `benchmarks/endtoend.py` (do not edit by hand): {time.strftime('%Y-%m-%d')}, on this
project's test machine ({os.cpu_count()} cores, shared by the dispatcher, MariaDB and the simulator).

    {command}

Each run: a real `puli-dispatcher` (gunicorn, one worker process, auth on) on MariaDB, a queue
of {args.queue:,} one-frame commands submitted through the API, and `puli-farmsim` with the
run's nodes ({args.cores} cores each) speaking the worker protocol over loopback HTTP, their
commands lasting long enough to offer {args.offered:g} completions/s at full occupancy.
{args.warmup:g} s of warm-up, then {args.measure:g} s measured. Probe latency: a one-command job
submitted every {PROBE_EVERY:g} s, from its 201 (committed, READY) to its run starting on a node.
The kill -9 run kills the dispatcher's whole process group in the middle of its window and
starts it again at once.

{chr(10).join(lines)}

Requests per second by route (dispatcher side, from `/metrics`):

{chr(10).join(route_lines)}

![completions per second](scale-completions.svg)

![probe latency](scale-latency.svg)

The raw figures, as the benchmark printed them:

```json
{json.dumps(results, indent=1)}
```
"""
    with open(os.path.join(docs, "scale.md"), "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1000,5000,5000:kill",
                        help="comma-separated node counts, N:kill for a run with a kill -9 (default 1000,5000,5000:kill)")
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--queue", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--offered", type=float, default=1333.0,
                        help="completions/s the farm offers at full occupancy (sets the commands' durations)")
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--measure", type=float, default=300.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--doc", dest="doc", action="store_true", default=None,
                        help="write docs/scale.md (the default with the default --runs)")
    parser.add_argument("--no-doc", dest="doc", action="store_false")
    args = parser.parse_args()
    plan = []
    for item in args.runs.split(","):
        nodes, _, kill = item.partition(":")
        plan.append((int(nodes), kill == "kill"))
    results, runs = [], []
    for nodes, kill in plan:
        with tempfile.TemporaryDirectory(prefix="puli-e2e-") as work:
            run = Run(args, nodes, kill, work)
            print(f"endtoend: {nodes} nodes{' with a kill -9' if kill else ''}...", file=sys.stderr, flush=True)
            results.append(run.execute())
            runs.append(run)
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"runs": results}, indent=1))
    if args.doc or (args.doc is None and args.runs == parser.get_default("runs")):
        write_doc(results, runs, args, "python benchmarks/endtoend.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
