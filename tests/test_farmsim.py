"""puli-farmsim: simulated render nodes speaking the real worker protocol to a real dispatcher,
and the ledger that tells what ran twice or was lost."""
import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processes import Dispatcher, wait_for
from puli.farmsim.ledger import Ledger

FARMSIM = os.path.join(os.path.dirname(sys.executable), "puli-farmsim")


class Farmsim:
    def __init__(self, dispatcher, tmp_path, *args):
        token_file, query_file = tmp_path / "worker.token", tmp_path / "viewer.token"
        token_file.write_text(dispatcher.worker_token())
        query_file.write_text(dispatcher.create_token("monitor", "viewer"))
        self.output = tmp_path / "farmsim.json"
        self.log = open(tmp_path / "farmsim.log", "wb")
        self.proc = subprocess.Popen(
            [FARMSIM, "--dispatcher", dispatcher.url, "--token-file", str(token_file),
             "--query-token-file", str(query_file), "--output", str(self.output), "--seed", "7", *args],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def finish(self, timeout=60):
        """SIGTERM, as an operator ends a run: (exit status, the summary it wrote)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log.close()
        return code, json.loads(self.output.read_text())

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture
def dispatcher(tmp_path):
    d = Dispatcher(tmp_path / "dispatcher", extra=("--set", "rn_timeout=4s"))
    d.start()
    yield d
    d.kill()


@pytest.fixture
def farms():
    started = []
    yield started
    for farm in started:
        farm.close()


def submit(dispatcher, name, frames, pool, cmd="render %%MI_FRAME%%", max_attempt=1):
    task = {"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1, "maxAttempt": max_attempt,
            "arguments": {"cmd": cmd, "start": 1, "end": frames}}
    status, body = dispatcher.call("POST", "/graphs/", {"name": name, "root": 0, "user": "ann",
                                                        "poolName": pool, "tasks": [task]})
    assert status == 201, body
    return body["id"]


def job_status(dispatcher, job_id):
    status, body = dispatcher.get(f"/nodes/{job_id}")
    assert status == 200, body
    return body["statusName"] if "statusName" in body else body["status"]


def commands(dispatcher, job_id):
    status, body = dispatcher.get(f"/tasks/{job_id}/commands")
    assert status == 200, body
    return body["commands"]


def stops_accepted(dispatcher):
    """Stop orders the dispatcher's senders have had accepted, from its /metrics."""
    request = urllib.request.Request(f"{dispatcher.url}/metrics", headers={"Authorization": f"Bearer {dispatcher.token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "puli_deliveries_total" and sample.labels == {"kind": "stop", "outcome": "accepted"})


def test_a_small_simulated_farm_runs_a_real_job_to_done_each_frame_once(dispatcher, tmp_path, farms):
    farm = Farmsim(dispatcher, tmp_path, "--nodes", "6", "--cores", "2", "--pools", "sim",
                   "--durations", "uniform:0.1-0.4", "--heartbeat-interval", "1")
    farms.append(farm)
    wait_for(lambda: len([rn for rn in dispatcher.get("/rendernodes/")[1]["rendernodes"]
                          if rn["name"].startswith("sim")]) == 6, what="six simulated nodes registered")
    job_id = submit(dispatcher, "simulated", 60, "sim")
    wait_for(lambda: job_status(dispatcher, job_id) == "DONE", timeout=60, what="the job DONE")
    ran = commands(dispatcher, job_id)
    assert {c["statusName"] for c in ran} == {"DONE"}
    assert all(c["renderNode"].startswith("sim") for c in ran)
    assert {c["attempt"] for c in ran} == {1}

    code, summary = farm.finish()
    assert code == 0, summary["ledger"]
    ledger = summary["ledger"]
    assert ledger["ranTwice"] == {} and ledger["lost"] == {}
    assert ledger["done"] == ledger["runs"] == 60
    assert summary["received"]["POST /commands/"] == {"202": 60}
    assert summary["heartbeats"] > 0
    assert summary["idleGap"]["count"] > 0


def test_failures_and_node_deaths_end_in_retries_not_in_double_runs(dispatcher, tmp_path, farms):
    farm = Farmsim(dispatcher, tmp_path, "--nodes", "8", "--pools", "sim", "--durations", "fixed:0.3",
                   "--fail-fraction", "0.2", "--die-every", "1", "--down-for", "1", "--heartbeat-interval", "1")
    farms.append(farm)
    job_id = submit(dispatcher, "faulty", 40, "sim", max_attempt=20)
    wait_for(lambda: job_status(dispatcher, job_id) == "DONE", timeout=120, what="the job DONE despite the faults")
    code, summary = farm.finish()
    ledger = summary["ledger"]
    assert code == 0, ledger
    assert summary["deaths"] > 0
    assert ledger["done"] == 40 < ledger["runs"]            # failed and abandoned runs were run again
    assert summary["registrations"] > 8                     # the dead came back and registered again


def test_a_canceled_job_stops_its_simulated_runs(dispatcher, tmp_path, farms):
    farm = Farmsim(dispatcher, tmp_path, "--nodes", "3", "--pools", "sim", "--heartbeat-interval", "1")
    farms.append(farm)
    job_id = submit(dispatcher, "long", 3, "sim", cmd="sleep 600")
    wait_for(lambda: {c["statusName"] for c in commands(dispatcher, job_id)} == {"RUNNING"},
             what="the three commands RUNNING on simulated nodes")
    assert dispatcher.call("PUT", f"/nodes/{job_id}/cancel")[0] == 200
    wait_for(lambda: all(n["commands"] == [] for n in dispatcher.get("/rendernodes/")[1]["rendernodes"]
                         if n["name"].startswith("sim")), what="the nodes free again")
    # Freed in the dispatcher's model at once; the stop orders reach the nodes from its senders.
    wait_for(lambda: stops_accepted(dispatcher) >= 3, what="the three stop orders taken by the nodes")
    code, summary = farm.finish()
    assert code == 0, summary["ledger"]
    assert summary["received"]["DELETE /commands/<id>/"] == {"202": 3}
    assert summary["ledger"]["done"] == 0


def test_bad_options_are_refused_with_a_message():
    out = subprocess.run([FARMSIM, "--durations", "normal:3"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "not a duration distribution" in out.stderr
    out = subprocess.run([FARMSIM, "--fail-fraction", "2"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "not a fraction" in out.stderr


# -- the ledger ------------------------------------------------------------------------------------
def test_the_ledger_finds_a_command_done_twice_and_two_runs_at_once():
    ledger = Ledger()
    first = ledger.start(1, 10, "sim00000", 0.0)
    ledger.end(first, "DONE", 1.0)
    again = ledger.start(1, 11, "sim00001", 2.0)
    ledger.end(again, "DONE", 3.0)
    overlapping = ledger.start(2, 20, "sim00000", 0.0)
    ledger.start(2, 21, "sim00001", 0.5)        # before the first ended
    ledger.end(overlapping, "ERROR", 1.0)
    retried = ledger.start(3, 30, "sim00000", 0.0)
    ledger.end(retried, "ERROR", 1.0)
    ledger.end(ledger.start(3, 31, "sim00000", 1.5), "DONE", 2.0)   # a retry is no double run

    twice = ledger.ran_twice()
    assert set(twice) == {1, 2}
    assert "2 runs ended DONE" in twice[1] and "two runs at once" in twice[2]


def test_the_ledger_finds_a_committed_end_handed_out_again_and_an_end_the_dispatcher_forgot():
    ledger = Ledger()
    done = ledger.start(1, 10, "sim00000", 0.0)
    ledger.end(done, "DONE", 1.0)
    ledger.commit(done)
    ledger.start(1, 11, "sim00001", 5.0)                    # the dispatcher forgot it was DONE
    kept = ledger.start(2, 20, "sim00000", 0.0)
    ledger.end(kept, "DONE", 1.0)
    ledger.commit(kept)
    taken = ledger.start(3, 30, "sim00000", 0.0)
    ledger.end(taken, "DONE", 1.0)
    ledger.take(taken)                                      # taken, not committed yet
    ledger.start(4, 40, "sim00000", 0.0)                    # still under way at the end
    unsent = ledger.start(6, 60, "sim00000", 0.0)
    ledger.end(unsent, "DONE", 1.0)                         # its end never reached the dispatcher

    assert set(ledger.lost()) == {1}
    lost = ledger.lost({1: "RUNNING", 2: "DONE", 3: "READY", 4: "RUNNING", 5: "READY", 6: "RUNNING"})
    assert set(lost) == {1, 3}                              # 5, never run, is only queued
    assert "handed it out again" in lost[1]
    assert lost[3] == "its DONE was taken, and the dispatcher now says READY"
    assert ledger.summary({2: "READY"})["lost"]["2"] == "its DONE was committed, and the dispatcher now says READY"
