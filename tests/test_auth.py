"""Who may do what, in-process: every route of /openapi.json answered to a token of each role (and
to none, an unknown, an expired and a revoked one) as the route declares; artists on their own
jobs; tokens kept hashed; the audit trail; nothing a browser could be made to send."""
import json
import re
import tempfile

import pytest

from puli.dispatcher import auth, openapi
from puli.dispatcher.settings import load_settings
from test_api_support import Api, assert_error, graph, task


def fill(path, ids, other_job=False):
    """A concrete path for a route of the document, naming objects of the farm `ids` describes."""
    def value(match):
        name = match.group(1)
        if name == "name":
            return ids["names"].get(path, "a:8000")
        kind = ids["id_kinds"].get(path, "node")
        if kind == "node":
            return str(ids["other_job"] if other_job else ids["job"])
        return str(ids[kind])
    return re.sub(r"{(\w+)}", value, path)


def farm_for_auth():
    """An Api with a job of the artist's (ann), one of bob's, a render node registered by the
    farm's worker token, a pool, a license and a token to revoke."""
    api = Api()
    job = api.submit(task("mine", frames=(1, 2)), user="ann")
    other = api.submit(task("theirs"), user="bob")
    api.farm.nodes[job].user = "ann"          # as an artist's own submission would be
    api.register("a:8000", cores=4)
    api.dispatch()
    assert api.post("/pools/gpu").status_code == 201
    assert api.put("/licenses/nuke", {"maxlic": 2}).status_code == 200
    token_row = api.service.tokens.create("victim", "viewer")[1]
    command = api.farm.nodes[job].commands[0].id
    ids = {
        "job": job, "other_job": other, "command": command, "share": api.farm.nodes[job].share.id,
        "token": token_row["id"],
        "id_kinds": {"/commands/{id}": "command", "/commands/{id}/log": "command",
                     "/rendernodes/{name}/commands/{id}": "command", "/poolshares/{id}": "share",
                     "/tokens/{id}": "token"},
        "names": {"/pools/{name}": "gpu", "/pools/{name}/rendernodes": "gpu", "/licenses/{name}": "nuke",
                  "/reports/{name}": "index.html"},
    }
    return api, ids


def identities(api):
    """name -> (headers, Identity or None); the Identity is what the route is held to."""
    tokens = api.service.tokens
    expired, _ = tokens.create("old", "admin", expires=api.clock - 1)
    revoked, row = tokens.create("gone", "admin")
    tokens.revoke(ids=[row["id"]])
    bound_elsewhere, _ = tokens.create("b:8000", "worker", node="b:8000")
    # The Api's client sends the admin's token unless told otherwise: an empty header is none.
    out = {"none": ({"Authorization": ""}, None), "unknown": ({"Authorization": "Bearer puli_madeup"}, None),
           "expired": ({"Authorization": f"Bearer {expired}"}, None),
           "revoked": ({"Authorization": f"Bearer {revoked}"}, None),
           "other node's worker": ({"Authorization": f"Bearer {bound_elsewhere}"},
                                   auth.Identity("b:8000", "worker", node="b:8000"))}
    for role, user in (("viewer", "vic"), ("artist", "ann"), ("wrangler", "wes"), ("admin", "root"),
                       ("worker", "farm")):
        out[role] = ({"Authorization": f"Bearer {api.tokens[role]}"}, auth.Identity(user, role))
    return out


def expected(access, identity, path, filled_for_other):
    """'ok', 401 or 403: what the route's declared access says of this identity."""
    if auth.PUBLIC in access.roles:
        return "ok"
    if identity is None:
        return 401
    role = next((r for r in access.roles if identity.admits(r)), None)
    if role is None:
        return 403
    if identity.node is not None and "{name}" in path:
        return 403                      # bound to another render node than a:8000
    if role == "artist" and identity.role == "artist" and access.own in ("node", "command", "share") \
            and filled_for_other:
        return 403
    return "ok"


OPERATIONS = [(e["method"].upper(), e["path"], e["access"]) for e in openapi.OPERATIONS]


@pytest.mark.parametrize("method, path, access", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_route_answers_each_identity_as_its_declared_role(method, path, access):
    cases = [(name, False) for name in ("none", "unknown", "expired", "revoked", "other node's worker",
                                        "viewer", "artist", "wrangler", "admin", "worker")]
    if access.own in ("node",) and "{id}" in path:
        cases.append(("artist", True))  # someone else's job
    for name, other in cases:
        api, ids = farm_for_auth()      # afresh: an allowed request may change the farm
        headers, identity = identities(api)[name]
        url = fill(path, ids, other_job=other)
        body = None if method in ("GET", "DELETE") else "{}"
        result = api.client.simulate_request(method, url, body=body, headers={
            **({"Content-Type": "application/json"} if body else {}), **headers})
        want = expected(access, identity, path, other)
        page = path.startswith("/ui/")  # the web monitor's: HTML, and no session means its sign-in form
        if want == 401 and page and method == "GET":
            assert result.status_code == 303, (name, url, result.status_code, result.text)
            assert result.headers["location"].startswith("/ui/signin?next="), result.headers
        elif want == "ok":
            assert result.status_code not in (401, 403), (name, url, result.status_code, result.text)
        elif page:
            assert result.status_code == want, (name, url, result.status_code, result.text)
            assert " or ".join(access.roles) in result.text, result.text
        else:
            assert result.status_code == want, (name, url, result.status_code, result.text)
            body = result.json
            assert " or ".join(access.roles) in body["description"], body
            if want == 401:
                assert "Authorization: Bearer" in body["description"]
                assert result.headers.get("www-authenticate", "").startswith("Bearer")


def test_the_document_publishes_every_routes_role():
    document = openapi.document()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            roles = operation["x-puli-role"]
            assert roles and all(r in (*auth.ROLES, auth.PUBLIC) for r in roles), (method, path)
            assert ("security" in operation) == (auth.PUBLIC not in roles), (method, path)
    assert document["paths"]["/health"]["get"]["x-puli-role"] == ["public"]
    assert document["paths"]["/nodes/{id}/cancel"]["put"]["x-puli-own"] == "node"


def test_an_artist_acts_on_its_own_jobs_only_and_its_batch_edits_too():
    api = Api()
    mine = api.submit(task("mine"), role="artist")
    theirs = api.submit(task("theirs"), user="bob")
    assert api.node(mine)["user"] == "ann"
    assert_error(api.put(f"/nodes/{theirs}/cancel", role="artist"), 403, "bob", "own jobs")
    assert api.put(f"/nodes/{mine}/cancel", role="artist").status_code == 200
    assert_error(api.put(f"/edit/status?constraint_id={mine},{theirs}&update_status=5", role="artist"),
                 403, "bob", "own jobs")
    result = api.put("/edit/status?constraint_user=bob&update_status=5", role="artist")
    assert result.status_code == 200 and result.json["editedJobs"] == []
    assert api.node(theirs)["statusName"] != "CANCELED"
    assert api.put(f"/edit/status?constraint_id={theirs}&update_status=5", role="wrangler").json["editedJobs"] == [theirs]


def test_an_artists_job_is_the_artists_whatever_the_graph_says():
    api = Api()
    body = graph(task("t", user="bob"), user="bob")
    job = api.post("/graphs/", body, role="artist").json["id"]
    assert api.node(job)["user"] == "ann"
    job = api.post("/graphs/", body, role="wrangler").json["id"]
    assert api.node(job)["user"] == "bob"       # a wrangler submits for whom the graph says
    job = api.post("/graphs/", graph(task("t")), role="wrangler").json["id"]
    assert api.node(job)["user"] == "wes"


def test_a_worker_token_speaks_for_its_node_only():
    api = Api()
    bound, _ = api.service.tokens.create("a:8000", "worker", node="a:8000")
    headers = {"Authorization": f"Bearer {bound}"}
    body = {"cores": 2, "ram": 1000}
    assert api.post("/rendernodes/a:8000/", body, headers=headers).status_code == 201
    assert_error(api.post("/rendernodes/b:8000/", body, headers=headers), 403, "bound to a:8000")
    # Another worker token cannot speak for a node bound to the first.
    assert_error(api.post("/rendernodes/a:8000/", body), 403, "bound to another token")
    assert_error(api.put("/rendernodes/a:8000/sysinfos", {}), 403, "bound to another token")
    assert api.put("/rendernodes/a:8000/sysinfos", {}, headers=headers).status_code == 200
    job = api.submit(task("t"))
    assert_error(api.put(f"/nodes/{job}/cancel", headers=headers), 403, "worker")


def test_a_live_node_cannot_be_moved_to_another_address():
    api = Api()
    body = {"cores": 2, "ram": 1000, "host": "10.0.0.5", "port": 8000}
    assert api.post("/rendernodes/render01:8000/", body).status_code == 201
    assert_error(api.post("/rendernodes/render01:8000/", dict(body, host="10.6.6.6")), 409, "alive at 10.0.0.5")
    assert api.get("/rendernodes/render01:8000").json["host"] == "10.0.0.5"


@pytest.mark.parametrize("host", ["http://evil.example/x", "evil.example/path", "a@b", "a b", "",
                                  "-leading.dash", "x" * 300])
def test_a_registration_names_a_host_never_a_url(host):
    api = Api()
    result = api.post("/rendernodes/render02:8000/", {"cores": 2, "ram": 1000, "host": host})
    if host:
        assert_error(result, 400, "host")
    assert api.get("/rendernodes/render02:8000").status_code in (404, 200)
    if result.status_code == 201:
        assert api.get("/rendernodes/render02:8000").json["host"] != host


def test_tokens_are_made_listed_and_revoked_by_admins_and_stored_hashed(tmp_sqlite_url):
    from puli.store import open_store

    store = open_store(tmp_sqlite_url)
    try:
        api = Api(store=store)
        made = api.post("/tokens", {"user": "carl", "role": "artist", "expires": "30d"})
        assert made.status_code == 201
        token = made.json["token"]
        assert token.startswith("puli_") and len(token) > 40
        listed = api.get("/tokens").json["tokens"]
        carl = next(t for t in listed if t["user"] == "carl")
        assert carl["role"] == "artist" and carl["expires"] == pytest.approx(api.clock + 30 * 86400)
        assert "digest" not in carl and all(token not in json.dumps(t) for t in listed)
        with open(tmp_sqlite_url[len("sqlite://"):], "rb") as f:
            assert token.encode() not in f.read(), "a token is stored as itself"
        assert api.get("/nodes", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert api.delete(f"/tokens/{carl['id']}").json == {"revoked": [carl["id"]]}
        assert_error(api.get("/nodes", headers={"Authorization": f"Bearer {token}"}), 401, "revoked")
        assert_error(api.post("/tokens", {"user": "x", "role": "god"}), 400, "role")
        assert_error(api.post("/tokens", {"user": "x", "role": "artist"}, role="wrangler"), 403, "admin")
    finally:
        store.close()


def test_every_state_changing_request_is_audited_with_who_what_and_how_it_ended():
    api = Api()
    job = api.submit(task("t"), user="bob")
    api.put(f"/nodes/{job}/cancel", role="wrangler")
    api.put(f"/nodes/{job}/cancel", role="artist")          # refused: bob's job
    api.put(f"/edit/prio?constraint_id={job}&value=3", role="wrangler")
    api.get(f"/nodes/{job}", role="viewer")                  # a read: not audited
    records = api.get("/audit", job=job).json["records"]
    assert [(r["user"], r["role"], r["route"], r["status"]) for r in records] == [
        ("wes", "wrangler", "/edit/prio", 200),
        ("ann", "artist", "/nodes/{id}/cancel", 403),
        ("wes", "wrangler", "/nodes/{id}/cancel", 200),
        ("root", "admin", "/graphs", 201)]
    assert records[1]["outcome"].startswith("Forbidden")
    assert api.get("/audit", user="ann").json["records"][0]["targets"]["jobs"] == [job]
    assert_error(api.get("/audit", role="artist"), 403, "wrangler")


def test_no_cors_headers_and_no_form_bodies():
    api = Api()
    result = api.client.simulate_options("/graphs", headers={"Origin": "https://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert not [h for h in result.headers if h.lower().startswith("access-control-")]
    result = api.get("/nodes", headers={"Origin": "https://evil.example"})
    assert not [h for h in result.headers if h.lower().startswith("access-control-")]
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        result = api.client.simulate_post("/graphs", body=json.dumps(graph(task("t"))),
                                          headers={"Content-Type": content_type,
                                                   "Authorization": f"Bearer {api.tokens['admin']}"})
        assert_error(result, 415, "application/json")
    assert api.job_ids() == []


def test_auth_off_lets_everybody_do_everything():
    api = Api(settings=load_settings(auth=False, data_dir=tempfile.mkdtemp(prefix="puli-api-")))
    job = api.submit(task("t"))
    assert api.client.simulate_put(f"/nodes/{job}/cancel", headers={"Authorization": ""}).status_code == 200
