"""pulistats costs: one sample on a 5,000-node, 1,000,000-command farm (time under the farm
lock, and the whole sample with its write to SQLite), and a 30-day report (history query +
every chart) from a database holding 30 days of samples at the production retention.

    python benchmarks/stats.py [--nodes 5000 --jobs 10000 --commands 100]
"""
import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from farmgen import make_farm  # noqa: E402

from puli.dispatcher.sampler import Sampler  # noqa: E402
from puli.dispatcher.service import Service  # noqa: E402
from puli.scheduler.dispatch import dispatch  # noqa: E402
from puli.stats import history, report  # noqa: E402
from puli.store import open_store  # noqa: E402
from puli.store.stats import StatsStore  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--commands", type=int, default=100)
    p.add_argument("--days", type=float, default=30.0)
    args = p.parse_args()
    t = time.perf_counter()
    farm = make_farm(nodes=args.nodes, jobs=args.jobs, commands_per_job=args.commands, pools=5)
    dispatch(farm, 0.0)
    gc.collect()
    gc.freeze()                 # as the dispatcher does after its restore
    print(f"farm: {len(farm.render_nodes)} nodes, {len(farm.commands)} commands, "
          f"{len(farm.root.children)} jobs, built in {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/puli.sqlite")
        service = Service(farm, store)
        source = StatsStore(store)
        sampler = Sampler(service, interval=60.0, source=source)
        locked, whole = [], []
        now = time.time()
        for i in range(20):
            t = time.perf_counter()
            sample = sampler.sample(now=now + i)
            whole.append(time.perf_counter() - t)
            locked.append(sampler.last_cost)
        print(f"sample: {len(sample)} series; under the farm lock median {statistics.median(locked) * 1000:.2f} ms, "
              f"max {max(locked) * 1000:.2f} ms (target < 20 ms); whole sample with its SQLite write "
              f"median {statistics.median(whole) * 1000:.2f} ms")
        # 30 days of history: raw for 2 days at 60 s, 5-minute rows before (as compaction leaves it).
        t = time.perf_counter()
        end = now
        rows = []
        for i in range(int(args.days * 86400 / 60)):
            rows.append(end - i * 60.0)
        with store._lock, store._db.transaction() as cur:
            import json
            data = json.dumps(sample, separators=(",", ":"))
            cur.executemany("INSERT INTO stats_samples (time, resolution, data) VALUES (%s, %s, %s)",
                            [(t_, 0, data) for t_ in rows])
        source.compact(end)
        count = len(source.samples(0, end + 1))
        print(f"history: {count} rows after downsampling {len(rows)} raw samples "
              f"({time.perf_counter() - t:.1f} s to write and compact)")
        t = time.perf_counter()
        hist = history.query(source, f"{args.days:g}d", "auto", now=end, summaries=True)
        queried = time.perf_counter() - t
        manifest = report.build(hist, os.path.join(tmp, "report"))
        total = time.perf_counter() - t
        print(f"report {args.days:g} days: {len(hist['times'])} points, {len(manifest['charts'])} charts; "
              f"query {queried:.2f} s, total {total:.2f} s (target < 10 s)")
        store.close()


if __name__ == "__main__":
    main()
