import pytest

from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_licenses_are_json(api):
    assert api.get("/licenses/").json == {"licenses": []}
    result = api.put("/licenses/nuke", {"maxlic": 2})
    assert result.json == {"name": "nuke", "max": 2, "used": 0, "rns": []}
    assert api.get("/licenses").json == {"licenses": [{"name": "nuke", "max": 2, "used": 0, "rns": []}]}
    assert api.get("/licenses/nuke/").headers["content-type"].startswith("application/json")


def test_license_tokens_limit_dispatch_and_can_be_released(api):
    api.put("/licenses/nuke", {"maxlic": 1})
    api.submit(task("t", frames=(1, 3), lic="nuke", maxNbCores=1))
    api.register("a:8000", cores=4)
    assert len(api.dispatch()) == 1
    assert api.get("/licenses/nuke").json == {"name": "nuke", "max": 1, "used": 1, "rns": ["a:8000"]}
    released = api.delete("/licenses/nuke", {"rns": "a:8000,b:8000"}).json
    assert released["used"] == 0
    assert len(api.dispatch()) == 1


def test_license_errors(api):
    assert_error(api.get("/licenses/none"), 404, "none")
    assert_error(api.put("/licenses/nuke", {"maxlic": -1}), 400, "maxlic")
    assert_error(api.put("/licenses/nuke", {}), 400, "maxlic")
    api.put("/licenses/nuke", {"maxlic": 1})
    assert_error(api.delete("/licenses/nuke", {}), 400, "rns")
    assert_error(api.delete("/licenses/other", {"rns": ["a:8000"]}), 404, "other")
