import json
import re

import falcon
import falcon.inspect
import pytest
from falcon import testing

from puli.dispatcher import errors, openapi
from puli.store import StoreError
from puli.model.status import CommandStatus as CS
from test_api_support import Api, assert_error, routed, task


@pytest.fixture
def api():
    return Api()


def test_stats_is_puli_snapshot_as_json(api):
    api.put("/licenses/nuke", {"maxlic": 3})
    api.submit(task("t", frames=(1, 3), maxNbCores=1))
    done = api.submit(task("u"))
    api.put(f"/nodes/{done}/status", {"status": 3})
    api.register("a:8000", cores=8)
    api.register("b:8000", cores=4)
    sent = api.dispatch()
    api.service.last_pass = {"assigned": len(sent), "seconds": 0.001, "at": api.clock}
    stats = api.get("/stats").json
    assert stats["commands"]["ASSIGNED"] == 3 and stats["commands"]["DONE"] == 1
    assert stats["commands"]["TOTAL"] == 4
    assert stats["rendernodes"]["totalCores"] == 12 and stats["rendernodes"]["idleCores"] == 9
    assert stats["rendernodes"]["renderNodesByStatus"]["Assigned"] == 1
    assert stats["rendernodes"]["renderNodesByStatus"]["Idle"] == 1
    assert stats["jobs"]["RUNNING"] == 1 and stats["jobs"]["DONE"] == 1 and stats["jobs"]["TOTAL"] == 2
    assert stats["licenses"] == [{"name": "nuke", "max": 3, "used": 0, "rns": []}]
    assert stats["dispatch"]["assigned"] == 3


def test_system_reports_version_readiness_and_database(api):
    api.submit(task("t"))
    system = api.get("/system/").json
    assert system["version"] and system["ready"] is False and system["jobs"] == 1
    assert system["db"] == {"enabled": False, "ok": True, "error": None, "pendingWrites": True,
                            "refused": 0, "refusedRows": []}
    assert system["uptime"] == 0 and system["startedAt"] == api.clock
    api.clock += 5
    later = api.get("/system/").json
    assert later["uptime"] == 5 and later["startedAt"] == system["startedAt"]


def test_unknown_route_and_method_answer_json(api):
    assert_error(api.get("/no/such/route"), 404, "/no/such/route")
    body = assert_error(api.delete("/graphs/"), 405, "DELETE")
    assert "POST" in body["description"]
    assert_error(api.get("/nodes/abc"), 404)


def test_chunked_body_without_length_is_refused(api):
    result = api.client.simulate_post("/graphs/", body=b"", headers={"Transfer-Encoding": "chunked"})
    assert_error(result, 411, "content-length")


def failing_route(exc):
    """A client of an app with the dispatcher's error handling and one route, /boom, raising `exc`."""
    class Boom:
        def on_get(self, req, resp):
            raise exc
    app = falcon.App()
    errors.install(app)
    app.add_route("/boom", Boom())
    return testing.TestClient(app)


def test_unexpected_failure_is_a_json_500_and_is_logged(caplog):
    client = failing_route(RuntimeError("the secret detail"))
    body = assert_error(client.simulate_get("/boom"), 500, "RuntimeError")
    assert "secret detail" not in body["description"]
    assert any("secret detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_store_failure_is_a_503():
    client = failing_route(StoreError("connection refused"))
    result = client.simulate_get("/boom")
    assert_error(result, 503, "database", "connection refused")
    assert result.headers["retry-after"] == "5"


def test_data_the_database_refuses_is_a_400():
    client = failing_route(StoreError("Out of range value for column 'priority'", refused=True))
    assert_error(client.simulate_get("/boom"), 400, "refused by the database", "priority")


def test_every_error_is_json_with_title_and_description(api):
    job = api.submit(task("t"))
    api.register("a:8000")
    (cmd_id, (rn, assignment)), = api.dispatch().items()
    api.put(f"/commands/{cmd_id}", {"status": 8})
    for result, status in [
        (api.get("/nodes/999"), 404),
        (api.put(f"/nodes/{job}/paused", {}), 400),
        (api.put(f"/nodes/{job}/paused", {"paused": "maybe"}), 400),
        (api.raw("PUT", f"/nodes/{job}/paused", "nope"), 400),
        (api.post("/pools/default"), 409),
        (api.report(rn, cmd_id, assignment, CS.RUNNING), 409),
        (api.get("/commands", limit="many"), 400),
        (api.client.simulate_put(f"/nodes/{job}/paused", body="{}", headers={"Content-Type": "image/png"}), 415),
    ]:
        assert_error(result, status)


def test_openapi_documents_every_route_and_only_those(api):
    served = routed(api.client.app)
    documented = openapi.operations()
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not serve"
    assert len(served) > 70


def test_openapi_document_is_served_and_consistent(api):
    doc = api.get("/openapi.json").json
    assert doc["openapi"].startswith("3.0")
    text = json.dumps(doc)
    for name in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert name in doc["components"]["schemas"], name
    operation_ids = []
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert operation["summary"] and "default" in operation["responses"]
            operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))
    worker = doc["paths"]["/rendernodes/{name}/commands/{id}"]["put"]
    assert "409" in worker["responses"] and "stop" in worker["description"]


def _success(doc, method, template, status):
    return doc["paths"][template][method]["responses"].get(str(status))


@pytest.mark.parametrize("path, template", [
    ("/reports/", "/reports"), ("/reports/index.html", "/reports/{name}"),
    ("/reports/manifest.json", "/reports/{name}"), ("/reports/view", "/reports/view"),
    ("/reports/view.svg", "/reports/view.svg")])
def test_what_a_route_sends_is_a_content_type_its_document_names(api, path, template):
    # Found by the fuzz (test_fuzz_api): the document said JSON for the report pages.
    api.submit(task("t"))
    result = api.get(path)
    documented = _success(api.get("/openapi.json").json, "get", template, result.status_code)
    assert result.status_code == 200 and result.headers["content-type"] in documented["content"]


def test_a_second_registration_and_a_share_already_in_its_pool_are_documented_200s(api):
    doc = api.get("/openapi.json").json
    api.register("rn1:8000")
    again = api.post("/rendernodes/rn1:8000/", {"cores": 4, "ram": 16000})
    assert again.status_code == 200 and _success(doc, "post", "/rendernodes/{name}", 200)
    job = api.submit(task("t"))
    api.post("/pools/gpu")
    assert api.post("/poolshares", {"poolName": "gpu", "nodeId": job}).status_code == 201
    same = api.post("/poolshares", {"poolName": "gpu", "nodeId": job})
    assert same.status_code == 200 and _success(doc, "post", "/poolshares", 200)


def test_openapi_links_name_operations_and_parameters_that_exist(api):
    doc = api.get("/openapi.json").json
    operations = {op["operationId"]: op for methods in doc["paths"].values() for op in methods.values()}
    links = [link for op in operations.values() for answer in op["responses"].values()
             for link in answer.get("links", {}).values()]
    assert len(links) > 20                 # what the stateful fuzz walks
    for link in links:
        target = operations[link["operationId"]]
        assert set(link["parameters"]) <= {p["name"] for p in target["parameters"]}, link


def test_the_documented_example_bodies_are_accepted(api):
    doc = api.get("/openapi.json").json
    example = doc["paths"]["/graphs"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert api.post("/graphs/", example).status_code == 201
    example = doc["paths"]["/rendernodes/{name}"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert api.post("/rendernodes/rn1:8000/", example).status_code == 201
