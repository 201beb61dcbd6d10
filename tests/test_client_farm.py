"""The job-script API against a real dispatcher and a real worker running real commands."""
import json

import pytest

from puli.client import (DONE, ERROR, Graph, GraphSubmissionError, RequestError, Server, ServerUnreachable,
                         SubmissionUnreachable)
from processes import wait_for
from test_client_support import commands, farm, finished, node  # noqa: F401


def test_a_graph_with_dependencies_runs_to_done_and_its_outputs_exist(farm, tmp_path):
    out = tmp_path / "out"
    graph = Graph("client-demo", user="ann", maxRN=2, tags={"prod": "p1"})
    graph.meta["origin"] = "test"
    renders = graph.addNewTaskGroup("renders", environment={"SCENE": "s010"})
    renders.addNewTask("frames", {
        "cmd": f"mkdir -p {out} && echo \"frame %%MI_FRAME%% of $SCENE\" > {out}/frame_%%MI_FRAME%%.txt",
        "start": 1, "end": 4, "packetSize": 2}, minNbCores=1, maxNbCores=1)
    assemble = graph.addNewTask("assemble", {"cmd": f"cat {out}/frame_*.txt > {out}/all.txt"})
    assemble.dependsOn(renders, [DONE])          # on the group: evaluated by the dispatcher
    location, body = graph.submit(farm.url)
    assert location == f"{farm.url}/nodes/{body['id']}" and graph.id == body["id"]
    assert body["commands"] == 3 and body["name"] == "client-demo"
    job = finished(farm, body["id"])
    assert job["statusName"] == "DONE", commands(farm, body["id"])
    assert job["user"] == "ann" and job["tags"] == {"prod": "p1"} and job["maxRN"] == 2
    assert (out / "all.txt").read_text().splitlines() == [f"frame {i} of s010" for i in range(1, 5)]
    by_name = {c["description"]: c for c in commands(farm, body["id"])}
    assert set(by_name) == {"frames_1_2", "frames_3_4", "assemble"}
    assert by_name["assemble"]["startTime"] >= max(by_name["frames_1_2"]["endTime"], by_name["frames_3_4"]["endTime"])


def test_a_dependency_on_a_node_of_another_job(farm, tmp_path):
    first = Graph("first")
    first.addNewTask("t", {"cmd": f"touch {tmp_path}/first"})
    _, body = first.submit(farm.url)
    second = Graph("second")
    second.addNewTask("t", {"cmd": f"test -e {tmp_path}/first"}).dependsOn(body["id"])
    _, body2 = second.submit(farm.url)
    assert node(farm, body2["nodes"][1])["dependencies"] == [[body["id"], [DONE]]]
    assert finished(farm, body2["id"])["statusName"] == "DONE"


def test_a_requirement_picks_the_node_with_the_software(farm):
    graph = Graph("needs-blender")
    graph.addNewTask("t", {"cmd": "true"}, requirements={"softs": ["blender"]})
    _, body = graph.submit(farm.url)
    assert finished(farm, body["id"])["statusName"] == "DONE"


def test_the_server_refusal_is_raised_with_its_message_and_nothing_is_created(farm):
    before = Server(farm.url).get("/nodes/1")["children"]
    graph = Graph("malformed")
    graph.addNewTask("t", {"cmd": "true"}, minNbCores=4, maxNbCores=2)
    with pytest.raises(GraphSubmissionError) as caught:
        graph.submit(farm.url)
    assert caught.value.status == 400
    assert "maxNbCores (2) is below minNbCores (4)" in str(caught.value)
    assert caught.value.title == "Invalid graph"
    assert Server(farm.url).get("/nodes/1")["children"] == before


def test_an_unreachable_dispatcher_is_a_submission_error_with_a_clear_message():
    graph = Graph("nowhere")
    graph.addNewTask("t", {"cmd": "true"})
    with pytest.raises(GraphSubmissionError) as caught:
        graph.submit("127.0.0.1", 9)
    assert isinstance(caught.value, SubmissionUnreachable) and isinstance(caught.value, ServerUnreachable)
    assert str(caught.value) == "cannot reach the dispatcher at http://127.0.0.1:9: connection refused"


def test_save_then_load_and_submit(farm, tmp_path):
    graph = Graph("saved")
    a = graph.addNewTask("a", {"cmd": "true", "start": 1, "end": 3})
    b = graph.addNewTask("b", {"cmd": "true"})
    b.dependsOn(a)
    path = graph.save(tmp_path / "graph.json")
    location, body = Graph.loadAndSubmit(str(path), "127.0.0.1", farm.port)
    assert location.endswith(f"/nodes/{body['id']}") and body["commands"] == 4
    assert finished(farm, body["id"])["statusName"] == "DONE"
    # A file edited into a cycle is refused before it is sent.
    data = json.loads(path.read_text())
    data["tasks"][1]["dependencies"] = [[2, [DONE]]]
    path.write_text(json.dumps(data))
    from puli.client import DependencyCycleError
    with pytest.raises(DependencyCycleError):
        Graph.loadAndSubmit(str(path), farm.url)


def test_a_failing_command_retried_then_error(farm):
    graph = Graph("retried")
    graph.addNewTask("t", {"cmd": "exit 4"}, maxAttempt=2)
    _, body = graph.submit(farm.url)
    # The job shows ERROR between the attempts too: wait for the second one to end.
    (cmd,) = wait_for(lambda: [c for c in commands(farm, body["id"]) if c["attempt"] == 2 and c["status"] == 7],
                      60, what="the second attempt to fail")
    assert "exit code 4" in cmd["message"]
    assert node(farm, body["id"])["status"] == ERROR


def test_the_http_client_reports_errors_with_the_servers_words(farm):
    server = Server(farm.url)
    assert server.get("/system")["ready"] is True
    with pytest.raises(RequestError) as caught:
        server.get("/nodes/999999")
    assert caught.value.status == 404 and caught.value.title == "Not found"
    assert str(caught.value).startswith("404 Not found: ")
    text, headers = server.get_text("/openapi.json")
    assert json.loads(text)["openapi"].startswith("3") and "json" in headers["Content-Type"]
    # list values repeat the key
    assert isinstance(server.get("/query", {"constraint_user": ["nobody", "ann"]}), dict)


PULI17_SCRIPT = '''
from puli.client import Graph, Task, TaskGroup, DONE, GraphSubmissionError   # was: from puliclient import ...
import sys

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
render = Task("render", {"cmd": "echo %%MI_FRAME%% > " + out + "/f%%MI_FRAME%%", "start": 1, "end": 4, "packetSize": 2},
              runner="puliclient.jobs.DefaultCommandRunner", decomposer="puliclient.jobs.DefaultTaskDecomposer",
              maxNbCores=1)
post = TaskGroup("post")
post.addNewTask("list", {"args": "ls " + out + " > " + out + "/list"},
                runner="puliclient.contrib.commandlinerunner.CommandLineRunner")
graph = Graph("puli17", user="ann", poolName="default")
graph.add(render)
graph.add(post)
graph.addEdges([(render, post, [DONE])])
try:
    location, body = graph.submit(host, port)
except GraphSubmissionError as e:
    print("refused", e)
    sys.exit(1)
print(location)
'''


def test_a_puli_17_script_runs_with_only_its_import_changed(farm, tmp_path):
    import subprocess
    import sys
    from processes import ROOT
    script = tmp_path / "job.py"
    script.write_text(PULI17_SCRIPT)
    result = subprocess.run([sys.executable, str(script), "127.0.0.1", str(farm.port), str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip().rsplit("/", 1)[1])
    assert finished(farm, job_id)["statusName"] == "DONE", commands(farm, job_id)
    assert (tmp_path / "list").read_text().split() == ["f1", "f2", "f3", "f4", "job.py", "list"]
