"""Assignment latency: how long a ready command waits before its worker is handed it (not a test).

    .venv/bin/python benchmarks/assignment_latency.py [--db sqlite|mysql] [--jobs 50]

A real puli-dispatcher (gunicorn) on the chosen database and a stand-in worker on loopback; one
one-command job is submitted at a time, and the time from the submission's 201 to the worker
receiving the assignment is measured. Assignments are committed before they go out, so this is
a dispatch pass plus one transaction. Prints one JSON object: p50, p90, max in milliseconds.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")]

from processes import MARIADB, Dispatcher, StandInWorker, mariadb_database_url, wait_for  # noqa: E402

MYSQL = mariadb_database_url("puli_bench_latency")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="puli-latency-")
    url = MYSQL if args.db == "mysql" else None
    dispatcher = Dispatcher(os.path.join(tmp, "d"), db_url=url, extra=["--clean", "--set", "flush_interval=1"])
    worker = StandInWorker()
    received = {}
    arrived = threading.Condition()

    class Recorder(list):
        """The stand-in worker's list of assignments, noting when each arrives."""
        def append(self, body):
            with arrived:
                received[body["id"]] = time.perf_counter()
                super().append(body)
                arrived.notify_all()
    worker.assignments = Recorder()
    try:
        dispatcher.start()
        worker.register(dispatcher, cores=1)
        latencies = []
        for n in range(args.jobs):
            status, body = dispatcher.call("POST", "/graphs/", {"name": f"j{n}", "root": 0, "tasks": [
                {"type": "Task", "name": "t", "arguments": {"cmd": "true"}}]})
            submitted = time.perf_counter()
            assert status == 201, body
            job = body["id"]
            command = wait_for(lambda job=job: dispatcher.get(f"/tasks/{job}/commands")[1]["commands"],
                               what="the command")[0]["id"]
            with arrived:
                arrived.wait_for(lambda command=command: command in received, timeout=30)
            latencies.append((received[command] - submitted) * 1000)
            # Free the only core for the next job: the command ends at once.
            assignment = next(a for a in worker.assignments if a["id"] == command)["assignment"]
            dispatcher.call("PUT", f"/rendernodes/{worker.name}/commands/{command}",
                            {"assignment": assignment, "status": 5})
        latencies.sort()
        print(json.dumps({"db": args.db, "jobs": args.jobs,
                          "submit_to_assignment_ms": {"p50": round(latencies[len(latencies) // 2], 1),
                                                      "p90": round(latencies[int(len(latencies) * 0.9)], 1),
                                                      "max": round(latencies[-1], 1)}}))
    finally:
        worker.close()
        dispatcher.close()
        if url:
            import MySQLdb
            server = MySQLdb.connect(**MARIADB)
            server.cursor().execute("DROP DATABASE IF EXISTS puli_bench_latency")
            server.close()


if __name__ == "__main__":
    main()
