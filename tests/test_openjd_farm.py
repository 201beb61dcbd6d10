"""OpenJD jobs end to end: templates from tests/fixtures/openjd submitted to a real dispatcher
(puliexec --openjd, puli.client.submit_openjd) and run by two real workers — one with the
`blender` soft, one without — each to DONE with every frame run exactly once."""
import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from processes import ROOT, Dispatcher, wait_for
from puli.client import submit_openjd
from puli.client.errors import GraphSubmissionError
from test_client_support import commands, finished, node
from test_worker_support import WorkerProcess, registered, sweep

FIXTURES = Path(__file__).parent / "fixtures" / "openjd"
DONE = 3


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    base = tmp_path_factory.mktemp("openjd")
    dispatcher = Dispatcher(base / "dispatcher", extra=("--set", "retry_delay=0.5"))
    workers = []
    sessions = base / "sessions"            # the workers' TMPDIR: where OpenJD sessions live
    sessions.mkdir()
    try:
        dispatcher.start()
        for softs in ("[blender]", "[]"):
            worker = WorkerProcess(dispatcher.url, base / f"worker{len(workers)}", extra=("--set", f"softs={softs}"),
                                   token=dispatcher.worker_token(), env={"TMPDIR": str(sessions)})
            workers.append(worker.start())
            wait_for(lambda w=worker: registered(dispatcher, w.name), what="the worker's registration")
        dispatcher.workers = workers
        dispatcher.sessions = sessions
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PULI_TOKEN", dispatcher.token)
            yield dispatcher
    finally:
        for worker in workers:
            worker.close()
            sweep(worker.data_dir)
        dispatcher.close()


def submit(farm, name, **parameters):
    _, body = submit_openjd(FIXTURES / name, parameters, host=farm.url)
    return body


def done(farm, job_id):
    job = finished(farm, job_id, timeout=90)
    assert job["status"] == DONE, (job, [(c["description"], c["message"]) for c in commands(farm, job_id)])
    return job


def lines(path):
    return path.read_text().splitlines()


def job_count(farm):
    status, body = farm.get("/nodes/1/children?limit=1")
    assert status == 200, body
    return body["total"]


def assert_no_session_left(farm):
    assert wait_for(lambda: not any(farm.sessions.iterdir()), timeout=10, what="the sessions' cleanup")


def test_puliexec_runs_a_chunked_frame_range_each_frame_once(farm, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PULI_SERVER"}
    result = subprocess.run([sys.executable, "-m", "puli.cli.puliexec", "--server", farm.url, "--openjd",
                             str(FIXTURES / "chunked.yaml"), "-p", "Frames=1-10", "-p", f"Out={tmp_path}", "--wait"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("job ") and "'Chunked render', 3 command(s)" in first
    assert result.stdout.splitlines()[-1].endswith("ended DONE: 3/3 command(s) done")
    assert sorted(map(int, lines(tmp_path / "frames.txt"))) == list(range(1, 11))
    job_id = int(first.split()[1])
    assert sorted(c["description"] for c in commands(farm, job_id)) == [
        "Render[Frame=1-4]", "Render[Frame=5-7]", "Render[Frame=8-10]"]
    # The job keeps its OpenJD name and parameter values; puliquery shows them.
    assert node(farm, job_id)["tags"]["openjdParameters"] == {"Frames": "1-10", "Out": str(tmp_path), "ChunkSize": "4"}
    shown = subprocess.run([sys.executable, "-m", "puli.cli.puliquery", "--server", farm.url, "job", str(job_id)],
                           capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert f"OpenJD Chunked render  parameters Frames=1-10  Out={tmp_path}  ChunkSize=4" in shown.stdout
    assert_no_session_left(farm)


def test_adaptive_chunks_grow_to_the_target_runtime_and_run_each_frame_once(farm, tmp_path):
    job = submit(farm, "adaptive.yaml", Frames="1-24", Out=str(tmp_path))
    assert job["commands"] == 24                    # one frame a chunk, to begin with
    done(farm, job["id"])
    runs = [line.split() for line in lines(tmp_path / "frames.txt")]
    assert sorted(int(frame) for frame, _ in runs) == list(range(1, 25))
    ran = [c for c in commands(farm, job["id"]) if c["nbFrames"]]
    sizes = [c["nbFrames"] for c in sorted(ran, key=lambda c: c["startTime"])]
    # Chunks of one frame first; once some ended, the frames not yet dispatched were cut into
    # bigger chunks (one frame takes far less than the 8 s target).
    print("adaptive chunk sizes, in dispatch order:", sizes)
    assert sizes[0] == 1 and max(sizes) > 1, sizes
    assert sum(sizes) == 24
    chunk_of = collections.Counter(chunk for _, chunk in runs)
    assert sorted(chunk_of.values()) == sorted(sizes)
    # What re-cutting left without frames ended at once, without running.
    assert all(c["startTime"] is None for c in commands(farm, job["id"]) if not c["nbFrames"])


def test_two_steps_wait_for_each_other_and_enter_the_step_environment(farm, tmp_path):
    job = submit(farm, "env-script.yaml", Out=str(tmp_path))
    done(farm, job["id"])
    runs = lines(tmp_path / "runs.txt")
    assert sorted(runs[:2]) == ["job prepare a", "job prepare b"]       # the job environment's variable
    renders = runs[2:]
    assert sorted(r.split()[2] for r in renders) == ["1", "2", "3", "4"]
    assert all(" in " + str(farm.sessions) in r for r in renders)        # each in its session's directory
    # The step environment, entered and exited around each of the step's commands (two nodes
    # run them at once, so the lines interleave).
    assert collections.Counter(lines(tmp_path / "env.txt")) == {"enter": 4, "exit": 4}
    prepare, render = job["nodes"][1:]
    assert node(farm, render)["dependencies"] == [[prepare, [3]]]
    assert max(c["endTime"] for c in commands(farm, prepare)) <= min(c["startTime"] for c in commands(farm, render))
    assert_no_session_left(farm)


def test_an_embedded_script_runs_from_the_session_and_reports_its_status(farm, tmp_path):
    job = submit(farm, "embedded.yaml", Out=str(tmp_path), Greeting="bonjour")
    done(farm, job["id"])
    runs = sorted(lines(tmp_path / "frames.txt"))
    assert [r.split()[:2] for r in runs] == [["bonjour", "1"], ["bonjour", "2"], ["bonjour", "3"]]
    assert all(r.split()[-1].startswith(str(farm.sessions)) for r in runs)
    assert_no_session_left(farm)


def test_a_combination_space_runs_every_combination_once(farm, tmp_path):
    job = submit(farm, "combination.yaml", Out=str(tmp_path))
    done(farm, job["id"])
    assert sorted(lines(tmp_path / "frames.txt")) == sorted(
        f"{f} {layer} {p}" for f in (1, 2, 3) for layer, p in (("fg", "beauty"), ("bg", "shadow")))


def test_host_requirements_keep_the_job_on_the_nodes_that_meet_them(farm, tmp_path):
    job = submit(farm, "hosts.yaml", Out=str(tmp_path))
    done(farm, job["id"])
    assert sorted(map(int, lines(tmp_path / "frames.txt"))) == [1, 2, 3, 4]
    blender = farm.workers[0].name
    assert {c["renderNode"] for c in commands(farm, job["id"])} == {blender}


def test_invalid_templates_and_values_are_refused_with_the_librarys_message(farm, tmp_path):
    jobs_before = job_count(farm)
    with pytest.raises(GraphSubmissionError) as caught:
        submit(farm, "embedded.yaml", Out=str(tmp_path), Greeting="salut")
    assert caught.value.status == 400 and "Greeting" in caught.value.description
    template = (FIXTURES / "embedded.yaml").read_text().replace("{{Task.Param.N}}\"", "{{Task.Param.M}}\"")
    with pytest.raises(GraphSubmissionError) as caught:
        submit_openjd(template, {"Out": str(tmp_path)}, host=farm.url)
    assert caught.value.status == 400 and "Task.Param.M" in caught.value.description
    assert not (tmp_path / "frames.txt").exists()
    assert job_count(farm) == jobs_before
