"""Graph.execute(): a graph run here, without a farm, through the real commandwatcher."""
import io
import sys

from puli.client import BLOCKED, DONE, ERROR, Graph


def appender(log, text, extra=""):
    """A command appending `text` to the file `log` (a shell string, as Puli scripts write them)."""
    return f"{extra}echo {text} >> {log}"


def test_commands_run_in_dependency_order_every_dependency_honoured(tmp_path):
    order = tmp_path / "order.txt"
    graph = Graph("local", user="ann")
    # Submission order puts `final` first: it must still wait for both of its dependencies.
    final = graph.addNewTask("final", {"cmd": appender(order, "final")})
    renders = graph.addNewTaskGroup("renders", environment={"WHO": "group"})
    frames = renders.addNewTask("frames", {"cmd": appender(order, "frame%%MI_FRAME%%-$WHO"), "start": 1, "end": 4,
                                           "packetSize": 2})
    late = graph.addNewTask("late", {"cmd": appender(order, "late")})
    comp = graph.addNewTask("comp", {"cmd": appender(order, "comp")})
    comp.dependsOn(renders)                   # a dependency on a TaskGroup
    final.dependsOn(comp)
    final.dependsOn(late)                     # the second dependency counts too
    late.dependsOn(frames)
    out = io.StringIO()
    status = graph.execute(logDir=tmp_path / "logs", stream=out)
    assert status == DONE
    lines = order.read_text().split()
    assert sorted(lines[:4]) == ["frame1-group", "frame2-group", "frame3-group", "frame4-group"]
    assert set(lines[4:6]) == {"late", "comp"} and lines[6:] == ["final"]
    text = out.getvalue()
    assert "DONE........ 5" in text and "ERROR....... 0" in text
    assert len(list((tmp_path / "logs").glob("*.log"))) == 5


def test_a_failure_stops_its_dependents_and_error_dependencies_run(tmp_path):
    marks = tmp_path / "marks.txt"
    graph = Graph("failing")
    broken = graph.addNewTask("broken", {"cmd": "echo about to fail; exit 3"}, maxAttempt=2)
    after = graph.addNewTask("after", {"cmd": appender(marks, "after")})
    cleanup = graph.addNewTask("cleanup", {"cmd": appender(marks, "cleanup")})
    after.dependsOn(broken)
    cleanup.dependsOn(broken, [ERROR])
    out = io.StringIO()
    assert graph.execute(logDir=tmp_path / "logs", stream=out) == ERROR
    assert marks.read_text().split() == ["cleanup"]
    text = out.getvalue()
    assert "about to fail" in text and "attempt 2/2" in text and "exit code 3" in text
    assert "BLOCKED..... 1" in text


def test_a_job_whose_commands_can_never_run_ends_blocked(tmp_path):
    graph = Graph("never")
    a = graph.addNewTask("a", {"cmd": "true"})
    b = graph.addNewTask("b", {"cmd": "true"})
    b.dependsOn(a, [ERROR])
    assert graph.execute(logDir=tmp_path, verbose=False) == BLOCKED


def test_argv_commands_runners_and_max_run_time(tmp_path):
    out_file = tmp_path / "argv.txt"
    graph = Graph("argv")
    graph.addNewTask("py", {"cmd": [sys.executable, "-c",
                                    f"open({str(out_file)!r}, 'a').write(\"%%MI_FRAME%% it's quoted\\n\")"],
                            "start": 1, "end": 2}, runner="puliclient.jobs.DefaultCommandRunner")
    slow = graph.addNewTask("slow", {"args": ["sleep", "30"]},
                            runner="puli.commandwatcher.runners.CommandLineRunner", maxRunTime=1)
    slow.dependsOn(graph.root.tasks[0])
    out = io.StringIO()
    assert graph.execute(logDir=tmp_path / "logs", stream=out) == ERROR
    assert out_file.read_text() == "1 it's quoted\n2 it's quoted\n"
    assert "max run time" in out.getvalue()


def test_a_callable_runs_through_the_callable_runner(tmp_path):
    (tmp_path / "mytools.py").write_text(
        "def publish(path, text='hello'):\n    open(path, 'w').write(text)\n\n"
        "class Tool:\n    def run(self, path):\n        open(path, 'w').write('method')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import mytools
        graph = Graph("callables")
        graph.addNewCallable(mytools.publish, user_args=[str(tmp_path / "f.txt")], user_kwargs={"text": "done"})
        graph.addNewCallable(mytools.Tool().run, name="tool", user_args=[str(tmp_path / "m.txt")])
        tasks = graph.prepareGraphRepresentation()["tasks"]
        assert [t["name"] for t in tasks[1:]] == ["publish", "tool"]
        assert tasks[1]["runner"] == "puli.client.runner.CallableRunner"
        assert graph.execute(logDir=tmp_path / "logs", verbose=False) == DONE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mytools", None)
    assert (tmp_path / "f.txt").read_text() == "done" and (tmp_path / "m.txt").read_text() == "method"


def test_an_interrupt_stops_the_running_command_and_cancels_the_rest(tmp_path):
    import os
    import signal
    import subprocess
    from processes import ROOT, wait_for
    started, after = tmp_path / "started", tmp_path / "after"
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nfrom puli.client import Graph\n"
        "g = Graph('interrupted')\n"
        f"slow = g.addNewTask('slow', {{'cmd': 'touch {started}; exec sleep 60'}})\n"
        f"g.addNewTask('after', {{'cmd': 'touch {after}'}}).dependsOn(slow)\n"
        f"print('STATUS', g.execute(logDir={str(tmp_path / 'logs')!r}))\n")
    # Its own process group, like a job run from a terminal: Ctrl-C reaches the whole group.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            process_group=0)
    try:
        wait_for(started.exists, 30, what="the command to start")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "STATUS 5" in out, out          # CANCELED
    assert "CANCELED.... 2" in out and not after.exists()
