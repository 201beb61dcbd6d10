"""puliexec as users run it: a subprocess against a real dispatcher and a real worker."""
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from processes import ROOT
from test_client_support import commands, farm, node  # noqa: F401

PULIEXEC = [sys.executable, "-m", "puli.cli.puliexec"]


def puliexec(*args, env=None, timeout=120):
    environ = {k: v for k, v in os.environ.items() if k != "PULI_SERVER"}
    environ.update(env or {})
    return subprocess.run([*PULIEXEC, *args], capture_output=True, text=True, timeout=timeout, env=environ, cwd=ROOT)


def write_frame(path):
    """An argv that writes its frame number into <path>/f<frame>.txt, quoting included."""
    code = (f"import os; os.makedirs({str(path)!r}, exist_ok=True); "
            f"open(os.path.join({str(path)!r}, 'f%%MI_FRAME%%.txt'), 'w')"
            f".write(\"it's frame %%MI_FRAME%% of %%MI_START%%-%%MI_END%%\")")
    return [sys.executable, "-c", code]


def cancel(farm, job_id):
    farm.call("PUT", f"/nodes/{job_id}/status", {"status": 5})


def test_frames_and_packets_make_the_commands_and_wait_follows_them_to_done(farm, tmp_path):
    out = tmp_path / "frames"
    result = puliexec("--server", farm.url, "--frames", "1-5", "--packet", "2", "--cores", "1", "--wait",
                      "--", *write_frame(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    job_id = int(lines[0].split()[1])
    assert lines[0].startswith(f"job {job_id} submitted: \"Command Line: '{sys.executable}'\", 3 command(s)")
    assert lines[-1] == f"job {job_id} ended DONE: 3/3 command(s) done"
    # Not a terminal: plain progress lines, no redraws.
    assert "\r" not in result.stdout and any(line.startswith(f"job {job_id} ") and "%" in line for line in lines[1:-1])
    assert sorted(c["description"] for c in commands(farm, job_id)) == [
        f"Command Line: '{sys.executable}'_{a}_{b}" for a, b in ((1, 2), (3, 4), (5, 5))]
    assert (out / "f3.txt").read_text() == "it's frame 3 of 3-4"
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.txt" for i in range(1, 6)]
    task = node(farm, job_id)
    assert task["runner"] == "puli.commandwatcher.runners.DefaultCommandRunner"
    assert task["arguments"]["cmd"] == write_frame(out)
    assert (task["minNbCores"], task["maxNbCores"]) == (1, 1)


def test_a_frame_list_gives_a_command_per_packet_of_each_range(farm):
    result = puliexec("--server", farm.url, "--paused", "--json", "--frames", "1,5,10-13", "--packet", "3",
                      "--", "echo", "%%MI_FRAME%%")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["commands"] == 4
    assert [c["description"].rsplit("_", 2)[1:] for c in commands(farm, job["id"])] == [
        ["1", "1"], ["5", "5"], ["10", "12"], ["13", "13"]]
    cancel(farm, job["id"])


def test_wait_fails_for_a_failing_command(farm):
    result = puliexec("--server", farm.url, "--wait", "--", "false")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1].endswith("ended ERROR: 0/1 command(s) done")


def test_wait_waits_for_the_retries(farm, tmp_path):
    marker = tmp_path / "attempts"
    script = f"echo x >> {marker}; test $(wc -l < {marker}) -ge 2"     # fails once, then succeeds
    result = puliexec("--server", farm.url, "--wait", "--max-attempt", "2", "--", "sh", "-c", script)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert marker.read_text().count("x") == 2


def test_json_prints_the_job_then_with_wait_its_final_node(farm):
    result = puliexec("--server", farm.url, "--json", "--wait", "-n", "json job", "--", "true")
    assert result.returncode == 0, result.stderr
    first, last = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) == {"id", "name", "commands", "url"}
    assert first["name"] == "json job" and first["commands"] == 1 and first["url"] == f"{farm.url}/nodes/{first['id']}"
    assert last["id"] == first["id"] and last["status"] == 3 and last["statusName"] == "DONE"


def test_the_options_reach_the_job(farm, tmp_path):
    before = time.time()
    result = puliexec("--server", farm.url, "--paused", "--json", "-n", "opts", "-u", "bob", "--pool", "lighting",
                      "--prio", "7", "--maxRN", "2", "-P", "film", "--jobType", "nuke", "--outFolder", str(tmp_path),
                      "--time-delay", "1h30m", "--licenses", "nuke,mtoa", "--minRam", "512", "--cores", "2",
                      "--requirements", '{"softs": ["blender"]}', "--require", "os=linux", "--require", "cores=2",
                      "--max-attempt", "3", "--max-run-time", "2h", "--", "render", "--flag", "a b")
    assert result.returncode == 0, result.stderr
    job = node(farm, json.loads(result.stdout)["id"])
    assert (job["name"], job["user"], job["poolName"]) == ("opts", "bob", "lighting")
    assert (job["dispatchKey"], job["maxRN"]) == (7, 2)
    assert job["paused"] is True and job["statusName"] == "PAUSED"
    assert job["tags"] == {"type": "nuke", "prod": "film", "paused": "true", "nbFrames": "1",
                           "imageFolder": str(tmp_path)}
    assert before + 5400 - 5 < job["timer"] < time.time() + 5400 + 5
    assert (job["lic"], job["ramUse"], job["minNbCores"], job["maxNbCores"]) == ("nuke&mtoa", 512, 2, 2)
    assert job["requirements"] == {"softs": ["blender"], "os": "linux", "cores": 2}
    assert (job["maxAttempt"], job["maxRunTime"]) == (3, 7200)
    assert job["runner"] == "puli.commandwatcher.runners.CommandLineRunner"
    assert job["arguments"] == {"args": ["render", "--flag", "a b"]}
    cancel(farm, job["id"])


def test_without_double_dash_options_stop_at_the_first_word(farm):
    result = puliexec("--server", farm.url, "--paused", "--json", "--name", "nodash", "echo", "--name", "x")
    assert result.returncode == 0, result.stderr
    job = node(farm, json.loads(result.stdout)["id"])
    assert job["name"] == "nodash" and job["arguments"] == {"args": ["echo", "--name", "x"]}
    cancel(farm, job["id"])


def test_port_and_host_like_puli(farm):
    result = puliexec("--host", "127.0.0.1", "--port", str(farm.port), "--paused", "--json", "--", "true")
    assert result.returncode == 0, result.stderr
    cancel(farm, json.loads(result.stdout)["id"])
    result = puliexec("--paused", "--json", "--", "true", env={"PULI_SERVER": farm.url})
    assert result.returncode == 0, result.stderr
    cancel(farm, json.loads(result.stdout)["id"])


def test_an_unreachable_dispatcher_is_one_line_and_exit_3():
    result = puliexec("--server", "http://127.0.0.1:9", "--", "true")
    assert result.returncode == 3
    assert result.stderr == "puliexec: cannot reach the dispatcher at http://127.0.0.1:9: connection refused\n"
    assert result.stdout == ""


@pytest.mark.parametrize("args, words", [
    (["--bogus", "--", "true"], "unrecognized arguments: --bogus"),
    (["--frames", "3-1", "--", "true"], "ends before it starts"),
    (["--frames", "a", "--", "true"], "not a frame"),
    (["--packet", "0", "--", "true"], "--packet must be at least 1"),
    (["--time-delay", "soon", "--", "true"], "not a duration"),
    (["--requirements", "{bad", "--", "true"], "not JSON"),
    (["--require", "novalue", "--", "true"], "not KEY=VALUE"),
    (["--prio", "high", "--", "true"], "invalid int value"),
    (["--server", "http://a:1", "--host", "b", "--", "true"], "not both"),
    (["--paused"], "no command to run"),
    (["stray", "--", "true"], "before '--'"),
])
def test_bad_usage_is_one_line_and_exit_2(args, words):
    result = puliexec(*args)
    assert result.returncode == 2, result
    assert words in result.stderr and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_help_exits_0():
    result = puliexec("--help")
    assert result.returncode == 0 and "--frames" in result.stdout and "%%MI_FRAME%%" in result.stdout


def test_local_runs_here_without_a_farm(tmp_path):
    out = tmp_path / "local"
    result = puliexec("--server", "http://127.0.0.1:9", "--local", "--frames", "1-3", "--", *write_frame(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DONE........ 3" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["f1.txt", "f2.txt", "f3.txt"]
    result = puliexec("--local", "--", "false")
    assert result.returncode == 1 and "ERROR....... 1" in result.stdout


def test_wait_on_a_terminal_redraws_a_progress_bar(farm):
    main, secondary = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "PULI_SERVER"}
    script = "for i in 1 2 3 4; do echo PULI_PROGRESS $((i * 25))%; sleep 0.3; done"
    proc = subprocess.Popen([*PULIEXEC, "--server", farm.url, "--wait", "--", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=subprocess.PIPE, env=environ, cwd=ROOT)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:         # EIO: the other side is closed
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    assert proc.wait(30) == 0, proc.stderr.read()
    os.close(main)
    text = output.decode()
    assert "\r\x1b[K" in text
    job_id = text.split()[1]
    assert f"job {job_id} DONE     [####################] 100% 1/1" in text
    assert "ended DONE" in text.splitlines()[-1]


def test_a_refusal_by_the_dispatcher_is_one_line_and_exit_1(tmp_path):
    from processes import Dispatcher
    small = Dispatcher(tmp_path / "small", extra=("--set", "max_request_bytes=1024"))
    try:
        small.start()
        result = puliexec("--server", small.url, "--", "echo", "x" * 2000)
    finally:
        small.close()
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("puliexec: the dispatcher refused the graph: 413 ")
