"""The web monitor at farm scale: a real dispatcher on MariaDB holding --jobs jobs of --commands
commands each (10,000 x 100: a million), the pages' answer times, and the dispatcher's CPU while
--monitors browsers keep their pages open (not a test).

    .venv/bin/python benchmarks/ui.py
    .venv/bin/python benchmarks/ui.py --jobs 1000 --commands 10 --monitors 5 --window 20

Jobs are submitted through the API (users, prods and shots vary; every tenth job is paused).
Render times are the time to the last byte of a page on loopback, `--samples` times each, for
the jobs page as it opens (50 newest), filtered, sorted by name and by progress,
the last page of 250, its live part (what a browser fetches every 5 s), a job's page, and the render nodes page.
Then `--monitors` monitors poll as ui.js does (the live part every 5 s, with If-None-Match;
most on the jobs page, some on a job, some on the render nodes), for `--window` s; the
dispatcher's CPU (its gunicorn processes, user + system) is compared with an idle window of
the same length. With Chromium and chromedriver present, the jobs page is also loaded in a
real browser: navigation timing (response end, DOM content loaded). Prints one JSON object.
"""
import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import MySQLdb  # noqa: E402
import psutil  # noqa: E402

from processes import MARIADB, Dispatcher, http, mariadb_database_url  # noqa: E402

USERS = ["ann", "bob", "carla", "dev", "eve", "farid", "gus", "hana"]
PRODS = ["wolf", "bear", "fox", "owl"]
LIVE_EVERY = 5.0


def graph(number, commands):
    user, prod = USERS[number % len(USERS)], PRODS[number % len(PRODS)]
    return {"name": f"{prod}_sh{number % 400:03d}_comp_v{number % 17:03d}", "root": 0, "user": user,
            "poolName": "default", "tasks": [{
                "type": "Task", "name": f"{prod}_sh{number % 400:03d}_comp_v{number % 17:03d}",
                "tags": {"prod": prod, "shot": f"sh{number % 400:03d}"},
                "minNbCores": 1, "maxNbCores": 1,
                "arguments": {"cmd": "render -f %%MI_FRAME%%", "start": 1, "end": commands}}]}


def submit(dispatcher, jobs, commands, threads=4):
    numbers = iter(range(jobs))
    lock = threading.Lock()
    ids = []

    def loop():
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            status, body = http("POST", f"{dispatcher.url}/graphs/", graph(number, commands), timeout=120,
                                token=dispatcher.token)
            assert status == 201, body
            with lock:
                ids.append(body["id"])
            if number % 10 == 9:
                http("PUT", f"{dispatcher.url}/nodes/{body['id']}/paused", {"paused": True}, token=dispatcher.token)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(ids)


def get(url, token, headers=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            body, status, etag = answer.read(), answer.status, answer.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        body, status, etag = exc.read(), exc.code, exc.headers.get("ETag")
    return time.perf_counter() - started, status, len(body), etag


def summary(values):
    values = sorted(values)
    return {"p50": round(statistics.median(values) * 1000, 1), "max": round(values[-1] * 1000, 1),
            "mean": round(statistics.fmean(values) * 1000, 1)}


def render_times(dispatcher, token, job_id, jobs, samples):
    pages = {
        "jobs (50 newest)": "/ui/jobs",
        "jobs filtered (user + prod)": "/ui/jobs?constraint_user=ann&constraint_prod=wolf",
        "jobs by name glob": "/ui/jobs?constraint_name=*sh010*",
        "jobs sorted by name": "/ui/jobs?sort=name",
        "jobs sorted by progress": "/ui/jobs?sort=-completion",
        "jobs, the last page of 250": f"/ui/jobs?limit=250&offset={max(jobs - 250, 0)}",
        "job page (tree + 100 commands)": f"/ui/jobs/{job_id}",
        "render nodes": "/ui/rendernodes",
    }
    out = {}
    for name, path in pages.items():
        times, size = [], 0
        for _ in range(samples):
            seconds, status, size, _ = get(dispatcher.url + path, token)
            assert status == 200, (path, status)
            times.append(seconds)
        out[name] = dict(summary(times), bytes=size)
    times = [get(dispatcher.url + "/ui/jobs", token, {"X-Puli-Live": "1"})[0] for _ in range(samples)]
    out["jobs live part"] = summary(times)
    return out


def cpu_of(pid):
    """CPU seconds of the dispatcher: its gunicorn arbiter and worker."""
    total = 0.0
    process = psutil.Process(pid)
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def monitors(dispatcher, token, job_ids, count, window):
    """`count` monitors polling their page's live part for `window` s: CPU seconds used, polls made."""
    stop = threading.Event()
    polls = [0] * count
    statuses = {}

    def monitor(number):
        rng = random.Random(number)
        if number % 10 < 7:
            path = "/ui/jobs" if number % 2 else f"/ui/jobs?constraint_user={USERS[number % len(USERS)]}"
        elif number % 10 < 9:
            path = f"/ui/jobs/{rng.choice(job_ids)}"
        else:
            path = "/ui/rendernodes"
        get(dispatcher.url + path, token)                       # the page opens
        etag = None
        stop.wait(rng.uniform(0, LIVE_EVERY))                   # monitors are not in step
        while not stop.is_set():
            _, status, _, tag = get(dispatcher.url + path, token,
                                    {"X-Puli-Live": "1", **({"If-None-Match": etag} if etag else {})})
            etag = tag or etag
            polls[number] += 1
            statuses[status] = statuses.get(status, 0) + 1
            stop.wait(LIVE_EVERY)

    threads = [threading.Thread(target=monitor, args=(n,), daemon=True) for n in range(count)]
    before = cpu_of(dispatcher.proc.pid)
    for thread in threads:
        thread.start()
    time.sleep(window)
    stop.set()
    for thread in threads:
        thread.join(60)
    return cpu_of(dispatcher.proc.pid) - before, sum(polls), statuses


def chromium_load(dispatcher, token, loads=5):
    """Navigation timing of the jobs page in headless Chromium, signed in through the form."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="puli-bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1500,950", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(dispatcher.url + "/ui/signin")
        driver.find_element("id", "token").send_keys(token)
        driver.find_element("id", "signin").click()
        response, loaded = [], []
        for _ in range(loads):
            driver.get(dispatcher.url + "/ui/jobs")
            timing = driver.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return [t.responseEnd - t.startTime, t.domContentLoadedEventEnd - t.startTime];")
            response.append(timing[0] / 1000)
            loaded.append(timing[1] / 1000)
        return {"responseEnd": summary(response), "domContentLoaded": summary(loaded)}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=100, help="per job")
    parser.add_argument("--monitors", type=int, default=20)
    parser.add_argument("--window", type=float, default=60.0, help="s of monitoring, and of the idle baseline")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    database = f"puli_bench_ui_{secrets.token_hex(3)}"
    server = MySQLdb.connect(**MARIADB)
    with server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    work = tempfile.mkdtemp(prefix="puli-bench-ui-")
    dispatcher = Dispatcher(os.path.join(work, "dispatcher"), db_url=mariadb_database_url(database),
                            extra=("--set", "flush_interval=1s", "--set", "dispatch_interval=2s",
                                   "--set", "log_level=WARNING", "--set", "max_queued_commands=2000000",
                                   "--set", "max_queued_commands_per_user=2000000",
                                   "--set", "max_queued_jobs_per_user=100000"))
    figures = {"jobs": args.jobs, "commands": args.jobs * args.commands, "monitors": args.monitors,
               "window": args.window}
    try:
        dispatcher.start(timeout=120)
        started = time.time()
        job_ids = submit(dispatcher, args.jobs, args.commands)
        figures["submitSeconds"] = round(time.time() - started, 1)
        token = dispatcher.create_token("bench", "wrangler")
        figures["render"] = render_times(dispatcher, token, job_ids[len(job_ids) // 2], args.jobs, args.samples)
        idle_before = cpu_of(dispatcher.proc.pid)
        time.sleep(args.window)
        idle = cpu_of(dispatcher.proc.pid) - idle_before
        used, polls, statuses = monitors(dispatcher, token, job_ids, args.monitors, args.window)
        figures["idleCpuCores"] = round(idle / args.window, 4)
        figures["monitorsCpuCores"] = round(used / args.window, 4)
        figures["monitorsExtraCpuCores"] = round((used - idle) / args.window, 4)
        figures["polls"] = polls
        figures["pollAnswers"] = statuses
        figures["cpuMsPerPoll"] = round((used - idle) / max(polls, 1) * 1000, 2)
        figures["chromium"] = chromium_load(dispatcher, token)
        figures["rssMB"] = round(sum(p.memory_info().rss for p in psutil.Process(dispatcher.proc.pid).children()) / 2**20)
    finally:
        try:
            dispatcher.kill()
        except ProcessLookupError:
            pass
        shutil.rmtree(work, ignore_errors=True)
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE `{database}`")
        server.close()
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
