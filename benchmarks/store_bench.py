"""Store benchmark: restore time and memory per command, write-behind and submission speed.

Builds a synthetic farm (render nodes in pools, jobs of 4 tasks, commands mostly DONE, some
RUNNING on render nodes, the rest READY), saves it through Store.insert_job and Store.write,
then measures, and prints one JSON object:

  restore_seconds           Store.load of the whole farm into a fresh Farm (fresh process)
  restore_rss_per_command   RSS growth of that process per command, after gc.collect()
  write_10k_seconds         Store.write of 10,000 changed commands (snapshot timed apart)
  insert_job_10k_seconds    Store.insert_job of one new 10,000-command job

Usage: store_bench.py [--commands 1000000] [--db sqlite|mysql] [--render-nodes 5000]
MariaDB: a database puli_bench_<random> on 127.0.0.1:3306 (root), dropped at the end.
"""
import argparse
import gc
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from puli.model import worker_protocol  # noqa: E402
from puli.model.farm import Farm  # noqa: E402
from puli.model.jobs import new_command  # noqa: E402
from puli.model.jobs import Task, TaskGroup  # noqa: E402
from puli.model.status import CommandStatus as CS  # noqa: E402
from puli.store import open_store  # noqa: E402

TASKS_PER_JOB = 4
POOLS = 5
NOW = 1_700_000_000.0


def build_job(farm, index, commands, pool, rns, rng, done_ratio):
    """A job (TaskGroup + tasks) with `commands` commands, most of them already DONE."""
    tasks = min(TASKS_PER_JOB, commands) or 1
    first_node, first_cmd = farm.allocate_ids(1 + tasks, commands)
    job = TaskGroup(first_node, f"shot{index:05d}_comp", parent=farm.root, user=f"user{index % 50}",
                    priority=index % 10, dispatch_key=float(index % 3), creation_time=NOW - 86400,
                    tags={"prod": f"prod{index % 7}", "shot": f"sh{index:05d}"})
    cid = first_cmd
    per_task = commands // tasks
    for t in range(tasks):
        n = per_task if t < tasks - 1 else commands - per_task * (tasks - 1)
        task = Task(first_node + 1 + t, f"layer{t}", parent=job, user=job.user, min_cores=2,
                    max_cores=2, ram_use=4000, runner="puli.commandwatcher.runners.DefaultCommandRunner",
                    arguments={"cmd": "render -s %%MI_START%% -e %%MI_END%% scene.ma", "layer": f"layer{t}"},
                    creation_time=NOW - 86400)
        job.children.append(task)
        for frame in range(1, n + 1):
            args = f'{{"cmd":"render -s %%MI_START%% -e %%MI_END%% scene.ma","layer":"layer{t}","start":{frame},"end":{frame}}}'
            cmd = new_command(cid, task, f"layer{t}_{frame}_{frame}", args, 1)
            cid += 1
            if rng.random() < done_ratio:
                rn = rns[rng.randrange(len(rns))]
                start = NOW - rng.uniform(3600, 80000)
                cmd.status = CS.DONE
                cmd.completion = 1.0
                cmd.attempt = 1
                cmd.start_time = start
                cmd.end_time = cmd.update_time = start + rng.uniform(60, 3000)
                cmd.render_node = rn
                cmd.assignment = farm.next_assignment
                farm.next_assignment += 1
                cmd.cores = 2
                cmd.ram = 4000
    job.share = farm.new_share(farm.get_pool(pool), job, register=False)
    return job


def populate(store, args, rng):
    farm = Farm()
    rns = []
    for i in range(args.render_nodes):
        name = f"rn{i:05d}:8000"
        worker_protocol.register(farm, name, {"cores": 8, "ram": 32000, "speed": 3.0,
                                      "caracteristics": {"os": "linux", "softs": ["maya", "nuke"]},
                                      "pools": [f"pool{i % POOLS}"]}, [], NOW)
        rns.append(farm.render_nodes[name])
    jobs = max(1, args.commands // args.per_job)
    started = time.perf_counter()
    for j in range(jobs):
        n = args.per_job if j < jobs - 1 else args.commands - args.per_job * (jobs - 1)
        job = build_job(farm, j, n, f"pool{j % POOLS}", rns, rng, 0.9)
        store.insert_job(job)
        farm.publish(job, NOW)
    insert_seconds = time.perf_counter() - started
    # Some work in flight: two 2-core commands per render node, RUNNING.
    ready = [c for c in farm.commands.values() if c.status == CS.READY]
    rng.shuffle(ready)
    for rn, pair in zip(rns, zip(ready[0::2], ready[1::2])):
        for cmd in pair:
            farm.assign(cmd, rn, 2, NOW)
            farm.set_status(cmd, CS.RUNNING, NOW)
    farm.take_outbox()
    started = time.perf_counter()
    store.write(store.snapshot(farm, farm.take_dirty()))
    first_flush = time.perf_counter() - started
    return farm, insert_seconds, first_flush


def measure_write(store, farm, rng):
    """10,000 commands change (progress, finishes, messages), then one flush."""
    cmds = rng.sample(list(farm.commands.values()), 10_000)
    now = NOW + 10
    for i, cmd in enumerate(cmds):
        if cmd.status == CS.RUNNING and i % 2:
            farm.finish(cmd, CS.DONE, now)
        else:
            farm.set_completion(cmd, round(rng.random(), 3))
            cmd.message = f"frame progress {i}"
            cmd.update_time = now
            farm.dirty.commands.add(cmd)
    started = time.perf_counter()
    rows = store.snapshot(farm, farm.take_dirty())
    snap = time.perf_counter() - started
    started = time.perf_counter()
    store.write(rows)
    return snap, time.perf_counter() - started, len(rows.commands)


def measure_insert(store, farm, rng):
    job = TaskGroup(0, "big", parent=farm.root)
    first_node, first_cmd = farm.allocate_ids(101, 10_000)
    job.id = first_node
    cid = first_cmd
    for t in range(100):
        task = Task(first_node + 1 + t, f"t{t}", parent=job, min_cores=1)
        job.children.append(task)
        for frame in range(100):
            new_command(cid, task, f"t{t}_{frame}_{frame}",
                        f'{{"cmd":"render scene.ma","start":{frame},"end":{frame}}}', 1)
            cid += 1
    job.share = farm.new_share(farm.get_pool("default"), job, register=False)
    started = time.perf_counter()
    store.insert_job(job)
    return time.perf_counter() - started


def restore_child(url):
    """In a fresh process: RSS growth and time of one restore."""
    import psutil
    from puli.model.farm import Farm as FreshFarm
    store = open_store(url)
    farm = FreshFarm()
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    store.load(farm, time.time())
    seconds = time.perf_counter() - started
    gc.collect()
    after = process.memory_info().rss
    store.close()
    n = len(farm.commands)
    print(json.dumps({"commands": n, "jobs": len(farm.root.children), "render_nodes": len(farm.render_nodes),
                      "seconds": round(seconds, 2), "rss_bytes": after - before,
                      "rss_per_command": round((after - before) / max(n, 1), 1),
                      "running": farm.root.active_count}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--per-job", type=int, default=100)
    parser.add_argument("--render-nodes", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--mysql-server", default="root@127.0.0.1:3306",
                        help="user[:password]@host[:port] of the MariaDB server (--db mysql)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restore-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_child:
        restore_child(args.restore_child)
        return

    rng = random.Random(args.seed)
    tmp = None
    if args.db == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="puli_bench_")
        url = f"sqlite://{tmp.name}/puli.sqlite"
    else:
        url = f"mysql://{args.mysql_server}/puli_bench_{secrets.token_hex(4)}"
    store = open_store(url, clean=True)
    try:
        farm, insert_seconds, first_flush = populate(store, args, rng)
        snap, write, written = measure_write(store, farm, rng)
        insert_10k = measure_insert(store, farm, rng)
        counts = {s.name: farm.root.counts[s] for s in CS if farm.root.counts[s]}
        del farm
        gc.collect()
        child = subprocess.run([sys.executable, __file__, "--restore-child", url],
                               check=True, capture_output=True, text=True)
        restored = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps({
            "db": args.db, "commands": args.commands, "render_nodes": args.render_nodes,
            "statuses": counts,
            "populate_insert_job_seconds": round(insert_seconds, 1),
            "first_flush_seconds": round(first_flush, 2),
            "restore_seconds": restored["seconds"],
            "restore_rss_bytes": restored["rss_bytes"],
            "restore_rss_per_command": restored["rss_per_command"],
            "restored": {k: restored[k] for k in ("commands", "jobs", "render_nodes", "running")},
            "write_10k_snapshot_seconds": round(snap, 3),
            "write_10k_seconds": round(write, 3), "write_rows": written,
            "insert_job_10k_seconds": round(insert_10k, 3),
        }, indent=2))
    finally:
        store.close()
        if args.db == "mysql":
            import MySQLdb
            from puli.store.connection import DbUrl
            parsed = DbUrl(url)
            server = MySQLdb.connect(host=parsed.host, port=parsed.port, user=parsed.user,
                                     password=parsed.password)
            server.cursor().execute(f"DROP DATABASE IF EXISTS `{parsed.database}`")
            server.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
