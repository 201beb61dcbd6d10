"""The job-script API without a farm: the wire format it builds, decomposition, cycles refused
before anything is sent, save(), and where the client finds the dispatcher."""
import json
import socket

import pytest

import puli.client as client
from puli.client import (CANCELED, DONE, ERROR, Command, DependencyCycleError, Graph, GraphConnectionError,
                         GraphError, Task, TaskGroup)
from puli.client.server import PuliError, Server, normalize_url, server_url
from puli.model.graph import parse_graph


def shot():
    """render (frames 1..10 by 4) -> comp, inside a group; a second group waits for the first."""
    graph = Graph("shot010", user="ann", poolName="farm", maxRN=3, tags={"prod": "p1"})
    group = graph.addNewTaskGroup("lighting", arguments={"scene": "s.blend"}, environment={"A": "1"})
    render = group.addNewTask("render", {"cmd": "render %%MI_FRAME%%", "start": 1, "end": 10, "packetSize": 4},
                              minNbCores=2, maxNbCores=4, ramUse=2048, lic="nuke&mtoa", maxAttempt=3,
                              requirements={"softs": ["blender"]}, timer=1700000000, maxRunTime=600,
                              dispatchKey=5, priority=2, tags={"step": "render"})
    comp = group.addNewTask("comp", {"cmd": "comp"})
    comp.dependsOn(render, [DONE])
    publish = graph.addNewTaskGroup("publish")
    publish.addNewTask("copy", {"cmd": "cp"})
    publish.dependsOn(group, [DONE, ERROR])
    return graph, group, render, comp, publish


def test_the_wire_format_holds_every_field_puli_sends():
    graph, group, render, comp, publish = shot()
    data = graph.prepareGraphRepresentation()
    assert {k: data[k] for k in ("name", "root", "user", "poolName", "maxRN", "meta")} == {
        "name": "shot010", "root": 0, "user": "ann", "poolName": "farm", "maxRN": 3, "meta": {}}
    names = [t["name"] for t in data["tasks"]]
    assert names == ["shot010", "lighting", "render", "comp", "publish", "copy"]
    root, lighting, r, c, pub, copy = data["tasks"]
    assert root["type"] == "TaskGroup" and root["tasks"] == [1, 4] and root["tags"] == {"prod": "p1"}
    assert lighting["tasks"] == [2, 3]
    assert lighting["arguments"] == {"scene": "s.blend"} and lighting["environment"] == {"A": "1"}
    assert r["type"] == "Task" and r["runner"] == "puli.commandwatcher.runners.DefaultCommandRunner"
    assert (r["minNbCores"], r["maxNbCores"], r["ramUse"]) == (2, 4, 2048)
    assert r["lic"] == r["licence"] == "nuke&mtoa"
    assert (r["maxAttempt"], r["maxRunTime"], r["timer"], r["dispatchKey"], r["priority"]) == (3, 600, 1700000000, 5, 2)
    assert r["requirements"] == {"softs": ["blender"]} and r["tags"] == {"step": "render"}
    assert r["validationExpression"] == "0"
    # The task's own arguments only: a group's are merged on the farm, not copied down.
    assert r["arguments"] == {"cmd": "render %%MI_FRAME%%", "start": 1, "end": 10, "packetSize": 4}
    assert [cmd["description"] for cmd in r["commands"]] == ["render_1_4", "render_5_8", "render_9_10"]
    assert r["commands"][1] == {"description": "render_5_8", "type": "command", "task": "render",
                                "arguments": {"cmd": "render %%MI_FRAME%%", "start": 5, "end": 8, "packetSize": 4}}
    assert c["dependencies"] == [[2, [DONE]]]
    # A TaskGroup's dependency is sent on the group itself (the dispatcher evaluates it).
    assert pub["dependencies"] == [[1, [DONE, ERROR]]]
    assert copy["dependencies"] == []
    # What the dispatcher accepts, checked by its own parser.
    spec = parse_graph(json.loads(json.dumps(data)))
    assert spec.command_count == 3 + 1 + 1
    assert spec.max_rn == 3


def test_a_task_keeps_its_timer_inside_a_group_and_arguments_are_looked_up_in_the_group():
    group = TaskGroup("g", arguments={"scene": "a"}, timer=100)
    task = group.addNewTask("t", {"cmd": "x"}, timer=200)
    assert task.timer == 200
    assert task.arguments["scene"] == "a" and dict(task.arguments) == {"cmd": "x"}


def test_a_task_as_root_and_graph_tags_on_it():
    task = Task("only", {"cmd": ["echo", "hi"]})
    graph = Graph("g", task, tags={"type": "x"})
    data = graph.prepareGraphRepresentation()
    assert len(data["tasks"]) == 1 and data["tasks"][0]["tags"] == {"type": "x"}
    with pytest.raises(GraphError, match="root is a Task"):
        graph.addNewTask("more", {})


def test_decomposition_follows_the_dispatcher_rules():
    frames = Task("f", {"cmd": "x", "framesList": "1,5,10-13", "packetSize": 2}).decompose()
    assert [c.description for c in frames.commands] == ["f_1_1", "f_5_5", "f_10_11", "f_12_13"]
    assert frames.commands[2].arguments["start"] == 10 and frames.commands[2].arguments["end"] == 11
    single = Task("s", {"cmd": "x"}).decompose()
    assert [(c.description, c.arguments) for c in single.commands] == [("s", {"cmd": "x"})]
    manual = Task("m", {"cmd": "x", "start": 1, "end": 100})
    manual.addCommand("first", {"cmd": "y"})
    assert [c.description for c in manual.decompose().commands] == ["first"]
    assert isinstance(manual.commands[0], Command)
    with pytest.raises(GraphError, match="end"):
        Task("bad", {"cmd": "x", "start": 5, "end": 1}).decompose()


def test_a_custom_decomposer_adds_the_commands():
    def halves(task):
        task.addCommand("a", {"cmd": "x", "start": 1, "end": 5})
        task.addCommand("b", {"cmd": "x", "start": 6, "end": 10})

    task = Task("t", {"cmd": "x"}, decomposer=halves)
    assert [c.description for c in task.decompose().commands] == ["a", "b"]

    class Puli17Style(client.TaskDecomposer):
        def __init__(self, task):
            super().__init__(task)
            self.addCommand("only", {"cmd": "y"})

    assert [c.description for c in Task("u", {}, decomposer=Puli17Style).decompose().commands] == ["only"]
    assert len(Task("d", {"cmd": "x", "start": 1, "end": 3}, decomposer=client.DefaultTaskDecomposer)
               .decompose().commands) == 3


def test_add_edges_and_chains_make_the_destination_wait():
    graph = Graph("g")
    a, b, c, d = (graph.addNewTask(n, {"cmd": n}) for n in "abcd")
    graph.addEdges([(a, b), (a, c, [ERROR, CANCELED])])
    graph.addChain([b, c, d], [DONE])
    assert b.dependencies == {a: [DONE]} and c.dependencies == {a: [ERROR, CANCELED], b: [DONE]}
    assert d.dependencies == {c: [DONE]}
    tasks = graph.prepareGraphRepresentation()["tasks"]
    assert tasks[3]["dependencies"] == [[1, [ERROR, CANCELED]], [2, [DONE]]]
    with pytest.raises(GraphConnectionError):
        graph.addEdges([(a,)])
    with pytest.raises(GraphConnectionError):
        graph.addEdges([(a, b, DONE)])
    with pytest.raises(GraphConnectionError, match="node status"):
        b.dependsOn(a, [9])
    assert client.ConnectionError is GraphConnectionError


def test_a_dependency_on_a_node_of_another_job_is_sent_by_id():
    graph = Graph("g")
    task = graph.addNewTask("t", {"cmd": "x"})
    task.dependsOn(42)
    task.dependsOn({"nodeId": 43}, [DONE, ERROR])
    assert graph.prepareGraphRepresentation()["tasks"][1]["dependencies"] == [
        [{"nodeId": 42}, [DONE]], [{"nodeId": 43}, [DONE, ERROR]]]


def test_a_dependency_on_a_node_outside_the_graph_is_refused():
    graph = Graph("g")
    task = graph.addNewTask("t", {"cmd": "x"})
    task.dependsOn(Task("elsewhere", {}))
    with pytest.raises(GraphError, match="not in the graph"):
        graph.prepareGraphRepresentation()


def queued_connections(listener):
    """How many connections wait on a listening socket that never accepted any: the kernel
    completes a client's connect() by itself, so each connection made is there."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            return count
        count += 1


@pytest.mark.parametrize("make", ["chain", "ancestor", "groups"])
def test_a_cycle_is_refused_before_submission_naming_its_nodes(make):
    graph = Graph("g")
    if make == "chain":
        a, b, c = (graph.addNewTask(n, {"cmd": n}) for n in "abc")
        graph.addChain([a, b, c])
        a.dependsOn(c)
        expected = {"a", "b", "c"}
    elif make == "ancestor":
        group = graph.addNewTaskGroup("grp")
        inner = group.addNewTask("inner", {"cmd": "x"})
        inner.dependsOn(group)
        expected = {"grp", "inner"}
    else:
        g1, g2 = graph.addNewTaskGroup("g1"), graph.addNewTaskGroup("g2")
        t1, t2 = g1.addNewTask("t1", {"cmd": "x"}), g2.addNewTask("t2", {"cmd": "x"})
        g1.dependsOn(t2)
        g2.dependsOn(t1)
        expected = {"t1", "t2"}      # each inherits its group's dependency

    with socket.create_server(("127.0.0.1", 0)) as dispatcher:
        port = dispatcher.getsockname()[1]
        with pytest.raises(DependencyCycleError) as caught:
            graph.submit(f"http://127.0.0.1:{port}", timeout=5)
        assert queued_connections(dispatcher) == 0, "the cyclic graph was sent"
    assert "dependency cycle" in str(caught.value)
    assert expected <= set(caught.value.cycle) and caught.value.cycle[0] == caught.value.cycle[-1]
    with pytest.raises(DependencyCycleError):
        graph.execute(verbose=False)


def test_a_node_cannot_be_in_two_groups():
    task = Task("t", {})
    a, b = TaskGroup("a"), TaskGroup("b")
    a.addTask(task)
    with pytest.raises(GraphError, match="already in"):
        b.addTask(task)
    with pytest.raises(GraphError):
        a.addTaskGroup(a)


def test_save_writes_the_wire_format(tmp_path):
    graph, *_ = shot()
    path = graph.save(tmp_path / "g.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(graph.prepareGraphRepresentation()))


def test_puli_17_runner_names_are_sent_as_they_are_and_ours_are_canonical():
    graph = Graph("g")
    old = graph.addNewTask("old", {"cmd": "x"}, runner="puliclient.jobs.DefaultCommandRunner")
    new = graph.addNewTask("new", {"cmd": "x"}, runner="puli.client.jobs.DefaultCommandRunner")
    tasks = graph.prepareGraphRepresentation()["tasks"]
    assert tasks[1]["runner"] == "puliclient.jobs.DefaultCommandRunner"
    assert tasks[2]["runner"] == "puli.commandwatcher.runners.DefaultCommandRunner"
    assert old.runner != new.runner


def test_timers_accept_a_datetime():
    from datetime import datetime, timezone
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert Task("t", {}, timer=when).timer == when.timestamp()
    with pytest.raises(GraphError):
        Task("t", {}, timer="tomorrow")


def test_the_names_of_puliclient_are_there():
    for name in ("Graph", "Task", "TaskGroup", "Command", "BLOCKED", "READY", "RUNNING", "DONE", "ERROR",
                 "CANCELED", "PAUSED", "GraphSubmissionError", "DependencyCycleError", "GraphError", "Error",
                 "TaskAlreadyDecomposedError", "HierarchicalDict", "CallableRunner"):
        assert hasattr(client, name), name
    assert (client.BLOCKED, client.READY, client.RUNNING, client.DONE, client.ERROR, client.CANCELED,
            client.PAUSED) == (0, 1, 2, 3, 4, 5, 6)
    from puli.client import jobs
    for name in ("CommandRunner", "StringParameter", "IntegerParameter", "BooleanParameter", "StringListParameter",
                 "CommandError", "ValidationError", "TaskDecomposer", "TaskExpander", "DefaultCommandRunner"):
        assert hasattr(jobs, name), name


# -- where the dispatcher is -------------------------------------------------------------------------

@pytest.fixture
def no_config(monkeypatch, tmp_path):
    """The config files server_url() is given: a user and a system one, neither there yet."""
    monkeypatch.delenv("PULI_SERVER", raising=False)
    return tmp_path, (tmp_path / "user.yml", tmp_path / "system.yml")


def test_server_url_forms(no_config):
    _, files = no_config
    assert server_url(config_files=files) == "http://localhost:8004"
    assert server_url("farm") == "http://farm:8004"
    assert server_url("farm:9000") == "http://farm:9000"
    assert server_url("http://farm:9000/") == "http://farm:9000"
    assert server_url("farm", 9001) == "http://farm:9001"
    assert normalize_url("https://farm") == "https://farm:443"
    with pytest.raises(PuliError, match="port"):
        server_url("farm:notaport")


def test_server_url_precedence(no_config, monkeypatch):
    config_dir, files = no_config
    (config_dir / "system.yml").write_text("server: system-host:1\n")
    assert server_url(config_files=files) == "http://system-host:1"
    (config_dir / "user.yml").write_text("server: http://user-host:2\n")
    assert server_url(config_files=files) == "http://user-host:2"
    monkeypatch.setenv("PULI_SERVER", "env-host:3")
    assert server_url(config_files=files) == "http://env-host:3"
    assert server_url("explicit:4", config_files=files) == "http://explicit:4"


def test_the_user_config_file_is_found_in_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PULI_SERVER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config" / "puli").mkdir(parents=True)
    (tmp_path / ".config" / "puli" / "client.yml").write_text("server: home-host:5\n")
    assert server_url() == "http://home-host:5"


def test_a_broken_config_file_is_a_clear_error(no_config):
    config_dir, files = no_config
    (config_dir / "user.yml").write_text("server: [unclosed\n")
    with pytest.raises(PuliError, match="user.yml"):
        server_url(config_files=files)
    (config_dir / "user.yml").write_text("- a list\n")
    with pytest.raises(PuliError, match="mapping"):
        server_url(config_files=files)


def test_an_unreachable_dispatcher_is_one_clear_line():
    from puli.client import ServerUnreachable
    with pytest.raises(ServerUnreachable) as caught:
        Server("http://127.0.0.1:9").get("/system")
    assert str(caught.value) == "cannot reach the dispatcher at http://127.0.0.1:9: connection refused"


def test_the_token_comes_from_the_option_then_the_environment_then_the_files(no_config, monkeypatch):
    config_dir, files = no_config
    monkeypatch.delenv("PULI_TOKEN", raising=False)

    def token(**kw):
        header = Server("farm", config_files=files, **kw).session.headers.get("Authorization")
        return header and header.removeprefix("Bearer ")

    assert token() is None
    (config_dir / "system.yml").write_text("token: from-system\nca_file: /etc/puli/ca.pem\n")
    assert token() == "from-system"
    assert Server("farm", config_files=files).session.verify == "/etc/puli/ca.pem"
    user_file = config_dir / "user.yml"
    user_file.write_text("token: from-user\n")
    user_file.chmod(0o600)
    assert token() == "from-user"
    monkeypatch.setenv("PULI_TOKEN", "from-env")
    assert token() == "from-env"
    assert token(token="from-option") == "from-option"


def test_a_users_token_file_that_others_may_read_is_refused(no_config, monkeypatch):
    config_dir, files = no_config
    monkeypatch.delenv("PULI_TOKEN", raising=False)
    user_file = config_dir / "user.yml"
    user_file.write_text("token: secret-value\n")
    user_file.chmod(0o644)
    with pytest.raises(PuliError, match="chmod 600") as caught:
        Server("farm", config_files=files)
    assert "secret-value" not in str(caught.value)
    user_file.write_text("server: farm\n")          # without a token, its mode is nobody's business
    assert Server(config_files=files).url == "http://farm:8004"


def test_the_ca_file_wins_over_a_ca_bundle_in_the_environment(tmp_path, monkeypatch):
    """Studios set REQUESTS_CA_BUNDLE to their corporate bundle; the farm CA must still count."""
    import http.server
    import ssl
    import threading
    from test_auth_farm import farm_ca

    ca, cert, key = farm_ca(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ready": true}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        url = f"https://127.0.0.1:{server.server_address[1]}"
        assert Server(url, token="t", ca_file=str(ca)).get("/system") == {"ready": True}
        with pytest.raises(PuliError, match="certificate"):
            Server(url, token="t", ca_file="/etc/ssl/certs/ca-certificates.crt").get("/system")
    finally:
        server.shutdown()
        server.server_close()
