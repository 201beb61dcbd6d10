"""Helpers for the API tests (no tests here): a real in-memory farm behind the real Falcon app.

The service's threads are never started: tests run dispatch passes themselves and read the
farm's outbox, with a clock they move by hand.
"""
import re
import shutil
import tempfile
import weakref

import falcon.inspect
from falcon import testing

from puli.dispatcher.app import create_app
from puli.dispatcher.service import Service
from puli.dispatcher.settings import load_settings
from puli.model.farm import Farm
from puli.model.outbox import Assign
from puli.scheduler.dispatch import dispatch


def task(name, frames=None, **kw):
    out = {"type": "Task", "name": name, "arguments": kw.pop("arguments", {})}
    if frames:
        out["arguments"].update(start=frames[0], end=frames[1], cmd="echo %%MI_FRAME%%")
    out.update(kw)
    return out


def graph(*tasks, name="job", **extra):
    """A graph body: one task as the root, or several under a TaskGroup root."""
    if len(tasks) == 1 and not extra.pop("group", False):
        body = {"name": name, "root": 0, "tasks": list(tasks)}
    else:
        root = {"type": "TaskGroup", "name": name, "tasks": list(range(1, len(tasks) + 1))}
        body = {"name": name, "root": 0, "tasks": [root, *tasks]}
    body.update(extra)
    return body


# The routes workers call, answered only to a worker token.
WORKER_ROUTES = {"POST": re.compile(r"^/rendernodes/[^/]+/?$"),
                 "PUT": re.compile(r"^/rendernodes/[^/]+/(sysinfos|commands/\d+)/?$")}


class Api:
    """Requests go as an admin, or as a farm-wide worker for the workers' routes; `tokens`
    holds a token of every role (the artist's and the viewer's users are ann and vic)."""

    def __init__(self, settings=None, store=None):
        """`settings`: the defaults with a data directory of its own, unless given."""
        if settings is None:
            data_dir = tempfile.mkdtemp(prefix="puli-api-")
            weakref.finalize(self, shutil.rmtree, data_dir, ignore_errors=True)
            settings = load_settings(data_dir=data_dir)
        self.clock = 1_000_000.0
        self.service = Service(Farm(), store=store, settings=settings, clock=lambda: self.clock)
        self.farm = self.service.farm
        self.tokens = {role: self.service.tokens.create(user, role)[0]
                       for role, user in (("admin", "root"), ("wrangler", "wes"), ("artist", "ann"),
                                          ("viewer", "vic"), ("worker", "farm"))}
        self.client = testing.TestClient(create_app(self.service),
                                         headers={"Authorization": f"Bearer {self.tokens['admin']}"})

    # -- HTTP ------------------------------------------------------------------------------------
    def _as(self, path, kw, method=""):
        headers = dict(kw.pop("headers", None) or {})
        role = kw.pop("role", None)
        worker_route = WORKER_ROUTES.get(method)
        if (role is None and "Authorization" not in headers and worker_route is not None
                and worker_route.match(path.split("?")[0])):
            role = "worker"
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        kw["headers"] = headers
        return kw

    def get(self, path, role=None, headers=None, **params):
        kw = self._as(path, {"role": role, "headers": headers}, "GET")
        return self.client.simulate_get(path, params=params or None, **kw)

    def put(self, path, json=None, **kw):
        return self.client.simulate_put(path, json=json, **self._as(path, kw, "PUT"))

    def post(self, path, json=None, **kw):
        return self.client.simulate_post(path, json=json, **self._as(path, kw, "POST"))

    def delete(self, path, json=None, **kw):
        return self.client.simulate_delete(path, json=json, **self._as(path, kw, "DELETE"))

    def raw(self, method, path, body, **kw):
        """A request with a body of our own text (bad JSON, NaN...), sent as JSON."""
        headers = {"Content-Type": "application/json", **self._as(path, kw, method)["headers"]}
        return self.client.simulate_request(method, path, body=body, headers=headers)

    # -- shortcuts -------------------------------------------------------------------------------
    def submit(self, *tasks, role=None, **extra):
        result = self.post("/graphs/", graph(*tasks, **extra), role=role)
        assert result.status_code == 201, result.json
        return result.json["id"]

    def register(self, name, cores=4, ram=16000, pools=(), commands=(), **extra):
        body = {"name": name, "cores": cores, "ram": ram, "speed": 3.0, "puliversion": "2.0",
                "caracteristics": {"os": "linux"}, "pools": list(pools),
                "commands": list(commands), **extra}
        result = self.post(f"/rendernodes/{name}/", body)
        assert result.status_code in (200, 201), result.json
        return result.json

    def dispatch(self):
        """One dispatch pass: {command id: (render node name, assignment)} of the new assignments."""
        dispatch(self.farm, self.clock)
        return {m.command.id: (m.render_node.name, m.assignment) for m in self.farm.take_outbox()
                if isinstance(m, Assign)}

    def report(self, rn, cmd_id, assignment, status=None, **extra):
        body = {"assignment": assignment, **extra}
        if status is not None:
            body["status"] = int(status)
        return self.put(f"/rendernodes/{rn}/commands/{cmd_id}/", body)

    def node(self, node_id):
        result = self.get(f"/nodes/{node_id}")
        assert result.status_code == 200, result.json
        return result.json

    def command(self, cmd_id):
        result = self.get(f"/commands/{cmd_id}")
        assert result.status_code == 200, result.json
        return result.json

    def job_ids(self):
        return self.node(1)["children"]


def assert_error(result, status, *words):
    """An error answer: the status, a JSON {title, description}, and the words in it."""
    assert result.status_code == status, (result.status_code, result.text)
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert body["title"] and body["description"]
    text = (body["title"] + " " + body["description"]).lower()
    for word in words:
        assert word.lower() in text, (word, body)
    return body


def routed(app):
    """(METHOD, /path/{param}) of every responder a Falcon app really implements: what its
    OpenAPI document must list."""
    out = set()
    for route in falcon.inspect.inspect_routes(app):
        path = re.sub(r"{(\w+)(?::[^}]*)?}", r"{\1}", route.path)
        for method in route.methods:
            if not method.internal:
                out.add((method.method, path))
    return out
