"""Schemathesis against a real dispatcher on loopback: every operation of its /openapi.json.

Each operation gets EXAMPLES generated requests (valid and invalid ones, with a fixed seed so a
CI run is reproducible), then the document's links are walked as a state machine (submit a job,
then act on it; make a token, then revoke it...). Every answer must be documented: its status,
content type and schema; and none may be a 5xx. The one 5xx allowed is the log route's 502: it
reads the log from the render node, and the farm's render nodes here (a stand-in, and whatever
the fuzz registers) serve no logs.

The farm starts with jobs, commands running on a stand-in worker, a pool and a license, so that
small ids and names reach real objects. Requests go as an admin, or as a worker on the workers'
routes, never without a token (who may do what is test_auth's). No operation is left out: a
fuzzed DELETE /tokens/{id} may revoke the fuzz's own token, and a spare admin token then makes
its successor, so that later requests are still answered rather than all 401; the other
destructive ones (cancel, archive, forget a render node) leave a farm that still answers.

The schema is the module's document (puli.dispatcher.openapi), checked to be the one the
dispatcher serves: schemathesis' fixture-loaded schemas do not run under pytest 9.2.
"""
import json

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from processes import Dispatcher, StandInWorker, http, is_worker_route, wait_for
from puli.dispatcher import openapi

EXAMPLES = 30               # per operation in the fuzzing phase (the examples and coverage phases add theirs)
SEED = 13
STATEFUL_SCENARIOS = 100
STATEFUL_STEPS = 6
# What every answer is held to (schemathesis' others, such as refusing any value the schema
# excludes, would flag Puli's lenient 1.7 forms: "1,2,3" for a list, 0/1 for a boolean).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES, "database": "none", "with-security-parameters": False},
})
schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)
LOG_ROUTE = "/commands/{id}/log"


class Tokens:
    """The tokens the fuzz calls with, and how many requests it made."""

    def __init__(self, dispatcher):
        self.url = dispatcher.url
        self.admin = [self._make(dispatcher.token, "admin") for _ in range(2)]
        self.worker = self._make(dispatcher.token, "worker")
        self.requests = 0

    def _make(self, admin, role):
        status, body = http("POST", f"{self.url}/tokens", {"user": f"fuzz-{role}", "role": role}, token=admin)
        assert status == 201, body
        return body["id"], body["token"]

    def headers(self, case):
        self.requests += 1
        _, token = self.worker if is_worker_route(case.method.upper(), case.formatted_path) else self.admin[0]
        return {"Authorization": f"Bearer {token}"}

    def after(self, case, response):
        """Replace the tokens of ours a DELETE /tokens/{id} revoked."""
        if case.method.upper() != "DELETE" or case.operation.path != "/tokens/{id}" or response.status_code != 200:
            return
        revoked = set(response.json()["revoked"])
        live = [t for t in self.admin if t[0] not in revoked]
        assert live, "one DELETE revoked both admin tokens"
        self.admin = live + [self._make(live[0][1], "admin") for _ in range(2 - len(live))]
        if self.worker[0] in revoked:
            self.worker = self._make(live[0][1], "worker")


def _seed(dispatcher, worker):
    """A farm with something behind small ids: three jobs, commands running, a pool, a license."""
    def ok(status_body, *codes):
        status, body = status_body
        assert status in codes, body
        return body

    ok(dispatcher.call("PUT", "/licenses/lic", {"maxlic": 2}), 200)
    ok(dispatcher.call("POST", "/pools/fuzz"), 201)
    ok(worker.register(dispatcher, cores=4), 200, 201)
    frames = {"cmd": "echo %%MI_FRAME%%", "start": 1, "end": 4}
    ok(dispatcher.call("POST", "/graphs/", {"name": "one", "user": "ann", "root": 0, "tasks": [
        {"type": "Task", "name": "one", "maxNbCores": 1, "arguments": frames}]}), 201)
    ok(dispatcher.call("POST", "/graphs/", {"name": "group", "user": "bob", "root": 0, "tasks": [
        {"type": "TaskGroup", "name": "group", "tasks": [1, 2]},
        {"type": "Task", "name": "render", "lic": "lic", "maxNbCores": 1, "arguments": frames},
        {"type": "Task", "name": "comp", "dependencies": [[1, [3]]], "arguments": {"cmd": "true"}}]}), 201)
    ok(dispatcher.call("POST", "/graphs/", {"name": "held", "poolName": "fuzz", "root": 0, "tasks": [
        {"type": "Task", "name": "held", "timer": 4_000_000_000, "arguments": {"cmd": "true", "framesList": "1,3-5"}}]}), 201)
    wait_for(lambda: len(worker.assignments) >= 2, what="commands assigned to the stand-in worker")
    first = worker.assignments[0]
    ok(dispatcher.call("PUT", f"/rendernodes/{worker.name}/commands/{first['id']}",
                       {"assignment": first["assignment"], "status": 5, "completion": 1}), 200)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    dispatcher = Dispatcher(tmp_path_factory.mktemp("fuzz"))
    worker = StandInWorker()
    try:
        dispatcher.start()
        served = http("GET", f"{dispatcher.url}/openapi.json")[1]
        assert served == json.loads(json.dumps(openapi.document())), "the fuzz must use the served document"
        _seed(dispatcher, worker)
        tokens = Tokens(dispatcher)
        yield dispatcher, tokens
        print(f"\nfuzz: {tokens.requests} requests")
    finally:
        dispatcher.close()
        worker.close()


def _validate(case, response, **kwargs):
    checks = CHECKS
    if case.operation.path == LOG_ROUTE and response.status_code == 502:
        assert response.json()["title"].startswith("The worker"), response.text
        checks = [c for c in CHECKS if c is not not_a_server_error]
    case.validate_response(response, checks=checks, transport_kwargs=kwargs)


@schema.parametrize()
def test_no_operation_answers_5xx_or_off_its_document(case, farm):
    dispatcher, tokens = farm
    response = case.call(base_url=dispatcher.url, headers=tokens.headers(case))
    tokens.after(case, response)
    _validate(case, response, base_url=dispatcher.url)


def test_linked_operations_in_sequence_answer_no_5xx_nor_off_the_document(farm):
    dispatcher, tokens = farm
    scenarios, failures = [], []

    class Fuzz(schema.as_state_machine()):
        def setup(self):
            scenarios.append(tokens.requests)

        def get_call_kwargs(self, case):
            return {"base_url": dispatcher.url, "headers": tokens.headers(case)}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tokens.after(case, response)
            try:
                _validate(case, response, **kwargs)
            except Exception as exc:
                failures.append(exc)    # raised at the end, whatever Hypothesis's replay makes of it
                raise

    assert Fuzz.schema.statistic.transitions.total > 20       # the document's links
    runs = 0
    while len(scenarios) < STATEFUL_SCENARIOS:
        runs += 1
        assert runs <= 10, f"{len(scenarios)} scenarios in {runs - 1} runs"
        try:
            hypothesis.seed(SEED + runs)(Fuzz).run(settings=hypothesis.settings(
                max_examples=STATEFUL_SCENARIOS - len(scenarios), stateful_step_count=STATEFUL_STEPS,
                phases=[hypothesis.Phase.generate], database=None, deadline=None,
                suppress_health_check=list(hypothesis.HealthCheck)))
        except hypothesis.errors.FlakyStrategyDefinition:
            # A step answered otherwise than when Hypothesis first took that path (the farm
            # changed since: a pool made then exists now): its data tree cannot go on.
            if failures:
                raise failures[0] from None
    print(f"\nstateful: {len(scenarios)} scenarios in {runs} runs, {tokens.requests - scenarios[0]} requests")
    if failures:
        raise failures[0]


def test_a_request_line_past_the_limit_is_a_json_414(farm):
    dispatcher, _ = farm
    status, body = http("GET", f"{dispatcher.url}/nodes/1/children?user={'u' * 9000}", token=dispatcher.token)
    assert status == 414
    assert body["title"] == "URI Too Long" and "Request Line is too large" in body["description"]
