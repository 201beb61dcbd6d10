import pytest

from puli.dispatcher.settings import load_settings
from test_api_support import Api, assert_error, task


@pytest.fixture
def api():
    return Api()


def test_pools_are_created_filled_and_deleted(api):
    api.register("a:8000")
    api.register("b:8000")
    result = api.post("/pools/lighting/")
    assert result.status_code == 201 and result.json["name"] == "lighting"
    assert_error(api.post("/pools/lighting"), 409, "exists")
    pool = api.put("/pools/lighting/rendernodes", {"renderNodes": ["a:8000"]}).json
    assert pool["renderNodes"] == ["a:8000"]
    pools = api.get("/pools/").json["pools"]
    assert set(pools) == {"default", "lighting"}
    assert pools["default"]["renderNodes"] == ["a:8000", "b:8000"]
    assert api.get("/rendernodes/a:8000").json["pools"] == ["default", "lighting"]
    assert api.delete("/pools/lighting").json == {"name": "lighting", "deleted": True}
    assert_error(api.get("/pools/lighting"), 404, "lighting")
    assert api.get("/rendernodes/a:8000").json["pools"] == ["default"]


def test_pool_holding_a_job_cannot_be_deleted(api):
    api.post("/pools/comp")
    job = api.submit(task("t"), poolName="comp")
    assert_error(api.delete("/pools/comp"), 409, str(job))
    assert_error(api.delete("/pools/default"), 409, "default")


def test_pool_membership_with_unknown_node_is_404(api):
    api.post("/pools/comp")
    assert_error(api.put("/pools/comp/rendernodes", {"renderNodes": ["zz:1"]}), 404, "zz:1")
    assert_error(api.put("/pools/comp/rendernodes", {"renderNodes": "a"}), 400, "renderNodes")


def test_pool_edits_are_refused_when_pools_come_from_the_config_file():
    api = Api(settings=load_settings(pools_backend="file", pools={"lighting": ["a:8000"]}))
    for result in (api.post("/pools/new"), api.delete("/pools/default"),
                   api.put("/pools/default/rendernodes", {"renderNodes": []})):
        assert_error(result, 409, "configuration")


def test_job_moves_to_another_pool_through_poolshares(api):
    api.post("/pools/lighting")
    api.register("a:8000", pools=["lighting"])
    api.register("b:8000")
    job = api.submit(task("t"))
    result = api.post("/poolshares/", {"poolName": "lighting", "nodeId": job, "maxRN": -1})
    assert result.status_code == 201
    share = result.json
    assert share["poolName"] == "lighting" and share["nodeId"] == job
    assert api.node(job)["poolShareId"] == share["id"]
    shares = api.get("/poolshares").json["poolShares"]
    assert [s["id"] for s in shares] == [share["id"]]
    api.put("/rendernodes/a:8000/paused", {"paused": True})
    assert api.dispatch() == {}           # b:8000 is not in lighting
    api.put("/rendernodes/a:8000/paused", {"paused": False})
    assert [rn for rn, _ in api.dispatch().values()] == ["a:8000"]


def test_max_rn_through_poolshare_really_changes_dispatch(api):
    job = api.submit(task("t", frames=(1, 10), maxNbCores=1))
    api.register("a:8000", cores=8)
    share_id = api.node(job)["poolShareId"]
    result = api.post(f"/poolshares/{share_id}", {"maxRN": 3})
    assert result.json["maxRN"] == 3 and result.json["userDefinedMaxRN"] is True
    assert api.get(f"/poolshares/{share_id}").json["maxRN"] == 3
    assert len(api.dispatch()) == 3
    api.post(f"/poolshares/{share_id}/", {"maxRN": 5})
    assert len(api.dispatch()) == 2
    assert api.node(job)["allocatedRN"] == 5


def test_poolshare_errors(api):
    job = api.submit(task("t"))
    assert_error(api.get("/poolshares/999"), 404, "999")
    assert_error(api.post("/poolshares/", {"poolName": "nowhere", "nodeId": job}), 404, "nowhere")
    assert_error(api.post("/poolshares/", {"poolName": "default"}), 400, "nodeId")
    share_id = api.node(job)["poolShareId"]
    assert_error(api.post(f"/poolshares/{share_id}", {"maxRN": -5}), 400, "maxRN")
