"""Helpers for the client and puliexec tests (no tests here): one real dispatcher and one real
worker shared by a test module, and ways to watch a job on them."""
import pytest

from processes import Dispatcher, wait_for
from test_worker_support import WorkerProcess, registered, sweep

FINAL_NODE = (3, 4, 5)      # DONE, ERROR, CANCELED


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A dispatcher and one registered worker (softs: blender), for the whole module."""
    base = tmp_path_factory.mktemp("farm")
    dispatcher = Dispatcher(base / "dispatcher", extra=("--set", "retry_delay=0.5"))
    worker = None
    try:
        dispatcher.start()
        worker = WorkerProcess(dispatcher.url, base / "worker", extra=("--set", "softs=[blender]"),
                               token=dispatcher.worker_token()).start()
        wait_for(lambda: registered(dispatcher, worker.name), what="the worker's registration")
        dispatcher.worker_process = worker
        # Job scripts and the CLIs find their token where users put it: PULI_TOKEN.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PULI_TOKEN", dispatcher.token)
            yield dispatcher
    finally:
        if worker is not None:
            worker.close()
            sweep(worker.data_dir)
        dispatcher.close()


def node(dispatcher, node_id):
    status, body = dispatcher.get(f"/nodes/{node_id}")
    assert status == 200, body
    return body


def finished(dispatcher, node_id, timeout=60.0):
    """The node once it is DONE, ERROR or CANCELED."""
    def check():
        body = node(dispatcher, node_id)
        return body if body["status"] in FINAL_NODE else None
    return wait_for(check, timeout, interval=0.1, what=f"node {node_id} to finish")


def commands(dispatcher, node_id):
    status, body = dispatcher.get(f"/tasks/{node_id}/commands")
    assert status == 200, body
    return body["commands"]
