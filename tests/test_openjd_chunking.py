"""Adaptive OpenJD chunks at the model level: the never-dispatched chunks of a task are cut
again from the seconds per frame measured on its finished chunks; every frame once."""
import pytest

from farmkit import add_rn, make_farm, report, run_pass, submit
from puli.model.build import build_job
from puli.model.farm import Farm
from puli.model.graph import parse_graph
from puli.model.chunking import chunk_text, cut, frames_of
from puli.model.status import CommandStatus as CS
from puli.store import open_store


def chunk_task(frames, size, target=10, contiguous=True):
    commands = [{"description": f"r{c[0]}", "nbFrames": len(c),
                 "arguments": {"openjdTask": {"Frame": {"type": "CHUNK[INT]", "value": chunk_text(c)}}}}
                for c in cut(frames, size, contiguous)]
    return {"type": "Task", "name": "Render", "commands": commands, "minNbCores": 1, "maxNbCores": 1,
            "arguments": {"openjdChunks": {"parameter": "Frame", "targetRuntimeSeconds": target,
                                           "contiguous": contiguous}}}


def frames_by_command(task):
    return {c.id: frames_of(c.arguments["openjdTask"]["Frame"]["value"]) for c in task.commands if c.nb_frames}


def test_chunk_values_round_trip():
    assert frames_of("1-3,7,9-10") == [1, 2, 3, 7, 9, 10]
    assert chunk_text([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert cut([1, 2, 3, 7, 8], 2, True) == [[1, 2], [3], [7, 8]]
    assert cut([1, 2, 3, 7, 8], 2, False) == [[1, 2], [3, 7], [8]]
    assert frames_of("-3--1") == [-3, -2, -1]


def test_fast_frames_make_the_pending_chunks_bigger_and_leave_dispatched_ones_alone():
    farm = make_farm()
    add_rn(farm, "a", cores=1)
    job = submit(farm, chunk_task(list(range(1, 41)), 2, target=10))
    task = next(job.tasks())
    (_, first), = run_pass(farm, now=0.0)
    report(farm, first, CS.RUNNING, now=0.0)
    report(farm, first, CS.DONE, now=2.0)          # 1 s per frame: chunks of 10
    assert first.arguments["openjdTask"]["Frame"]["value"] == "1-2"
    sizes = [c.nb_frames for c in task.commands if c.status == CS.READY]
    assert sizes == [10, 10, 10, 8]
    # The commands left without frames are over, and counted so.
    empties = [c for c in task.commands if c.nb_frames == 0]
    assert empties and all(c.status == CS.DONE for c in empties)
    frames = sorted(f for fs in frames_by_command(task).values() for f in fs)
    assert frames == list(range(1, 41))


def test_slow_frames_make_smaller_chunks_with_new_commands_and_a_running_chunk_keeps_its_frames():
    farm = make_farm()
    add_rn(farm, "a", cores=2)
    job = submit(farm, chunk_task(list(range(1, 13)), 4, target=2))
    task = next(job.tasks())
    running = run_pass(farm, now=0.0)
    assert len(running) == 2
    (_, a), (_, b) = running
    for cmd in (a, b):
        report(farm, cmd, CS.RUNNING, now=0.0)
    report(farm, a, CS.DONE, now=4.0)              # 1 s per frame: chunks of 2
    assert b.arguments["openjdTask"]["Frame"]["value"] == "5-8" and b.nb_frames == 4
    ready = [c for c in task.commands if c.status == CS.READY]
    assert [c.nb_frames for c in ready] == [2, 2]
    assert len(task.commands) == 4 and farm.commands[task.commands[-1].id] is task.commands[-1]
    assert task.counts[CS.READY] == 2 and job.counts[CS.READY] == 2
    assert sorted(f for fs in frames_by_command(task).values() for f in fs) == list(range(1, 13))
    # The new command is dispatched and the job ends DONE with every frame once.
    now = 5.0
    while job.status != 3:
        for _, cmd in run_pass(farm, now):
            report(farm, cmd, CS.RUNNING, now=now)
            report(farm, cmd, CS.DONE, now=now + 1)
        if b.status == CS.RUNNING:
            report(farm, b, CS.DONE, now=now)
        now += 2
        assert now < 100
    assert sorted(f for fs in frames_by_command(task).values() for f in fs) == list(range(1, 13))
    assert farm.dirty.commands >= set(task.commands)


def test_a_task_without_a_target_runtime_keeps_its_chunks():
    farm = make_farm()
    add_rn(farm, "a", cores=1)
    spec = chunk_task(list(range(1, 9)), 2)
    del spec["arguments"]["openjdChunks"]
    job = submit(farm, spec)
    (_, first), = run_pass(farm)
    report(farm, first, CS.RUNNING, now=0.0)
    report(farm, first, CS.DONE, now=100.0)
    assert [c.nb_frames for c in next(job.tasks()).commands] == [2, 2, 2, 2]


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/data/puli.sqlite"
    return request.getfixturevalue("mariadb_url")


def test_re_cut_chunks_and_the_openjd_tags_survive_a_restart(db_url):
    store = open_store(db_url, clean=True)
    try:
        farm = make_farm()
        add_rn(farm, "a", cores=1)
        body = {"root": 0, "tasks": [{"type": "TaskGroup", "name": "job", "tasks": [1],
                                      "tags": {"openjdName": "job", "openjdParameters": {"Frames": "1-12"}}},
                                     chunk_task(list(range(1, 13)), 2, target=4)]}
        job = build_job(farm, parse_graph(body), 0.0)
        store.insert_job(job)
        farm.publish(job, 0.0)
        (_, first), = run_pass(farm)
        report(farm, first, CS.RUNNING, now=0.0)
        report(farm, first, CS.DONE, now=2.0)       # 1 s per frame: chunks of 4
        before = {c.id: (c.description, c.nb_frames, c.args_json, int(c.status)) for c in farm.commands.values()}
        store.write(store.snapshot(farm, farm.take_dirty()))
    finally:
        store.close()
    restored, store = Farm(), open_store(db_url)
    try:
        store.load(restored, 10.0)
        assert {c.id: (c.description, c.nb_frames, c.args_json, int(c.status))
                for c in restored.commands.values()} == before
        assert restored.nodes[job.id].tags["openjdParameters"] == {"Frames": "1-12"}
    finally:
        store.close()


def test_a_measure_close_to_the_current_size_does_not_re_cut():
    farm = make_farm()
    add_rn(farm, "a", cores=1)
    spec = chunk_task(list(range(1, 41)), 10, target=10)
    spec["arguments"]["openjdChunks"]["defaultTaskCount"] = 10
    job = submit(farm, spec)
    task = next(job.tasks())
    (_, first), = run_pass(farm)
    report(farm, first, CS.RUNNING, now=0.0)
    report(farm, first, CS.DONE, now=11.0)          # 1.1 s per frame: 9 a chunk, within 20 % of 10
    assert [c.nb_frames for c in task.commands] == [10, 10, 10, 10] and task.chunk_size is None


def test_frames_are_counted_without_listing_them():
    from puli.model.chunking import count_frames
    assert count_frames("1-10") == 10 and count_frames("-5--1,3,7-8") == 8
    assert count_frames("1-1000000000") == 1_000_000_000
