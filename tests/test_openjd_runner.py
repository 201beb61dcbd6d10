"""The node's OpenJDRunner run in process: an action's timeout ends it per the template's
cancelation mode (NOTIFY_THEN_TERMINATE sends SIGTERM first and waits; TERMINATE kills), and
the session's directory is removed whatever happened."""
import json

import pytest

from puli.commandwatcher.openjd import OpenJDRunner
from puli.commandwatcher.runner import CommandError
from puli.openjd.document import check_body
from puli.openjd.translate import translate


def template(cancelation, out):
    script = f"trap 'echo notified >> {out}/notes.txt; exit 0' TERM; echo started >> {out}/notes.txt; " \
             "while :; do sleep 0.1; done"
    return {"specificationVersion": "jobtemplate-2023-09", "name": "cancel",
            "steps": [{"name": "Wait", "script": {"actions": {"onRun": {
                "command": "sh", "args": ["-c", script], "timeout": 1, "cancelation": cancelation}}}}]}


def run(tpl, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "sessions"))
    (tmp_path / "sessions").mkdir()
    graph = translate(check_body({"template": tpl, "parameters": {}}), 10)
    arguments = json.loads(json.dumps({**graph["tasks"][0]["arguments"], **graph["tasks"][1]["arguments"],
                                       **graph["tasks"][1]["commands"][0]["arguments"]}))
    runner = OpenJDRunner()
    messages = []
    with pytest.raises(CommandError) as caught:
        runner.execute(runner.validate(arguments), lambda c: None, messages.append)
    assert not list((tmp_path / "sessions").iterdir())
    return str(caught.value), (tmp_path / "notes.txt").read_text().split()


def test_notify_then_terminate_notifies_before_the_end(tmp_path, monkeypatch):
    error, notes = run(template({"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30}, tmp_path),
                       tmp_path, monkeypatch)
    assert error == "onRun: timed out after 1 s"
    assert notes == ["started", "notified"]


def test_terminate_kills_without_notice(tmp_path, monkeypatch):
    error, notes = run(template({"mode": "TERMINATE"}, tmp_path), tmp_path, monkeypatch)
    assert error == "onRun: timed out after 1 s"
    assert notes == ["started"]
