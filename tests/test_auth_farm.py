"""Who may do what, with real processes: a real dispatcher (auth on, its default), real workers
running real commands, the CLIs as subprocesses. Each refusal is checked by its effect: the job
still runs, nothing was run, nothing was redirected."""
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from processes import ROOT, Dispatcher, StandInWorker, http, wait_for
from puli.model.status import CommandStatus as CS, NodeStatus as NS
from test_client_farm import PULI17_SCRIPT
from test_worker_support import WorkerProcess, job, reaches, registered, submit, sweep, the_command


def until(gate):
    """Shell that runs until the test creates the file `gate`."""
    return f"while [ ! -e {gate} ]; do sleep 0.1; done"


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A dispatcher and one real worker registered with the farm-wide worker token."""
    base = tmp_path_factory.mktemp("authfarm")
    dispatcher = Dispatcher(base / "dispatcher")
    worker = None
    try:
        dispatcher.start()
        worker = WorkerProcess(dispatcher.url, base / "worker", token=dispatcher.worker_token()).start()
        wait_for(lambda: registered(dispatcher, worker.name), what="the worker's registration")
        dispatcher.worker_process = worker
        dispatcher.base = base
        yield dispatcher
    finally:
        if worker is not None:
            worker.close()
            sweep(worker.data_dir)
        dispatcher.close()


def cli(farm, module, *args, token=None):
    """`python -m puli.cli.<module>` against the farm, with `token` in PULI_TOKEN (or none)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PULI_SERVER", "PULI_TOKEN")}
    env.update(PULI_SERVER=farm.url, HOME=str(farm.base))       # no user client.yml in the way
    if token:
        env["PULI_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", f"puli.cli.{module}", *map(str, args)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def held_job(farm, token, name):
    """A job of the token's user in a pool without render nodes: it waits as submitted."""
    graph = dict(job(name, "true"), poolName="hold")
    status, body = http("POST", farm.url + "/graphs/", graph, token=token)
    assert status == 201, body
    return body["id"]


def job_status(farm, job_id):
    return farm.get(f"/nodes/{job_id}")[1]["status"]


def test_an_artist_cancels_its_own_jobs_and_not_another_users_and_the_audit_says_who(farm):
    ann, bob = farm.new_token("ann", "artist"), farm.new_token("bob", "artist")
    wes = farm.new_token("wes", "wrangler")
    bobs, anns = held_job(farm, bob, "bobs_shot"), held_job(farm, ann, "anns_shot")
    refused = cli(farm, "puliquery", "cancel", bobs, token=ann)
    assert refused.returncode == 1, refused
    (line,) = refused.stderr.strip().splitlines()
    assert "bob" in line and "own jobs" in line and "403" in line
    assert job_status(farm, bobs) == NS.READY
    assert cli(farm, "puliquery", "cancel", anns, token=ann).returncode == 0
    assert job_status(farm, anns) == NS.CANCELED
    # A wrangler acts on every job, and reads who did what.
    assert cli(farm, "puliquery", "cancel", bobs, token=wes).returncode == 0
    assert job_status(farm, bobs) == NS.CANCELED
    out = cli(farm, "puliquery", "--json", "audit", "--job", bobs, token=wes)
    assert out.returncode == 0, out.stderr
    trail = [(e["user"], e["role"], e["route"], e["status"]) for e in json.loads(out.stdout)]
    assert ("ann", "artist", "/edit/status", 403) in trail
    assert ("wes", "wrangler", "/edit/status", 200) in trail
    assert ("bob", "artist", "/graphs", 201) in trail
    assert all(e[0] != "ann" or e[3] != 200 for e in trail)
    # An artist does not read the audit trail.
    refused = cli(farm, "puliquery", "audit", token=ann)
    assert refused.returncode == 1 and "wrangler" in refused.stderr


def test_a_worker_token_cannot_cancel_a_job_nor_speak_for_another_node(farm):
    wes = farm.new_token("wes", "wrangler")
    bound = farm.new_token("node7:8000", "worker", node="node7:8000")
    job_id = held_job(farm, wes, "not_for_workers")
    for token in (farm.worker_token(), bound):
        status, body = http("PUT", f"{farm.url}/nodes/{job_id}/cancel", {}, token=token)
        assert status == 403 and "artist or above" in body["description"], body
    assert job_status(farm, job_id) == NS.READY
    worker = farm.worker_process
    status, body = http("PUT", f"{farm.url}/rendernodes/{worker.name}/sysinfos", {"cores": 64}, token=bound)
    assert status == 403 and "node7:8000" in body["description"], body
    assert farm.get(f"/rendernodes/{worker.name}")[1]["coresNumber"] != 64


def test_a_forged_registration_of_a_busy_node_is_refused_and_its_command_stays(farm, tmp_path):
    worker, gate = farm.worker_process, tmp_path / "gate"
    cmd_id = the_command(farm, submit(farm, job("busy", f"echo started > {tmp_path}/ran; {until(gate)}")))
    running = reaches(farm, cmd_id, CS.RUNNING)
    assert running["renderNode"] == worker.name
    trap = StandInWorker()          # where a forger would have the node's work sent
    try:
        forged = {"cores": 64, "ram": 1000, "host": "127.0.0.1", "port": trap.port, "commands": []}
        other_token = farm.new_token("intruder", "worker")
        status, body = http("POST", f"{farm.url}/rendernodes/{worker.name}/", forged, token=other_token)
        assert status == 403 and "bound to another token" in body["description"], body
        # The farm-wide token itself cannot move a live node to another address.
        status, body = http("POST", f"{farm.url}/rendernodes/{worker.name}/", forged, token=farm.worker_token())
        assert status == 409 and "cannot move" in body["description"], body
        for host in ("http://127.0.0.1:9/", "127.0.0.1/evil", "a b"):
            status, body = http("POST", f"{farm.url}/rendernodes/{worker.name}/", dict(forged, host=host),
                                token=farm.worker_token())
            assert status in (400, 409) and "host" in body["description"].lower(), (host, body)
        # Still the real worker's, with the same assignment; its stop order goes to the real one.
        still = farm.get(f"/commands/{cmd_id}")[1]
        assert (still["status"], still["renderNode"], still["assignment"]) == \
            (CS.RUNNING, worker.name, running["assignment"])
        status, _ = farm.call("PUT", f"/nodes/{running['job']}/cancel", {})
        assert status == 200
        reaches(farm, cmd_id, CS.CANCELED)
        assert trap.assignments == [] and trap.stops == []
    finally:
        gate.touch()
        trap.close()


def test_a_request_to_a_worker_without_its_dispatchers_secret_runs_nothing(farm, tmp_path):
    worker = farm.worker_process
    forged_file, real_file = tmp_path / "forged", tmp_path / "real"
    order = {"id": 990001, "assignment": 1, "runner": "puli.commandwatcher.runners.CommandLineRunner",
             "arguments": {"args": f"touch {forged_file}"}, "environment": {}, "user": "mallory",
             "taskName": "forged", "taskId": 1, "jobId": 1, "cores": 1, "ramUse": 0}
    for token in (None, "not-the-secret", farm.token, farm.worker_token()):
        status, body = worker.call("POST", "/commands/", order, token=token)
        assert status == 401, (token, status, body)
        assert worker.call("GET", "/commands/", token=token)[0] == 401
    # The same kind of order through the dispatcher runs; by the time it is done, the forged
    # ones would have been too.
    cmd_id = the_command(farm, submit(farm, job("real", f"touch {real_file}")))
    reaches(farm, cmd_id, CS.DONE)
    assert real_file.exists() and not forged_file.exists()


def test_only_json_bodies_change_the_farm_and_no_cors_header_is_sent(farm):
    before = farm.get("/nodes/1")[1]["children"]
    graph = json.dumps(job("from_a_web_page", "true")).encode()
    for content_type, data in (("text/plain", graph), ("application/x-www-form-urlencoded", b"a=b"),
                               ("multipart/form-data; boundary=x", b"--x--")):
        request = urllib.request.Request(farm.url + "/graphs/", data=data, method="POST", headers={
            "Content-Type": content_type, "Authorization": f"Bearer {farm.token}",
            "Origin": "https://evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 415, content_type
        assert "application/json" in json.loads(refused.value.read())["description"]
        assert not any(h.lower().startswith("access-control-") for h in refused.value.headers)
    assert farm.get("/nodes/1")[1]["children"] == before
    request = urllib.request.Request(farm.url + "/graphs/", method="OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    try:
        response = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        response = exc
    assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_the_first_admin_token_is_the_owners_alone_and_never_logged(farm):
    path = os.path.join(farm.data_dir, "admin.token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    log = open(farm.log_path).read()
    assert path in log and farm.token not in log


def test_tokens_made_by_the_cli_count_at_once_on_a_running_dispatcher(farm):
    made = subprocess.run([*farm.args, "tokens", "create", "--user", "carl", "--role", "viewer",
                           "--expires", "1d"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("puli_") and "\n" not in token and made.stderr == ""
    assert farm.get("/nodes/1", token=token)[0] == 200
    assert http("PUT", f"{farm.url}/nodes/1/paused", {"paused": True}, token=token)[0] == 403
    listed = subprocess.run([*farm.args, "tokens", "list"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert listed.returncode == 0 and token not in listed.stdout
    (row,) = [line for line in listed.stdout.splitlines() if " carl " in f" {line} "]
    assert "viewer" in row
    # Revoked through the API: refused at the next request.
    carl = next(t for t in farm.get("/tokens")[1]["tokens"] if t["user"] == "carl")
    assert farm.call("DELETE", f"/tokens/{carl['id']}")[0] == 200
    status, body = farm.get("/nodes/1", token=token)
    assert status == 401 and "revoked" in body["description"]


def test_a_puli_17_job_script_says_in_one_line_how_to_pass_a_token(farm, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(PULI17_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PULI_TOKEN"}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, str(script), "127.0.0.1", str(farm.port), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert result.returncode == 1 and result.stderr == "", result
    (line,) = result.stdout.strip().splitlines()
    assert "needs a token" in line and "PULI_TOKEN" in line
    result = subprocess.run([sys.executable, str(script), "127.0.0.1", str(farm.port), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env=dict(env, PULI_TOKEN=farm.new_token("ann", "artist")))
    assert result.returncode == 0, result
    job_id = int(result.stdout.strip().rsplit("/", 1)[1])
    assert farm.get(f"/nodes/{job_id}")[1]["user"] == "ann"


# -- TLS between the dispatcher and its workers ------------------------------------------------------
def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def farm_ca(directory):
    """A CA and a certificate of it for 127.0.0.1, as the appliance's farm CA makes them."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Test farm CA", cwd=directory)
    openssl("req", *key, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "node.pem", "-days", "2", "-extfile", "san.ext", cwd=directory)
    os.chmod(directory / "node.key", 0o600)
    return directory / "ca.pem", directory / "node.pem", directory / "node.key"


def test_a_worker_serving_tls_with_a_farm_certificate_runs_a_job_and_serves_its_log(tmp_path):
    ca, cert, key = farm_ca(tmp_path)
    dispatcher = Dispatcher(tmp_path / "dispatcher", extra=("--set", f"worker_ca_file={ca}"))
    worker = None
    try:
        dispatcher.start()
        worker = WorkerProcess(dispatcher.url, tmp_path / "worker", token=dispatcher.worker_token(),
                               tls=(cert, key, ca)).start()
        wait_for(lambda: registered(dispatcher, worker.name), what="the TLS worker's registration")
        cmd_id = the_command(dispatcher, submit(dispatcher, job("over_tls", "echo rendered over TLS")))
        reaches(dispatcher, cmd_id, CS.DONE)
        status, text = dispatcher_text(dispatcher, f"/commands/{cmd_id}/log")
        assert status == 200 and "rendered over TLS" in text
        assert worker.get("/sysinfos/")[0] == 200       # as its dispatcher, over TLS
        # Plain HTTP gets nothing from the worker's port.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/sysinfos/", timeout=10)
    finally:
        if worker is not None:
            worker.close()
            sweep(worker.data_dir)
        dispatcher.close()


def dispatcher_text(dispatcher, path):
    request = urllib.request.Request(dispatcher.url + path, headers={"Authorization": f"Bearer {dispatcher.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
