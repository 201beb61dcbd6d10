import json

import pytest

from puli.dispatcher.settings import load_settings
from test_api_support import Api, assert_error, graph, task


@pytest.fixture
def api():
    return Api()


def test_submission_creates_the_job_and_names_it_in_location(api):
    body = graph(task("render", frames=(1, 10)), task("comp", frames=(1, 10), dependencies=[[1, [3]]]),
                 name="shot010", user="bob")
    result = api.post("/graphs/", body)
    assert result.status_code == 201
    created = result.json
    assert created["name"] == "shot010"
    assert created["commands"] == 20
    assert result.headers["location"] == f"/nodes/{created['id']}"
    assert len(created["nodes"]) == 3 and created["nodes"][0] == created["id"]
    assert api.job_ids() == [created["id"]]
    job = api.node(created["id"])
    assert job["type"] == "TaskGroup" and job["user"] == "bob" and job["commandCount"] == 20
    assert job["poolName"] == "default"
    comp = api.node(created["nodes"][2])
    assert comp["dependencies"] == [[created["nodes"][1], [3]]]
    assert comp["statusName"] == "BLOCKED"


def test_submission_works_without_trailing_slash(api):
    assert api.post("/graphs", graph(task("t"))).status_code == 201


@pytest.mark.parametrize("body, words", [
    ({"tasks": []}, ["tasks"]),
    ({"root": 0, "tasks": [{"type": "Task"}]}, ["name"]),
    ({"root": 0, "tasks": [{"type": "Task", "name": "t", "arguments": {"start": 5, "end": 1}}]}, ["end"]),
    ({"root": 0, "tasks": [{"type": "TaskGroup", "name": "g", "tasks": [1]},
                           {"type": "Task", "name": "a"}, {"type": "Bogus", "name": "b"}]}, ["type"]),
    ({"root": 0, "tasks": [{"type": "Task", "name": "t", "dependencies": [[{"nodeId": 999}, [3]]]}]},
     ["999"]),
    ({"root": 0, "tasks": [{"type": "Task", "name": "t", "maxRunTime": -5}]}, ["maxRunTime", ">= 0"]),
])
def test_malformed_graph_is_refused_whole_and_nothing_is_created(api, body, words):
    api.submit(task("existing"))
    before = api.node(1)
    assert_error(api.post("/graphs/", body), 400, *words)
    after = api.node(1)
    assert after["children"] == before["children"]
    assert after["commandCount"] == before["commandCount"]
    assert len(api.farm.commands) == before["commandCount"]


def test_dependency_cycle_is_refused_naming_the_cycle(api):
    body = graph(task("a", dependencies=[[2, [3]]]), task("b", dependencies=[[1, [3]]]))
    error = assert_error(api.post("/graphs/", body), 400, "cycle")
    assert "tasks[1]" in error["description"] and "tasks[2]" in error["description"]
    assert api.job_ids() == []


def test_oversized_body_is_refused_with_413_before_reading():
    api = Api(settings=load_settings(max_request_bytes=2048))
    big = graph(task("t", arguments={"blob": "x" * 4096}))
    assert_error(api.post("/graphs/", big), 413, "2048")
    assert api.job_ids() == []
    assert api.post("/graphs/", graph(task("small"))).status_code == 201


def test_body_that_is_not_json_is_a_400(api):
    result = api.client.simulate_post("/graphs/", body="{not json", headers={"Content-Type": "application/json"})
    assert_error(result, 400, "json")


@pytest.mark.parametrize("raw", ["[1, 2]", "\"text\"", "42"])
def test_body_that_is_not_an_object_is_a_400(api, raw):
    result = api.client.simulate_post("/graphs/", body=raw, headers={"Content-Type": "application/json"})
    assert_error(result, 400, "object")


def test_empty_submission_body_is_a_400(api):
    assert_error(api.client.simulate_post("/graphs/"), 400, "body")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_not_labelled_json_is_refused_and_creates_nothing(api, content_type):
    # What a web page can make a browser send anywhere: a form, or text/plain.
    headers = {"Content-Type": content_type} if content_type else {}
    result = api.client.simulate_post("/graphs/", body=json.dumps(graph(task("t"))), headers=headers)
    assert_error(result, 415, "application/json")
    assert api.job_ids() == []


def test_graph_max_rn_caps_the_job(api):
    job = api.submit(task("t", frames=(1, 10), maxNbCores=1), maxRN=2)
    api.register("a:8000", cores=8)
    assert len(api.dispatch()) == 2
    assert api.node(job)["maxRN"] == 2
