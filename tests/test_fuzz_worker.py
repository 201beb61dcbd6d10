"""The worker's API fuzzed like the dispatcher's: schemathesis against a real worker process on
loopback, every operation of its OpenAPI document, then the links between them.

No answer may be a 5xx, every answer must be one the document allows (status, content type,
headers, body), a request the document calls invalid must be refused with a 4xx, and a route
must refuse a request without the secret, or with another one. The worker may answer 500
"Cannot start the command" when a watcher cannot be spawned: that is the host failing, not the
input, and on this machine (process groups, a writable data directory) every assignment the
worker accepts is spawned. So a 500 here is a failure too: an input reached spawn() that the
API should have refused with a 400.

What the fuzzer sends may start commands: each assignment is made to run HARMLESS and nothing
else just before it is sent (make_harmless), at most two run at once (max_commands), and
everything is stopped, and checked gone, at the end.

The operations are fuzzed from the document as this module imports it: schemathesis's pytest
integration makes its tests when pytest collects them, before any worker runs, and its loader
from a fixture (schemathesis.pytest.from_fixture) fails on pytest 9.2. A test checks that the
worker serves that very document; the stateful test fetches it from the worker, with its secret.
"""
import collections
import re
import signal

import hypothesis
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck

from processes import Dispatcher, wait_for
from puli.commandwatcher.runner import BUILTIN
from puli.worker import api, openapi
from test_api_support import routed
from test_worker_support import WorkerProcess, registered, sweep, watchers_of

# The one command the fuzz may start: it ends at once and touches nothing.
HARMLESS = "true"
DEFAULT_RUNNER = BUILTIN + "DefaultCommandRunner"
# Killfile orders the fuzz must not give: "-2" and "-3" make the worker exit (systemd would
# start it again; here nobody does), and "-1" empties the killfile *after* killing, which may
# land after our reset and leave the node paused for the rest of the run.
KILL_OR_RESTART = {"-1", "-2", "-3"}
EXAMPLES = 25                   # per operation and mode, on top of the coverage phase's cases
SEED = 20240613
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
          "ignored_auth")
NO_HEALTH_CHECKS = list(HealthCheck)    # a real process answers slowly; fixtures are shared on purpose


def config():
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "request-timeout": 10,
        # The secret is added to each call (it exists once the worker has registered); the
        # ignored_auth check sends requests without it, and with a wrong one, itself.
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none",
                       "with-security-parameters": False},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


# -- the document against the app ----------------------------------------------------------------

def test_the_document_lists_every_route_of_the_worker_and_only_those():
    served = routed(api.create_app(worker=None))
    documented = openapi.operations()
    assert served - documented == set(), "routes missing from the worker's OpenAPI document"
    assert documented - served == set(), "documented routes the worker does not serve"
    assert ("POST", "/commands") in served and len(served) >= 9


def test_the_document_is_consistent():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.0")
    text = str(doc).replace("'", '"')
    assert set(re.findall(r'"#/components/schemas/(\w+)"', text)) <= set(doc["components"]["schemas"])
    ids = [o["operationId"] for methods in doc["paths"].values() for o in methods.values()]
    assert len(ids) == len(set(ids))
    for path, methods in doc["paths"].items():
        for operation in methods.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"]
            for answer in operation["responses"].values():
                assert {link["operationId"] for link in answer.get("links", {}).values()} <= set(ids)


# -- what the fuzz may send ----------------------------------------------------------------------

def harmless_assignment(body):
    """The assignment as the fuzzer made it, but running HARMLESS whatever it said: its runner's
    arguments replaced, a runner it names replaced by the default one, its environment's names
    kept from any variable that means something (PATH, LD_PRELOAD...). Only what cannot start
    anything is left as generated: a non-object body, a runner that is not a string."""
    if not isinstance(body, dict):
        return body
    body = dict(body, arguments={"cmd": HARMLESS})
    if isinstance(body.get("runner"), str):
        body["runner"] = DEFAULT_RUNNER
    if isinstance(body.get("environment"), dict):
        body["environment"] = {f"FUZZ_{name}": value for name, value in body["environment"].items()}
    body.pop("parser", None)
    return body


def is_harmless(body):
    if not isinstance(body, dict):
        return True                     # refused whole: the worker needs an object
    runner, environment = body.get("runner"), body.get("environment", {})
    return body.get("arguments") == {"cmd": HARMLESS} and "parser" not in body and \
        (not isinstance(runner, str) or runner == DEFAULT_RUNNER) and \
        (not isinstance(environment, dict) or all(name.startswith("FUZZ_") for name in environment))


def pause_order(body):
    """What POST /pause would write to the killfile (api.Pause), None when it refuses it."""
    content = body.get("content", "") if isinstance(body, dict) else None
    if isinstance(content, bool) or not isinstance(content, (str, int)):
        return None
    return str(content).strip()


def targets(case, method, path):
    return case.operation.method.upper() == method and case.operation.path == path


def make_harmless(case):
    """Just before the call, whatever phase made the case (the coverage phase's explicit cases
    skip the map_* hooks): its assignment runs HARMLESS, its killfile order is a plain pause.
    Checked again, so that a bug here cannot start anything else."""
    if targets(case, "POST", "/commands"):
        case.body = harmless_assignment(case.body)
        assert is_harmless(case.body), f"the fuzz was about to start {case.body!r}"
    if targets(case, "POST", "/pause"):
        if pause_order(case.body) in KILL_OR_RESTART:
            case.body = dict(case.body, content="paused by the fuzz")
        assert pause_order(case.body) not in KILL_OR_RESTART, f"the fuzz was about to send {case.body!r}"


def after(worker, case, response, statuses):
    statuses[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1
    if targets(case, "POST", "/pause") and response.status_code == 202:
        # The next assignments find the node taking work again.
        assert worker.call("POST", "/pause", {"content": "0"})[0] == 202


def started(worker, command_id):
    runs = {run["id"]: run for run in worker.get("/commands")[1]["commands"]}
    return command_id not in runs or runs[command_id]["status"] is not None


# -- the worker fuzzed ---------------------------------------------------------------------------

def left_behind(data_dir):
    """Watchers and commands of this data directory still alive (commands carry PULI_LOG)."""
    found = list(watchers_of(data_dir))
    for process in psutil.process_iter():
        try:
            if process.environ().get("PULI_LOG", "").startswith(str(data_dir)) and process not in found:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_everything(worker):
    """Every run stopped through the API and gone, then the worker; nothing of it may live on,
    even when the fuzz failed (then whatever is left is killed, and named)."""
    try:
        if worker.proc is not None and worker.proc.poll() is None:
            for run in worker.get("/commands")[1]["commands"]:
                worker.call("DELETE", f"/commands/{run['id']}")
            wait_for(lambda: worker.get("/commands")[1]["commands"] == [], 30,
                     what="the fuzz's commands to be stopped")
            # Twice: the second SIGTERM skips the flush of reports no dispatcher will take.
            worker.proc.send_signal(signal.SIGTERM)
            worker.terminate()
        # A watcher may still be exiting after its final state.
        wait_for(lambda: not left_behind(worker.data_dir), 15, what="the fuzz's processes to end")
    finally:
        left = left_behind(worker.data_dir)
        worker.close()
        sweep(worker.data_dir)
    assert left == [], f"the fuzz left processes running: {left}"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One registered worker for the module's fuzz (each boot costs seconds), running at most
    two commands at once. Its dispatcher is stopped once it has registered: it would stop at
    their first report, as it must, the commands it never assigned, and the stops and logs
    would find no run. The worker keeps its secret and its runs while the dispatcher is away."""
    root = tmp_path_factory.mktemp("fuzz")
    dispatcher = Dispatcher(root / "dispatcher")
    worker = None
    try:
        dispatcher.start()
        worker = WorkerProcess(dispatcher.url, root / "worker", token=dispatcher.worker_token(),
                               extra=("--set", "max_commands=2")).start()
        wait_for(lambda: registered(dispatcher, worker.name), what="registration")
        dispatcher.close()
        worker.first_secret = worker.secret()
        yield worker
        # Another registration would have made every later answer a 401, and the fuzz moot.
        assert worker.secret() == worker.first_secret, "the worker registered again during the fuzz"
    finally:
        try:
            if worker is not None:
                stop_everything(worker)
        finally:
            dispatcher.close()


# What a fuzz of one operation cannot be asked to reach: a run or a log of an id it made up.
NEEDS_A_RUN = {"DELETE /commands/{id}", "GET /commands/{id}/log"}
SUCCESS = {f"{e['method'].upper()} {e['path']}": e["ok"] for e in openapi.OPERATIONS}


@pytest.fixture
def reach(fuzzed):
    """(METHOD path) -> Counter of statuses; after the test, each operation it called must
    have had its documented success at least once (an OPTIONS probe's 200 does not count): a
    fuzz whose every request is refused says nothing."""
    statuses = collections.defaultdict(collections.Counter)
    yield statuses
    print(f"\nworker fuzz: {sum(map(sum, (c.values() for c in statuses.values())))} requests: "
          f"{ {label: dict(counts) for label, counts in statuses.items()} }")
    for label, counts in statuses.items():
        assert label in NEEDS_A_RUN or counts[SUCCESS[label]], f"{label} never succeeded: {dict(counts)}"


schema = schemathesis.openapi.from_dict(openapi.document(), config=config())


@hypothesis.settings(deadline=None, suppress_health_check=NO_HEALTH_CHECKS)
@schema.parametrize()
def test_every_operation_answers_as_documented_and_never_5xx(case, fuzzed, reach):
    make_harmless(case)
    response = case.call_and_validate(base_url=fuzzed.url,
                                      headers={"Authorization": f"Bearer {fuzzed.secret()}"})
    after(fuzzed, case, response, reach)


def test_the_worker_serves_the_fuzzed_document_to_its_dispatcher_only(fuzzed):
    assert fuzzed.get("/openapi.json") == (200, openapi.document())
    status, body = fuzzed.call("GET", "/openapi.json", token=None)
    assert status == 401 and body["description"]


def test_links_lead_from_an_assignment_to_its_stop_and_its_log(fuzzed, reach):
    """Stateful: POST /commands, then DELETE /commands/{id}?assignment= and GET
    /commands/{id}/log with the id and assignment the worker answered (the document's links)."""
    auth = {"Authorization": f"Bearer {fuzzed.secret()}"}
    served = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json", config=config(), headers=auth,
                                           timeout=10)

    class Scenario(served.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": auth}

        def before_call(self, case):
            make_harmless(case)

        def after_call(self, response, case):
            after(fuzzed, case, response, reach)
            if targets(case, "POST", "/commands") and response.status_code == 202:
                # Its log exists once its watcher has written a state: the link to it then
                # finds it (right after the 202 it may not yet: a 404 the stateless fuzz sees).
                wait_for(lambda: started(fuzzed, response.json()["id"]), what="the run to start")

    Scenario.run(settings=hypothesis.settings(
        max_examples=EXAMPLES, stateful_step_count=6, derandomize=True, database=None, deadline=None,
        suppress_health_check=NO_HEALTH_CHECKS))
    assert reach["DELETE /commands/{id}"][202], "no stop order ever named a run the worker held"
    assert reach["GET /commands/{id}/log"][200], "no log was ever read"
