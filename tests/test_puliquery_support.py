"""Helpers for the puliquery and pul_* tests (no tests here): the CLIs run as real subprocesses
against a real dispatcher, jobs submitted with plain HTTP, and a stand-in worker to move
commands through RUNNING, DONE and ERROR."""
import itertools
import os
import subprocess
import sys

import pytest

from processes import ROOT, Dispatcher, StandInWorker, free_port, wait_for

HOLD = "hold"       # a pool without render nodes: jobs there stay as submitted
_users = itertools.count(1)


class Farm:
    """A dispatcher, a stand-in worker of 16 cores in the default pool, and the CLIs pointed at it."""

    def __init__(self, data_dir):
        self.dispatcher = Dispatcher(data_dir).start()
        self.url = self.dispatcher.url
        self.standin = StandInWorker()
        status, _ = self.standin.register(self.dispatcher, cores=16)
        assert status in (200, 201)

    def close(self):
        self.standin.close()
        self.dispatcher.close()

    # -- the API, for setting up and checking -----------------------------------------------------
    def call(self, method, path, body=None):
        return self.dispatcher.call(method, path, body)

    def get(self, path):
        status, body = self.dispatcher.get(path)
        assert status == 200, (path, body)
        return body

    def node(self, node_id):
        return self.get(f"/nodes/{node_id}")

    def commands(self, job_id):
        return self.get(f"/tasks/{job_id}/commands")["commands"]

    def command(self, command_id):
        return self.get(f"/commands/{command_id}")

    def submit(self, name, user, frames=1, pool=HOLD, prod="", shot="", group=False, **task):
        """A job of one task (or, with group, a TaskGroup of a render and a comp task waiting
        for it) whose commands echo their frame; its id."""
        tags = {"prod": prod, "shot": shot}
        leaf = dict({"type": "Task", "name": name, "minNbCores": 1, "maxNbCores": 1, "tags": tags,
                     "arguments": {"cmd": "echo %%MI_FRAME%%", "start": 1, "end": frames}}, **task)
        if group:
            tasks = [{"type": "TaskGroup", "name": name, "tasks": [1, 2], "tags": tags},
                     dict(leaf, name=f"{name}_render"),
                     dict(leaf, name=f"{name}_comp", dependencies=[[1, [3]]])]
        else:
            tasks = [leaf]
        status, body = self.call("POST", "/graphs/", {"name": name, "root": 0, "user": user,
                                                      "poolName": pool, "tasks": tasks})
        assert status == 201, body
        return body["id"]

    def report(self, command_id, status, **extra):
        """Report on a command as the stand-in worker it was assigned to."""
        cmd = wait_for(lambda: self._assigned(command_id), what=f"command {command_id} to be assigned")
        status_code, body = self.call("PUT", f"/rendernodes/{self.standin.name}/commands/{command_id}/",
                                      dict({"assignment": cmd["assignment"], "status": int(status)}, **extra))
        assert status_code == 200, body

    def _assigned(self, command_id):
        cmd = self.command(command_id)
        return cmd if cmd["renderNode"] == self.standin.name and cmd["assignment"] else None

    # -- the CLIs ---------------------------------------------------------------------------------
    def cli(self, module, *args, server=True, env=None):
        """Run `python -m puli.cli.<module> args` with PULI_SERVER naming this farm."""
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("PULI_SERVER", "PULI_TOKEN", "COLUMNS", "NO_COLOR")}
        environ["HOME"] = str(self.dispatcher.data_dir)      # no user client.yml in the way
        environ["PULI_TOKEN"] = self.dispatcher.token
        if server:
            environ["PULI_SERVER"] = self.url
        environ.update(env or {})
        return subprocess.run([sys.executable, "-m", f"puli.cli.{module}", *map(str, args)],
                              env=environ, cwd=ROOT, capture_output=True, text=True, timeout=60)

    def pq(self, *args, **kw):
        return self.cli("puliquery", *args, **kw)

    def pul(self, name, *args, **kw):
        return self.cli("pul", name, *args, **kw)


def ok(result):
    """The stdout of a CLI run that must have succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stderr == "", result.stderr
    return result.stdout


def fails(result, code, *words):
    """A CLI run that failed with `code` and one line on stderr holding `words`."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 or code == 2, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def unreachable_url():
    return f"127.0.0.1:{free_port()}"


def new_user():
    return f"user{next(_users)}"


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    farm = Farm(tmp_path_factory.mktemp("farm"))
    try:
        yield farm
    finally:
        farm.close()


@pytest.fixture
def user():
    """A user name no other test submits as, so that filtering on it selects this test's jobs."""
    return new_user()
