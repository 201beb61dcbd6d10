"""Overhead of the worker, printed as JSON (a real `puli-worker` and real commandwatchers, against a
stub dispatcher that accepts everything and counts the command reports).

- start: time from sending POST /commands/ to the worker until the command's first output line
  is in its log; median of --runs (target < 100 ms). Also: the 202's round trip, and the
  watcher's startTime (state.json) minus the send time. Run with compiled bytecode, as an
  installed package has it (cached under a temporary PYTHONPYCACHEPREFIX).
- cpu: CPU time (every thread, from /proc/<pid>/task/*/schedstat) of the worker process and of the watcher per second of wall
  time, while a command prints --rate PULI_PROGRESS lines per second for --seconds (target:
  worker + watcher < 1 % of one core); with the reports the dispatcher got and the worker's CPU
  per report. The worker's idle CPU over the same time is given for scale.

Usage: python benchmarks/worker.py [--runs 20] [--seconds 10] [--rate 100]
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

# The same progress printer as the watcher's benchmark, so that the figures compare.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from watcher import MARK as MARK_BYTES, PRINTER  # noqa: E402

MARK = MARK_BYTES.decode()


class StubDispatcher:
    """Answers every worker call with success; counts the command reports."""

    def __init__(self):
        self.reports = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as gunicorn serves the worker

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if "/commands/" in self.path:
                    stub.reports += 1
                data = json.dumps({"name": "bench", "stop": [], "status": 3, "paused": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def assignment(command_id, cmd):
    return {"id": command_id, "assignment": 1, "runner": "puli.commandwatcher.runners.DefaultCommandRunner",
            "arguments": {"cmd": cmd}, "environment": {}, "taskName": "bench", "taskId": 1, "jobId": 1,
            "cores": 1, "ramUse": 0, "maxRunTime": 0, "licenses": [], "attempt": 1}


def wait_until(predicate, timeout=20.0, interval=0.0005):
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out")
        time.sleep(interval)


def log_has_mark(path):
    try:
        return MARK.encode() in path.read_bytes()
    except FileNotFoundError:
        return False


def start_worker(base, dispatcher):
    port = free_port()
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(base / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    args = [sys.executable, "-m", "puli.worker.main", "--set", f"dispatcher_url={dispatcher.url}",
            "--set", "address=127.0.0.1", "--set", "host=127.0.0.1", "--set", f"port={port}",
            "--set", f"name=127.0.0.1:{port}", "--set", f"data_dir={base / 'worker'}",
            "--set", "isolation=pgroup", "--set", "gpu_detection=false", "--set", "max_commands=1000",
            "--set", "log_level=WARNING"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            with urllib.request.urlopen(url + "/sysinfos/", timeout=1) as response:
                return json.loads(response.read())["registered"]
        except OSError:
            return False
    wait_until(up, 30, 0.05)
    return process, url


def measure_start(base, url, runs, warm_up=2):
    total_ms, accepted_ms, watcher_ms = [], [], []
    for n in range(-warm_up, runs):
        command_id = 1000 + n
        log = base / "worker" / "log" / "commands" / "1" / f"{command_id}.log"
        sent_wall, sent = time.time(), time.perf_counter()
        assert post(url + "/commands/", assignment(command_id, f"echo {MARK}"))[0] == 202
        accepted = time.perf_counter()
        wait_until(lambda log=log: log_has_mark(log))
        done = time.perf_counter()
        state = base / "worker" / "commands" / str(command_id) / "state.json"
        if n < 0:
            continue
        total_ms.append((done - sent) * 1000)
        accepted_ms.append((accepted - sent) * 1000)
        try:
            watcher_ms.append((json.loads(state.read_text())["startTime"] - sent_wall) * 1000)
        except (FileNotFoundError, ValueError):
            pass                        # already reported and removed
    return {"runs": runs, "median_ms": round(statistics.median(total_ms), 1),
            "min_ms": round(min(total_ms), 1), "max_ms": round(max(total_ms), 1),
            "post_202_median_ms": round(statistics.median(accepted_ms), 1),
            "watcher_start_time_median_ms": round(statistics.median(watcher_ms), 1) if watcher_ms else None,
            "target_ms": 100}


def cpu_seconds(process):
    """CPU time of every thread of the process, in ns precision (psutil's ticks are 10 ms)."""
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:
            pass                        # a thread that just ended
    return total / 1e9


def measure_cpu(base, url, worker, dispatcher, seconds, rate):
    worker_process = psutil.Process(worker.pid)
    # Idle, for scale: the loop, the heartbeat and the watchdog with nothing to run.
    idle_start, wall = cpu_seconds(worker_process), time.perf_counter()
    time.sleep(seconds)
    idle = (cpu_seconds(worker_process) - idle_start) / (time.perf_counter() - wall)

    command_id = 999
    cmd = [sys.executable, "-c", PRINTER.format(rate=rate, seconds=seconds + 2, mark=MARK)]
    log = base / "worker" / "log" / "commands" / "1" / f"{command_id}.log"
    status, answer = post(url + "/commands/", assignment(command_id, cmd))
    assert status == 202, answer
    watcher = psutil.Process(answer["watcherPid"])
    wait_until(lambda: log_has_mark(log))
    time.sleep(1.0)     # warm-up: one-time costs (lazy imports, regex compilation) are not per line
    reports_before = dispatcher.reports
    worker_start, watcher_start, wall = cpu_seconds(worker_process), cpu_seconds(watcher), time.perf_counter()
    time.sleep(seconds)
    worker_used, watcher_used = cpu_seconds(worker_process) - worker_start, cpu_seconds(watcher) - watcher_start
    wall = time.perf_counter() - wall
    reports = dispatcher.reports - reports_before
    return {"seconds": round(wall, 2), "lines_per_second": rate, "progress_lines": rate * seconds,
            "reports_sent": reports,
            "worker_percent_of_one_core": round(100 * worker_used / wall, 3),
            "watcher_percent_of_one_core": round(100 * watcher_used / wall, 3),
            "total_percent_of_one_core": round(100 * (worker_used + watcher_used) / wall, 3),
            "worker_cpu_ms_per_report": round(1000 * worker_used / max(reports, 1), 3),
            "worker_cpu_us_per_progress_line": round(1e6 * worker_used / (rate * seconds), 2),
            "worker_idle_percent_of_one_core": round(100 * idle, 3),
            "target_percent": 1.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()
    dispatcher = StubDispatcher()
    with tempfile.TemporaryDirectory(prefix="puli-worker-bench-") as tmp:
        base = Path(tmp)
        worker, url = start_worker(base, dispatcher)
        try:
            result = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                      "start": measure_start(base, url, args.runs),
                      "cpu": measure_cpu(base, url, worker, dispatcher, args.seconds, args.rate)}
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
            for process in psutil.process_iter(["cmdline"]):
                if str(base) in " ".join(process.info["cmdline"] or []):
                    process.kill()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
