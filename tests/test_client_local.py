"""Graph.execute(): a graph run here, without a farm, through the real commandwatcher."""
import io
import sys
import time

import pytest

from puli.client import BLOCKED, DONE, ERROR, Graph, GraphExecError


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


def test_a_group_timer_holds_its_tasks_back_and_the_run_waits_for_it(tmp_path):
    order = tmp_path / "order.txt"
    graph = Graph("timers")
    timer = time.time() + 1
    # Submitted first: without its group's timer, `later` would run first.
    late = graph.addNewTaskGroup("late", timer=timer)
    late.addNewTask("later", {"cmd": [sys.executable, "-c",
                                      f"import time; open({str(order)!r}, 'a').write(f'later {{time.time()!r}}\\n')"]})
    graph.addNewTask("now", {"cmd": appender(order, "now")})
    out = io.StringIO()
    assert graph.execute(logDir=tmp_path / "logs", stream=out) == DONE
    first, second = order.read_text().splitlines()
    assert first == "now" and second.startswith("later ")
    assert float(second.split()[1]) >= timer           # never before its timer
    assert "waiting until" in out.getvalue() and "for the timer of 'late'" in out.getvalue()


def test_inner_groups_override_what_outer_groups_give_their_tasks(tmp_path):
    out_file = tmp_path / "out.txt"
    graph = Graph("inherit")
    outer = graph.addNewTaskGroup("outer", environment={"SHOT": "outer", "SEQ": "sq010"},
                                  arguments={"cmd": appender(out_file, "from-outer")})
    inner = outer.addNewTaskGroup("inner", environment={"SHOT": "sh0040"},
                                  arguments={"cmd": appender(out_file, "$SEQ-$SHOT")})
    inner.addNewTask("t", {})
    assert graph.execute(logDir=tmp_path / "logs", verbose=False) == DONE
    assert out_file.read_text().split() == ["sq010-sh0040"]


def test_pools_licenses_resources_and_a_paused_submission_do_not_stop_a_local_run(tmp_path):
    out_file = tmp_path / "out.txt"
    graph = Graph("farmish", poolName="lighting", tags={"paused": "true"})
    graph.addNewTask("render", {"cmd": appender(out_file, "cores=$PULI_ALLOCATED_CORES-local=$PULI_LOCAL")},
                     lic="nuke&houdini", minNbCores=8, ramUse=16000, requirements={"softs": ["blender"]})
    graph.addNewTask("comp", {"cmd": appender(out_file, "comp")}, lic="nuke", maxNbCores=1)
    assert graph.execute(logDir=tmp_path / "logs", verbose=False) == DONE
    # The farm's allocation: the whole node for the first, the one core it asks for the second.
    assert out_file.read_text().split() == ["cores=8-local=1", "comp"]


def test_a_graph_that_cannot_run_here_is_refused_before_anything_runs(tmp_path):
    graph = Graph("elsewhere")
    graph.addNewTask("t", {"cmd": "touch " + str(tmp_path / "ran")}).dependsOn(42)
    with pytest.raises(GraphExecError, match="'t' depends on node 42 of the farm: .* cannot run locally"):
        graph.execute(logDir=tmp_path / "logs", detached=True)
    bad = Graph("bad")
    bad.addNewTask("t", {"cmd": "touch " + str(tmp_path / "ran")}, minNbCores=4, maxNbCores=2)
    with pytest.raises(GraphExecError, match=r"maxNbCores \(2\) is below minNbCores \(4\)"):
        bad.execute(logDir=tmp_path / "logs")
    assert not (tmp_path / "ran").exists()


def test_a_detached_run_goes_on_in_a_thread(tmp_path):
    out_file = tmp_path / "out.txt"
    graph = Graph("detached")
    graph.addNewTask("t", {"cmd": appender(out_file, "ran")})
    thread = graph.execute(logDir=tmp_path / "logs", verbose=False, detached=True)
    thread.join(60)
    assert not thread.is_alive() and out_file.read_text() == "ran\n"


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
