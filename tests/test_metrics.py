"""GET /metrics on a real dispatcher and a real worker: the Prometheus text format, with the
series a studio's dashboards read, behind the tokens that guard them."""
import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processes import wait_for
from puli.commandwatcher import isolation
from puli.model.status import CommandStatus as CS
from test_api_support import Api, task
from test_worker_support import farm, job, reaches, ready_worker, submit, the_command  # noqa: F401

CGROUP_MODE = isolation.detect().mode


def scrape(url, token=None):
    """(status, content type, text) of a GET /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text):
    """{(sample name, frozen labels): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


def waiting_command(flag):
    """A shell command that runs until `flag` exists: the test decides when it ends."""
    return f"while [ ! -e {flag} ]; do sleep 0.05; done"


def test_the_dispatcher_serves_its_farm_and_its_own_work_to_a_viewer(farm, tmp_path):  # noqa: F811
    ready_worker(farm)
    flag = tmp_path / "go"
    job_id = submit(farm, job("metrics", waiting_command(flag)))
    cmd_id = the_command(farm, job_id)
    reaches(farm, cmd_id, CS.RUNNING)
    flag.touch()
    reaches(farm, cmd_id, CS.DONE)
    viewer = farm.new_token("vic", "viewer")

    def done_counted():
        status, content_type, text = scrape(farm.url, viewer)
        assert status == 200 and content_type.startswith("text/plain"), (status, text)
        found = samples(text)
        return found if value(found, "puli_commands", status="DONE") == 1 else None
    found = wait_for(done_counted, what="the DONE command in puli_commands")

    assert value(found, "puli_jobs", status="DONE") == 1
    assert value(found, "puli_http_requests_total", route="/graphs", method="POST", status="201") == 1
    assert value(found, "puli_dispatch_pass_seconds_count") > 0
    assert value(found, "puli_dispatch_assignments_total") >= 1
    assert value(found, "puli_assignment_latency_seconds_count") == 1
    assert value(found, "puli_command_ends_total", status="DONE") == 1
    assert value(found, "puli_deliveries_total", kind="assign", outcome="accepted") == 1
    assert sum(v for (name, labels), v in found.items() if name == "puli_render_nodes") == 1
    assert value(found, "puli_flushes_total") > 0 and value(found, "puli_flush_seconds_count") > 0
    assert value(found, "puli_flush_lag_seconds_count") > 0
    assert value(found, "puli_database_errors_total") == 0
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_cpu_seconds_total") > 0


def test_the_dispatchers_metrics_need_a_token(farm):  # noqa: F811
    status, content_type, text = scrape(farm.url)
    assert status == 401 and "viewer" in text and "Authorization: Bearer" in text
    assert scrape(farm.url, "puli_not-a-token")[0] == 401


def test_requests_are_counted_by_route_template_and_404s_as_unrouted():
    api = Api()
    job = api.submit(task("t"))
    api.get(f"/nodes/{job}")
    api.get("/nodes/999999")
    api.get("/no/such/route")
    result = api.get("/metrics", role="viewer")
    assert result.status_code == 200
    found = samples(result.text)
    assert value(found, "puli_http_requests_total", route="/nodes/{id}", method="GET", status="200") == 1
    assert value(found, "puli_http_requests_total", route="/nodes/{id}", method="GET", status="404") == 1
    assert value(found, "puli_http_requests_total", route="unrouted", method="GET", status="404") == 1
    assert value(found, "puli_http_request_seconds_count", route="/nodes/{id}", method="GET") == 2


def test_a_node_idle_gap_is_observed_at_its_next_assignment():
    api = Api()
    api.register("a:8000", cores=1)
    first = api.submit(task("first", frames=(1, 1), maxNbCores=1))
    ((cmd_id, (rn, assignment)),) = api.dispatch().items()
    api.clock += 1
    api.report(rn, cmd_id, assignment, CS.RUNNING)
    api.clock += 2
    api.report(rn, cmd_id, assignment, CS.DONE)
    api.clock += 5
    api.submit(task("second", frames=(1, 1), maxNbCores=1))
    assert len(api.dispatch()) == 1
    found = samples(api.get("/metrics").text)
    assert value(found, "puli_node_idle_seconds_count") == 1
    assert value(found, "puli_node_idle_seconds_sum") == 5
    assert value(found, "puli_assignment_latency_seconds_count") == 1
    assert value(found, "puli_assignment_latency_seconds_sum") == 1
    assert api.node(first)["statusName"] == "DONE"


def metrics_token_file(path, token="scrape-me-0123456789"):
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return token


@pytest.mark.parametrize("mode", ["pgroup", pytest.param(CGROUP_MODE, marks=pytest.mark.skipif(
    CGROUP_MODE == "pgroup", reason="no writable cgroup hierarchy here"))])
def test_the_worker_serves_its_commands_to_the_metrics_token(farm, tmp_path, mode):  # noqa: F811
    token = metrics_token_file(tmp_path / "metrics.token")
    worker = ready_worker(farm, extra=("--set", f"metrics_token_file={tmp_path / 'metrics.token'}",
                                       "--set", f"isolation={'pgroup' if mode == 'pgroup' else 'auto'}"))
    flag = tmp_path / "go"
    cmd_id = the_command(farm, submit(farm, job("watched", waiting_command(flag))))
    reaches(farm, cmd_id, CS.RUNNING)       # (its watcher started: the command may not be yet)

    def scraped():
        status, content_type, text = scrape(worker.url, token)
        assert status == 200 and content_type.startswith("text/plain"), text
        found = samples(text)
        # Once its command has run a moment: memory in its cgroup, where it has one.
        return found if mode == "pgroup" or value(found, "puli_worker_command_memory_bytes", command=str(cmd_id)) else None
    found = wait_for(scraped, what="the command's figures")
    assert value(found, "puli_worker_running_commands") == 1
    assert value(found, "puli_worker_registered") == 1
    assert value(found, "process_resident_memory_bytes") > 0
    memory = value(found, "puli_worker_command_memory_bytes", command=str(cmd_id))
    cpu = value(found, "puli_worker_command_cpu_seconds_total", command=str(cmd_id))
    if mode == "pgroup":
        assert memory is None and cpu is None          # no cgroup, no figures
    else:
        assert memory > 0 and cpu is not None and cpu >= 0
    wait_for(lambda: value(samples(scrape(worker.url, token)[2]), "puli_worker_heartbeats_total", outcome="ok"),
             what="a heartbeat counted")

    assert scrape(worker.url)[0] == 401
    status, _, text = scrape(worker.url, "not-the-token")
    assert status == 401 and "metrics_token_file" in text
    assert scrape(worker.url, worker.secret())[0] == 200     # its dispatcher may read them too
    flag.touch()
    reaches(farm, cmd_id, CS.DONE)


def test_a_worker_without_a_metrics_token_refuses_its_metrics(farm):  # noqa: F811
    worker = ready_worker(farm)
    status, _, text = scrape(worker.url, "anything")
    assert status == 403 and "metrics_token_file" in text
    assert scrape(worker.url)[0] == 403
