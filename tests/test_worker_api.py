"""The worker's HTTP API on a real worker process: JSON answers, JSON errors, logs as text."""
import pytest

from puli.model.status import CommandStatus as CS
from test_worker_support import farm, job, reaches, ready_worker, submit, the_command  # noqa: F401


@pytest.fixture
def worker(farm):
    return ready_worker(farm)


@pytest.mark.parametrize("body, word", [
    ({"assignment": 1}, "id"),
    ({"id": 1, "assignment": "1"}, "assignment"),
    ({"id": 1, "assignment": 1, "ramUse": -5}, "ramUse"),
    ({"id": 1, "assignment": 1, "arguments": ["x"]}, "arguments"),
])
def test_a_malformed_assignment_is_a_400_naming_the_field(worker, body, word):
    status, answer = worker.call("POST", "/commands/", body)
    assert status == 400 and word in answer["title"] + answer["description"]
    assert worker.get("/commands/") == (200, {"commands": []})


def test_errors_are_json(worker):
    assert worker.call("POST", "/commands/", None)[0] == 400
    status, body = worker.call("DELETE", "/commands/12345/")
    assert status == 404 and "12345" in body["description"]
    status, body = worker.get("/no/such/route")
    assert status == 404 and body["title"]
    status, body = worker.call("POST", "/pause/", {"content": ["-1"]})
    assert status == 400 and "content" in body["title"]


def test_a_second_post_of_the_same_assignment_starts_nothing_more(farm, worker, tmp_path):
    runs = tmp_path / "runs"
    job_id = submit(farm, job("once", f"echo run >> {runs}; sleep 3"))
    cmd_id = the_command(farm, job_id)
    assignment = reaches(farm, cmd_id, CS.RUNNING)["assignment"]
    status, body = worker.call("POST", "/commands/", {"id": cmd_id, "assignment": assignment, "taskId": 1})
    assert status == 202 and body["assignment"] == assignment
    status, body = worker.call("POST", "/commands/", {"id": cmd_id, "assignment": assignment + 1, "taskId": 1})
    assert status == 409 and "still runs" in body["description"]
    reaches(farm, cmd_id, CS.DONE)
    assert runs.read_text() == "run\n"


def test_system_information_worker_log_and_refresh(worker):
    status, info = worker.get("/sysinfos/")
    assert status == 200 and info["name"] == worker.name and info["registered"] is True
    assert info["cores"] >= 1 and info["systemFreeRam"] > 0 and info["isolation"]["mode"] == "pgroup"
    assert worker.call("POST", "/updatesysinfos/") == (202, {"updating": True})
    status, headers, text = worker.text("/log/")
    assert status == 200 and "registered with" in text and int(headers["X-Log-Size"]) >= len(text)
    assert worker.text("/log/?tail=1")[2].count("\n") == 1


@pytest.mark.parametrize("content, lines, expected", [
    (b"", 3, b""),
    (b"a\nb\nc\n", 0, b""),
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),
    (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
    (b"x" * 100_000 + b"\n" + b"y" * 70_000 + b"\n", 1, b"y" * 70_000 + b"\n"),
])
def test_tail_starts_where_the_last_lines_do(tmp_path, content, lines, expected):
    from puli.worker.api import _tail_start
    path = tmp_path / "log"
    path.write_bytes(content)
    with open(path, "rb") as stream:
        assert content[_tail_start(stream, len(content), lines):] == expected
