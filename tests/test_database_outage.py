"""The database goes away: the dispatcher keeps serving, retries, and writes everything once it is back."""
import os

from processes import Dispatcher, NotifySocket, StandInWorker, ThrowawayMariaDB, wait_for
from puli.model.status import CommandStatus as CS


def test_dispatcher_keeps_serving_while_the_database_is_down_and_catches_up(tmp_path):
    db = ThrowawayMariaDB().start()
    notify = NotifySocket()
    dispatcher = Dispatcher(tmp_path / "d", db_url=db.url, notify=notify)
    worker = StandInWorker()
    try:
        dispatcher.start()
        worker.register(dispatcher, cores=1)
        status, body = dispatcher.call("POST", "/graphs/", {"name": "j", "root": 0, "tasks": [
            {"type": "Task", "name": "t", "arguments": {"cmd": "true", "start": 1, "end": 2}}]})
        job = body["id"]
        wait_for(lambda: worker.assignments, what="an assignment")
        first = worker.assignments[0]

        db.stop()
        path = f"/rendernodes/{worker.name}/commands/{first['id']}/"
        assert dispatcher.call("PUT", path, {"assignment": first["assignment"], "status": int(CS.DONE)})[0] == 200
        assert dispatcher.call("PUT", f"/nodes/{job}/dispatchKey", {"dispatchKey": 9})[0] == 200
        wait_for(lambda: dispatcher.get("/system")[1]["db"]["error"], what="the database error to show")
        notify.wait("STATUS=degraded (database unavailable): 1 jobs")     # systemctl status says so
        assert dispatcher.get(f"/nodes/{job}")[1]["doneCommandCount"] == 1     # still serving
        status, body = dispatcher.call("POST", "/graphs/", {"name": "later", "root": 0, "tasks": [
            {"type": "Task", "name": "t", "arguments": {}}]})
        assert status == 503, body      # a submission cannot be acknowledged uncommitted

        db.start()
        wait_for(lambda: dispatcher.get("/system")[1]["db"]["ok"]
                 and not dispatcher.get("/system")[1]["db"]["pendingWrites"], timeout=30,
                 what="the pending writes to reach the database")
        dispatcher.kill()
        dispatcher.start()
        node = dispatcher.get(f"/nodes/{job}")[1]
        assert node["doneCommandCount"] == 1 and node["dispatchKey"] == 9
    finally:
        worker.close()
        dispatcher.close()
        notify.close()
        db.close()


def test_a_dispatcher_started_before_its_database_waits_for_it(tmp_path):
    import threading
    db = ThrowawayMariaDB()             # made, not started: a boot where MariaDB comes later
    dispatcher = Dispatcher(tmp_path / "d", db_url=db.url)
    started = threading.Thread(target=dispatcher.start, kwargs={"timeout": 90})
    try:
        started.start()
        wait_for(lambda: os.path.exists(dispatcher.log_path) and "waiting for the database" in dispatcher.tail(),
                 timeout=60, what="the dispatcher to wait for its database")
        db.start()
        started.join(90)
        assert dispatcher.get("/health")[1]["ready"] is True
        assert dispatcher.proc.poll() is None
    finally:
        started.join(90)
        dispatcher.close()
        db.close()
