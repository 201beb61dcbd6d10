"""The worker's HTTP API on a real worker process: JSON answers, JSON errors, logs as text."""
import json
import urllib.error
import urllib.request

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


# -- hostile input (issue 13): each found by the fuzz (test_fuzz_worker.py) or beside it ----------

def raw(worker, method, path, data=None, headers=()):
    """(status, headers, JSON body) of a request sent as given, with the dispatcher's secret."""
    request = urllib.request.Request(worker.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {worker.secret()}", "Content-Type": "application/json", **dict(headers)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/no/such/route", 404),
    ("DELETE", "/commands/not-a-number", 404),
    ("PUT", "/commands", 405),
])
def test_falcons_own_errors_are_json_with_a_description_whatever_the_client_accepts(worker, method, path, status):
    # Before: {"title": "404 Not Found"} (no description, against the document's Error), and
    # XML to a client that prefers it.
    code, headers, body = raw(worker, method, path, headers={"Accept": "application/xml"})
    assert code == status and headers["Content-Type"] == "application/json"
    assert body["title"] and path in body["description"]


@pytest.mark.parametrize("field, value", [
    ("id", 10**300), ("assignment", 2**63), ("taskId", 10**300), ("cores", 2**31), ("ramUse", 2**31),
    ("runner", 5), ("maxRunTime", "10"), ("maxRunTime", 10**400),
], ids=lambda value: str(value)[:12])
def test_an_assignment_value_the_worker_cannot_run_with_is_a_400_naming_it(worker, field, value):
    # Before: an id of 300 digits was a 500 (no file name is that long), a taskId one a run
    # whose watcher could not open its log; a runner or maxRunTime of the wrong type a run
    # whose watcher could not read its assignment.
    body = dict({"id": 41, "assignment": 1, "taskId": 1, "arguments": {"cmd": "true"}}, **{field: value})
    status, answer = worker.call("POST", "/commands/", body)
    assert status == 400 and field in answer["title"], answer
    assert worker.get("/commands/") == (200, {"commands": []})


def test_a_command_id_no_file_can_be_named_after_is_a_404_not_a_500(worker):
    # Before: the search for an ended command's log raised ENAMETOOLONG once a log directory
    # existed; a 404 now, as for any id outside the dispatcher's.
    (worker.data_dir / "log" / "commands" / "7").mkdir(parents=True, exist_ok=True)
    huge = "9" * 300
    for method, path in (("GET", f"/commands/{huge}/log"), ("DELETE", f"/commands/{huge}"),
                         ("GET", "/commands/0/log")):
        status, body = worker.call(method, path)
        assert status == 404 and body["description"], (method, body)


def test_a_pause_content_that_is_no_text_is_a_400_and_changes_nothing(worker):
    # Before: a lone surrogate (valid JSON, no UTF-8) failed writing the killfile: a 500.
    status, _, body = raw(worker, "POST", "/pause/", b'{"content": "\\ud800"}')
    assert status == 400 and "content" in body["title"]
    assert not (worker.data_dir / "killfile").exists()
    assert worker.get("/sysinfos/")[1]["paused"] is False
