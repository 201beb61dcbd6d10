"""Overhead of the commandwatcher, printed as JSON.

- start: time from spawning `python -m puli.commandwatcher <dir>` (assignment.json ready) until
  the command's first output line is in its log; median of 20 (target < 100 ms). Measured with
  compiled bytecode as an installed package has it (cached under a temporary PYTHONPYCACHEPREFIX,
  so the tree stays clean), and as this environment runs it (with PYTHONDONTWRITEBYTECODE set,
  every start compiles the sources). For scale, the same command started directly.
- cpu: the watcher's own CPU time (user + sys, psutil, watcher process only) per second of wall
  time while its command prints 100 PULI_PROGRESS lines per second for 10 s (target < 1 % of a core).
- state_writes: how often state.json is written while the command prints 3000 PULI_PROGRESS lines
  as fast as it can: the updates are coalesced, one write per MIN_INTERVAL at most while it runs,
  plus the first and the final one (target: no more than max_writes).

Usage: python benchmarks/watcher.py [--runs 20] [--seconds 10] [--rate 100] [--lines 3000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from puli.commandwatcher.state import MIN_INTERVAL

MARK = b"first-line"


def assignment(directory, cmd, command_id):
    return {
        "id": command_id, "assignment": 1, "runner": "puli.commandwatcher.runners.DefaultCommandRunner",
        "arguments": {"cmd": cmd}, "environment": {}, "taskName": "bench", "taskId": 1, "jobId": 1,
        "cores": 1, "ramUse": 0, "maxRunTime": 0, "licenses": [], "attempt": 1,
        "logPath": str(directory / "command.log"), "logMaxBytes": 10 * 1024 * 1024, "cgroup": None,
        "killGrace": 5,
    }


def spawn_watcher(directory, env=None):
    return subprocess.Popen([sys.executable, "-m", "puli.commandwatcher", str(directory)],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def bytecode_env(base):
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(base / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def wait_for_mark(path, started, timeout=10.0):
    while True:
        try:
            if MARK in path.read_bytes():
                return time.perf_counter() - started
        except FileNotFoundError:
            pass
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"no output in {path} after {timeout} s")
        time.sleep(0.0005)


def measure_start(base, runs, env, name, warm_up=0):
    watcher_ms, direct_ms = [], []
    for n in range(-warm_up, runs):
        directory = base / f"start-{name}-{n}"
        directory.mkdir()
        (directory / "assignment.json").write_text(json.dumps(assignment(directory, f"echo {MARK.decode()}", n)))
        started = time.perf_counter()
        watcher = spawn_watcher(directory, env)
        elapsed = wait_for_mark(directory / "command.log", started) * 1000
        watcher.wait()
        if n < 0:
            continue
        watcher_ms.append(elapsed)

        out = directory / "direct.out"
        started = time.perf_counter()
        with open(out, "wb") as f:
            direct = subprocess.Popen(["/bin/sh", "-c", f"echo {MARK.decode()}"], stdout=f)
            direct_ms.append(wait_for_mark(out, started) * 1000)
        direct.wait()
    return {"runs": runs, "median_ms": round(statistics.median(watcher_ms), 1),
            "min_ms": round(min(watcher_ms), 1), "max_ms": round(max(watcher_ms), 1),
            "direct_subprocess_median_ms": round(statistics.median(direct_ms), 1), "target_ms": 100}


PRINTER = """
import sys, time
rate, seconds = {rate}, {seconds}
print("{mark}", flush=True)
start = time.monotonic()
for i in range(rate * seconds):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    print(f"PULI_PROGRESS {{i / (rate * seconds):.4f}}", flush=True)
"""


def measure_cpu(base, seconds, rate):
    directory = base / "cpu"
    directory.mkdir()
    script = PRINTER.format(rate=rate, seconds=seconds, mark=MARK.decode())
    (directory / "assignment.json").write_text(json.dumps(assignment(directory, [sys.executable, "-c", script], 999)))
    watcher = spawn_watcher(directory, bytecode_env(base))
    process = psutil.Process(watcher.pid)
    wait_for_mark(directory / "command.log", time.perf_counter())
    # From the first line on: the interpreter's start-up is not the per-update cost.
    cpu_start, wall_start = process.cpu_times(), time.perf_counter()
    time.sleep(seconds)
    cpu_end, wall_end = process.cpu_times(), time.perf_counter()
    watcher.wait()
    state = json.loads((directory / "state.json").read_text())
    used = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    wall = wall_end - wall_start
    return {"seconds": round(wall, 2), "lines_per_second": rate, "watcher_cpu_s": round(used, 4),
            "percent_of_one_core": round(100 * used / wall, 3), "state_writes": state["seq"],
            "final_status": state["status"], "target_percent": 1.0}


def measure_state_writes(base, lines):
    directory = base / "state-writes"
    directory.mkdir()
    cmd = f"i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo PULI_PROGRESS 0.$i; done"
    (directory / "assignment.json").write_text(json.dumps(assignment(directory, cmd, 998)))
    started = time.perf_counter()
    watcher = spawn_watcher(directory, bytecode_env(base))
    watcher.wait()
    elapsed = time.perf_counter() - started
    state = json.loads((directory / "state.json").read_text())
    return {"progress_lines": lines, "seconds": round(elapsed, 3), "state_writes": state["seq"],
            "max_writes": int(elapsed / MIN_INTERVAL) + 2, "final_status": state["status"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--lines", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="puli-watcher-bench-") as tmp:
        base = Path(tmp)
        result = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                  "start": measure_start(base, args.runs, bytecode_env(base), "compiled", warm_up=2),
                  "start_without_bytecode_cache": measure_start(base, args.runs, None, "source")
                  if os.environ.get("PYTHONDONTWRITEBYTECODE") else "same as start",
                  "cpu": measure_cpu(base, args.seconds, args.rate),
                  "state_writes": measure_state_writes(base, args.lines)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
