"""OpenJD templates into Puli graphs (puli.openjd) and POST /openjd/jobs in process: the
expansion is openjd-model's, a refusal carries its message and creates nothing."""
import json
from pathlib import Path

import pytest
import yaml

from puli.openjd.document import check_body, load_yaml, parse_body
from puli.openjd.errors import OpenJDError
from puli.openjd.translate import RUNNER, translate
from test_api_support import Api, assert_error

FIXTURES = Path(__file__).parent / "fixtures" / "openjd"


def fixture(name):
    return load_yaml((FIXTURES / name).read_text())


def graph_of(name, **parameters):
    return translate(check_body({"template": fixture(name), "parameters": {"Out": "/out", **parameters}}), 10_000)


def values(task, name):
    return [c["arguments"]["openjdTask"][name]["value"] for c in task["commands"]]


@pytest.fixture
def api():
    return Api()


def test_a_chunked_frame_range_makes_a_command_per_chunk():
    graph = graph_of("chunked.yaml", Frames="1-10")
    job, render = graph["tasks"]
    assert job["type"] == "TaskGroup" and job["name"] == "Chunked render" and job["tasks"] == [1]
    assert render["runner"] == RUNNER and render["arguments"] == {"openjdStep": "Render"}
    assert values(render, "Frame") == ["1-4", "5-7", "8-10"]
    assert [c["nbFrames"] for c in render["commands"]] == [4, 3, 3]
    # The job parameters' defaults are filled in and kept with the job.
    assert job["tags"]["openjdParameters"] == {"Frames": "1-10", "Out": "/out", "ChunkSize": "4"}
    frames = values(graph_of("chunked.yaml", Frames="1-3,10-11", ChunkSize="2")["tasks"][1], "Frame")
    # CONTIGUOUS: a chunk never spans the gap between 3 and 10.
    assert frames == ["1-2", "3-3", "10-11"]


def test_an_adaptive_chunk_parameter_is_marked_for_the_model():
    render = graph_of("adaptive.yaml")["tasks"][1]
    assert render["arguments"]["openjdChunks"] == {"parameter": "Frame", "targetRuntimeSeconds": 8, "defaultTaskCount": 1,
                                                 "contiguous": True}
    assert len(render["commands"]) == 24


def test_steps_become_tasks_with_their_dependencies_and_parameter_spaces():
    graph = graph_of("env-script.yaml")
    _, prepare, render = graph["tasks"]
    assert graph["name"] == "Two steps into /out"
    assert values(prepare, "Part") == ["a", "b"] and prepare["dependencies"] == []
    assert values(render, "Frame") == ["1", "2", "3", "4"] and render["dependencies"] == [[1, [3]]]


def test_a_combination_is_a_product_of_an_association():
    render = graph_of("combination.yaml")["tasks"][1]
    combos = [tuple(c["arguments"]["openjdTask"][n]["value"] for n in ("Frame", "Layer", "Pass")) for c in render["commands"]]
    assert sorted(combos) == sorted((str(f), layer, p) for f in (1, 2, 3) for layer, p in (("fg", "beauty"), ("bg", "shadow")))


def test_host_requirements_become_cores_ram_and_requirements():
    render = graph_of("hosts.yaml")["tasks"][1]
    assert (render["minNbCores"], render["ramUse"]) == (1, 64)
    assert render["requirements"] == {"os": "linux", "softs": ["blender"]}


@pytest.mark.parametrize("amounts, attributes, words", [
    ([{"name": "amount.worker.disk.scratch", "min": 10}], [], ["amount.worker.disk.scratch", "not supported"]),
    ([{"name": "amount.worker.memory", "max": 10}], [], ["maximum"]),
    ([], [{"name": "attr.worker.os.family", "anyOf": ["linux", "windows"]}], ["one value"]),
    ([], [{"name": "attr.soft", "anyOf": ["maya", "blender"]}], ["anyOf"]),
])
def test_host_requirements_puli_cannot_honour_are_refused(amounts, attributes, words):
    template = fixture("hosts.yaml")
    template["steps"][0]["hostRequirements"] = {k: v for k, v in (("amounts", amounts), ("attributes", attributes)) if v}
    with pytest.raises(OpenJDError) as caught:
        translate(check_body({"template": template, "parameters": {"Out": "/o"}}), 100)
    for word in words:
        assert word in str(caught.value)


def test_invalid_templates_and_values_carry_the_librarys_message():
    template = fixture("chunked.yaml")
    with pytest.raises(OpenJDError, match="ChunkSize must be at most 100"):
        translate(check_body({"template": template, "parameters": {"Out": "/o", "ChunkSize": "500"}}), 100)
    with pytest.raises(OpenJDError, match="Values missing for required job parameters: Out"):
        translate(check_body({"template": template, "parameters": {}}), 100)
    broken = fixture("chunked.yaml")
    broken["steps"][0]["script"]["actions"]["onRun"]["args"][1] = "{{Task.Param.Nope}}"
    with pytest.raises(OpenJDError, match=r"steps\[0\]"):
        translate(check_body({"template": broken, "parameters": {"Out": "/o"}}), 100)
    unknown_extension = dict(fixture("chunked.yaml"), extensions=["REDACTED_EXTENSION"])
    with pytest.raises(OpenJDError, match="REDACTED_EXTENSION"):
        translate(check_body({"template": unknown_extension, "parameters": {"Out": "/o"}}), 100)


def test_a_parameter_space_past_the_command_budget_is_refused_before_it_is_expanded():
    with pytest.raises(OpenJDError, match="max_graph_commands"):
        translate(check_body({"template": fixture("chunked.yaml"),
                              "parameters": {"Out": "/o", "Frames": "1-100000000", "ChunkSize": "1"}}), 1000)


def test_bodies_are_checked_before_the_library_sees_them():
    with pytest.raises(OpenJDError, match="aliases"):
        parse_body("template: &a {x: 1}\nparameters: *a\n", "application/yaml")
    with pytest.raises(OpenJDError, match="unknown field"):
        check_body({"template": {}, "bogus": 1})
    with pytest.raises(OpenJDError, match="parameters.Out"):
        check_body({"template": {}, "parameters": {"Out": ["a"]}})
    with pytest.raises(OpenJDError, match="not JSON"):
        parse_body("{", "application/json")


def test_post_creates_the_job_with_its_openjd_name_and_parameters(api):
    result = api.post("/openjd/jobs", {"template": fixture("env-script.yaml"), "parameters": {"Out": "/o"}},
                      role="artist")
    assert result.status_code == 201, result.json
    created = result.json
    assert created["commands"] == 6 and len(created["nodes"]) == 3
    assert created["openjd"] == {"name": "Two steps into /o", "parameters": {"Out": "/o", "Frames": "1-4"}}
    job = api.node(created["id"])
    assert job["user"] == "ann" and job["tags"]["openjdName"] == "Two steps into /o"
    render = api.node(created["nodes"][2])
    assert render["dependencies"] == [[created["nodes"][1], [3]]] and render["statusName"] == "BLOCKED"


def test_post_takes_yaml(api):
    body = yaml.safe_dump({"template": fixture("embedded.yaml"), "parameters": {"Out": "/o", "Greeting": "bonjour"}})
    result = api.client.simulate_post("/openjd/jobs", body=body, headers={
        "Content-Type": "application/yaml", "Authorization": f"Bearer {api.tokens['artist']}"})
    assert result.status_code == 201, result.json
    assert result.json["openjd"]["parameters"]["Greeting"] == "bonjour"


def test_refusals_create_nothing_and_say_why(api):
    before = api.farm.next_command_id, len(api.farm.nodes)
    result = api.post("/openjd/jobs", {"template": fixture("embedded.yaml"), "parameters": {"Out": "/o", "Greeting": "hi"}})
    assert_error(result, 400, "Greeting", "allowed")
    broken = fixture("embedded.yaml")
    del broken["steps"][0]["script"]["actions"]
    assert_error(api.post("/openjd/jobs", {"template": broken, "parameters": {"Out": "/o"}}), 400, "steps[0]", "actions")
    assert_error(api.client.simulate_post("/openjd/jobs", body="a: [", headers={
        "Content-Type": "application/yaml", "Authorization": f"Bearer {api.tokens['admin']}"}), 400, "YAML")
    # YAML goes to this route only.
    assert api.client.simulate_post("/graphs", body="a: 1", headers={
        "Content-Type": "application/yaml", "Authorization": f"Bearer {api.tokens['admin']}"}).status_code == 415
    assert api.get("/openjd/jobs").status_code == 405
    assert (api.farm.next_command_id, len(api.farm.nodes)) == before
    assert api.post("/openjd/jobs", {"template": {}}, role="viewer").status_code == 403


def test_the_route_is_in_the_openapi_document_with_its_role(api):
    document = api.get("/openapi.json").json
    operation = document["paths"]["/openjd/jobs"]["post"]
    assert operation["x-puli-role"] == ["artist"]
    assert json.dumps(operation).count("OpenJDJob") >= 2
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/yaml"}


def test_a_huge_chunk_is_refused_too():
    with pytest.raises(OpenJDError, match="at most 10000000 values"):
        translate(check_body({"template": fixture("chunked.yaml"),
                              "parameters": {"Out": "/o", "Frames": "1-100000000", "ChunkSize": "100"}}), 1_000_000)
