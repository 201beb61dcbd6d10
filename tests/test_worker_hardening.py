"""The worker holding out on a render node, for real: its API against large bodies, slow clients
and floods of connections; the sweep of ended commands' logs; private files whatever the umask;
the commands' stats kept within what the dispatcher takes."""
import json
import os
import socket
import stat
import time

from processes import wait_for
from puli.commandwatcher.state import MAX_STATS_BYTES
from puli.model.status import CommandStatus as CS
from puli.worker.api import MAX_CONNECTIONS
from test_auth_farm import farm_ca
from test_worker import flushed, until
from test_worker_support import (farm, job, python_command, reaches, ready_worker, registered,  # noqa: F401
                                 submit, the_command)


# -- raw HTTP ---------------------------------------------------------------------------------------
def connect(worker):
    sock = socket.create_connection(("127.0.0.1", worker.port), timeout=30)
    return sock


def closed(sock):
    """True once the peer closed the connection (EOF or reset); False while it stays open and
    silent. Never blocks (a socket with a timeout would wait for data before a MSG_DONTWAIT)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.settimeout(timeout)


def answer(sock):
    """(status, JSON body) of the answer read until the worker closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else None


def age(paths, seconds_ago):
    then = time.time() - seconds_ago
    for path in paths:
        os.utime(path, (then, then))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the API: bodies, slow clients, connections ------------------------------------------------------
def test_a_body_over_max_request_bytes_is_refused_with_413_before_it_is_sent(farm):
    worker = ready_worker(farm)
    with connect(worker) as sock:
        # The headers announce 2 MB and not one byte of the body follows: the answer comes all
        # the same, so the worker did not wait to read it.
        sock.sendall(f"POST /commands HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {worker.secret()}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n".encode())
        status, body = answer(sock)
    assert status == 413
    assert body["title"] == "Request body too large"
    assert "2000000" in body["description"] and "1048576" in body["description"]
    assert "max_request_bytes" in body["description"]

    # An ordinary client that sends the whole body reads the same answer, not a reset upload.
    big = {"id": 1, "assignment": 1, "arguments": {"cmd": "true"}, "environment": {"X": "x" * 2_000_000}}
    status, body = worker.call("POST", "/commands/", big)
    assert status == 413 and "max_request_bytes" in body["description"]
    assert worker.get("/commands/") == (200, {"commands": []})      # nothing was started


def test_a_request_trickling_in_is_closed_after_request_timeout_while_others_are_served(farm):
    worker = ready_worker(farm, extra=("--set", "request_timeout=3"))
    silent, trickling = connect(worker), connect(worker)
    try:
        silent.sendall(b"GET /sysinfos HTTP/1.1\r\nHost: 127.0.0.1\r\n")      # and nothing more
        trickling.sendall(b"GET /sysinfos HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        served_meanwhile = []

        def trickle_until_closed():
            # A header byte at each poll: a timeout on each read would never end this request.
            try:
                trickling.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                return True
            status, _ = worker.get("/sysinfos/")
            if not closed(trickling):
                served_meanwhile.append(status)
            return closed(trickling)

        wait_for(trickle_until_closed, 30, interval=0.2, what="the trickling request to be cut off")
        wait_for(lambda: closed(silent), 30, what="the silent request to be cut off")
        assert served_meanwhile and set(served_meanwhile) == {200}
    finally:
        silent.close()
        trickling.close()
    # One line each, no traceback.
    wait_for(lambda: worker.tail().count("(request_timeout): connection closed") >= 2, what="the log lines")
    assert "Traceback" not in worker.tail()


def test_a_tls_handshake_that_never_comes_is_closed_after_request_timeout(farm, tmp_path):
    ca, cert, key = farm_ca(tmp_path)
    worker = ready_worker(farm, tls=(cert, key, ca), extra=("--set", "request_timeout=2"))
    with connect(worker) as stalled:
        stalled.sendall(b"\x16\x03\x01")                # the start of a ClientHello, then nothing
        assert worker.get("/sysinfos/")[0] == 200       # served over TLS meanwhile
        wait_for(lambda: closed(stalled), 30, what="the stalled handshake to be cut off")
    assert worker.get("/sysinfos/")[0] == 200


def test_connections_past_the_most_served_at_once_are_closed_and_the_api_comes_back(farm):
    worker = ready_worker(farm, extra=("--set", "request_timeout=10"))
    held = [connect(worker) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b"GET /sysinfos HTTP/1.1\r\n")
        # The next one, a whole request with the secret, is closed unanswered: no thread for it.
        with connect(worker) as extra:
            extra.sendall(f"GET /sysinfos HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                          f"{worker.secret()}\r\n\r\n".encode())
            extra.settimeout(30)
            try:
                assert extra.recv(65536) == b""
            except ConnectionResetError:
                pass
        wait_for(lambda: "connection(s) to the API closed unanswered" in worker.tail(), what="the warning")
        # Once the held ones run out of time, the API answers again.
        wait_for(lambda: all(closed(sock) for sock in held), 40, what="the held connections to be cut off")
        assert worker.get("/sysinfos/")[0] == 200
    finally:
        for sock in held:
            sock.close()


# -- the sweep of ended commands' logs ---------------------------------------------------------------
def log_files(worker):
    return sorted((worker.data_dir / "log" / "commands").glob("*/*.log*"))


def log_of(worker, cmd_id):
    (path,) = (worker.data_dir / "log" / "commands").glob(f"*/{cmd_id}.log")
    return path


def restarted(farm, worker, extra):
    """The worker stopped (its commands run on) and started again: its first sweep comes at start."""
    assert worker.terminate() == 0
    return farm.worker(data_dir=worker.data_dir, port=worker.port, extra=extra).start()


def swept(worker, words):
    return wait_for(lambda: [line for line in worker.tail().splitlines() if "puli.worker.sweep" in line
                             and words in line], 30, what=f"the sweep's line ({words})")


def test_logs_of_ended_commands_past_log_retention_go_and_held_runs_keep_theirs(farm, tmp_path):
    extra = ("--set", "log_retention=60")
    worker = ready_worker(farm, extra=extra)
    ended = the_command(farm, submit(farm, job("ended", "echo ended long ago")))
    reaches(farm, ended, CS.DONE, 30)
    wait_for(lambda: not (worker.data_dir / "commands" / str(ended)).exists(), what="the ended run to go")
    ended_log = log_of(worker, ended)
    gate_running, gate_unreported = tmp_path / "gate_running", tmp_path / "gate_unreported"
    running = the_command(farm, submit(farm, job("running", f"echo still running; {until(gate_running)}")))
    unreported = the_command(farm, submit(farm, job("unreported", f"echo ends unseen; {until(gate_unreported)}")))
    reaches(farm, running, CS.RUNNING)
    reaches(farm, unreported, CS.RUNNING)
    wait_for(lambda: flushed(farm), what="the write-behind flush")
    # The dispatcher away, a command ends: the worker holds its end (and its files) for it.
    farm.kill()
    gate_unreported.touch()
    wait_for(lambda: {c["id"]: c["status"] for c in worker.runs() or ()}.get(unreported)
             == CS.DONE, what="the unreported end")

    # Every file an hour old, as if it had all ended long ago.
    age(log_files(worker) + sorted((worker.data_dir / "commands").glob("*/*")), 3600)
    again = restarted(farm, worker, extra)
    swept(again, "older than log_retention (1m)")
    assert not ended_log.exists()
    assert not ended_log.parent.exists(), "its task's directory, empty, stays"
    for cmd_id in (running, unreported):
        assert "[puli]" in log_of(worker, cmd_id).read_text()
        assert (worker.data_dir / "commands" / str(cmd_id) / "assignment.json").exists()

    # Nothing was lost: the dispatcher back, both end as they should.
    farm.start()
    gate_running.touch()
    reaches(farm, running, CS.DONE, 40)
    reaches(farm, unreported, CS.DONE, 40)


def log_of_exists(worker, cmd_id):
    return bool(list((worker.data_dir / "log" / "commands").glob(f"*/{cmd_id}.log*")))


def test_the_oldest_logs_go_while_ended_commands_take_more_than_logs_max_total(farm, tmp_path):
    extra = ("--set", "logs_max_total=1MiB")
    worker = ready_worker(farm, extra=extra)
    print_400k = "import sys; sys.stdout.write(('x' * 99 + '\\n') * 4100)"      # 410,000 bytes
    ended = []
    for name in ("first", "second", "third"):
        cmd_id = the_command(farm, submit(farm, job(name, python_command(print_400k))))
        reaches(farm, cmd_id, CS.DONE, 30)
        ended.append(cmd_id)
    gate = tmp_path / "gate"
    held = the_command(farm, submit(farm, job("held", f"{python_command(print_400k)}; {until(gate)}")))
    reaches(farm, held, CS.RUNNING)
    wait_for(lambda: log_of(worker, held).stat().st_size > 400_000, what="the running command's output")
    wait_for(lambda: not any((worker.data_dir / "commands" / str(c)).exists() for c in ended),
             what="the ended runs to go")

    # 1.23 MB of ended commands' logs, over 1 MiB: the oldest goes, and only it. The running
    # command's log, older still, neither goes nor counts.
    age([log_of(worker, held)], 500)
    for seconds, cmd_id in zip((400, 300, 200), ended):
        age([log_of(worker, cmd_id)], seconds)
    again = restarted(farm, worker, extra)
    line, = swept(again, "over logs_max_total (1.0 MiB)")
    assert "removed 1 log file(s)" in line
    assert [log_of_exists(worker, c) for c in ended] == [False, True, True]
    assert log_of(worker, held).stat().st_size > 400_000
    gate.touch()
    reaches(farm, held, CS.DONE, 30)


# -- private files whatever the umask ----------------------------------------------------------------
def test_state_and_logs_are_private_under_umask_0022_and_older_open_directories_are_tightened(farm, tmp_path):
    """Under the loosest umask a worker may inherit; its commands run with command_umask."""
    data_dir = tmp_path / "node"
    # What an older version left: everything open to all.
    for directory in (data_dir / "commands", data_dir / "log" / "commands"):
        directory.mkdir(parents=True)
    for directory in (data_dir, data_dir / "commands", data_dir / "log", data_dir / "log" / "commands"):
        os.chmod(directory, 0o755)
    worker = farm.worker(data_dir=data_dir, extra=("--set", "command_umask=0002"))
    worker.args = ["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", *worker.args]
    worker.start()
    wait_for(lambda: registered(farm, worker.name), what="registration")
    gate, frame = tmp_path / "gate", tmp_path / "frame.exr"
    cmd_id = the_command(farm, submit(farm, job("private", f"touch {frame}; echo rendering; {until(gate)}",
                                                 environment={"LICENSE_KEY": "s3cret"})))
    reaches(farm, cmd_id, CS.RUNNING)
    run = data_dir / "commands" / str(cmd_id)
    wait_for(lambda: (run / "state.json").exists() and frame.exists(), what="the run's state")
    log = log_of(worker, cmd_id)

    state = {path: mode(path) for path in (data_dir, data_dir / "commands", run)}
    state.update({run / name: mode(run / name)
                  for name in ("assignment.json", "state.json", "watcher.pid", "watcher.stderr")})
    state[data_dir / "api.secret"] = mode(data_dir / "api.secret")
    assert state == {path: (0o700 if path.is_dir() else 0o600) for path in state}
    logs = {path: mode(path) for path in (data_dir / "log", data_dir / "log" / "commands", log.parent, log)}
    assert logs == {path: (0o750 if path.is_dir() else 0o640) for path in logs}
    # The commands run with command_umask, not the worker's: their frames are for others.
    assert mode(frame) == 0o664
    gate.touch()
    reaches(farm, cmd_id, CS.DONE, 30)


# -- stats ----------------------------------------------------------------------------------------------
def test_stats_past_what_the_dispatcher_keeps_are_ignored_at_the_source_and_the_end_is_not_lost(farm):
    worker = ready_worker(farm)
    half = MAX_STATS_BYTES // 2 + 100
    code = ("import json\n"
            f"print('PULI_STATS ' + json.dumps({{'first': 'a' * {half}}}))\n"
            f"print('PULI_STATS ' + json.dumps({{'second': 'b' * {half}}}))\n"     # together: too much
            "print('PULI_STATS {\"nan\": NaN}')\n"                                 # no JSON for the store
            "print('PULI_STATS ' + '[' * 50000 + ']' * 50000)\n"                   # too deep to decode
            "print('PULI_STATS ' + '{\"deep\": ' + '[' * 40 + ']' * 40 + '}')\n"   # deeper than kept
            "print('PULI_STATS {\"frames\": 3}')\n")
    cmd_id = the_command(farm, submit(farm, job("stats", python_command(code))))
    cmd = reaches(farm, cmd_id, CS.DONE, 30)
    stats = cmd["stats"]
    assert len(stats["first"]) == half and stats["frames"] == 3
    assert not {"second", "nan", "deep"} & set(stats)
    assert stats["exitCode"] == 0                   # the watcher's own figures are there too
    _, _, text = worker.text(f"/commands/{cmd_id}/log")
    notes = [line for line in text.splitlines() if "stats update" in line or "stats updates" in line]
    assert len(notes) == 2, text[-2000:]
    assert f"more than the {MAX_STATS_BYTES} a command may report" in notes[0]
    assert "3 stats updates ignored in all" in notes[1]
