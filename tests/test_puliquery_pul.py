"""The Puli-era names (pul_query, pul_rn, pul_edit, pul_set_status, pul_set_pause, pul_cancel,
pul_restart, pul_pause, pul_resume) with their old options, as subprocesses against a real
dispatcher; each effect is read back from the API."""
import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from puli.model.status import CommandStatus as CS, NodeStatus as NS
from test_puliquery_support import fails, farm, ok, unreachable_url, user  # noqa: F401


def ids_of_csv(text):
    return [int(row["id"]) for row in csv.DictReader(io.StringIO(text))]


def table_ids(text):
    return [int(line.split()[0]) for line in text.splitlines()[1:-1]]


def test_pul_query_lists_jobs_in_every_format(farm, user):
    a = farm.submit("old_a", user, prod="legacy", shot="s1")
    b = farm.submit("old_b", user, frames=2)
    text = ok(farm.pul("pul_query", user))
    assert "OWNER" in text.splitlines()[0] and table_ids(text) == [a, b]
    assert text.splitlines()[-1].startswith("2 of ")
    assert [i["id"] for i in json.loads(ok(farm.pul("pul_query", "-j", user)))] == [a, b]
    assert [i["id"] for i in json.loads(ok(farm.pul("pul_query", "--json", user)))] == [a, b]
    assert ids_of_csv(ok(farm.pul("pul_query", "-c", user))) == [a, b]
    assert ids_of_csv(ok(farm.pul("pul_query", "--csv", str(b)))) == [b]
    # -a picks fields and, as in Puli, means CSV unless -j.
    assert ok(farm.pul("pul_query", "-a", "id", "-a", "tags:prod", str(a))).splitlines() == ["id,prod", f"{a},legacy"]
    assert json.loads(ok(farm.pul("pul_query", "-j", "-a", "name", str(a)))) == [{"name": "old_a"}]


def test_pul_query_constraints_sort_tree_long(farm, user):
    a = farm.submit("cx_one", user, prod="p1")
    b = farm.submit("cx_two", user, prod="p2", group=True)
    ok(farm.pul("pul_pause", str(b)))

    def ids(*args):
        return ids_of_csv(ok(farm.pul("pul_query", "-c", "-C", f"user={user}", *args)))

    assert ids() == [a, b]
    assert ids("-C", "name=cx_*", "-C", "prod=p2") == [b]
    assert ids("-C", "status=6") == [b]
    assert ids("-C", "status=paused") == [b]
    assert ids("-C", f"id={a}") == [a]
    assert ids("-C", "pool=hold") == [a, b]
    assert ids("-C", "creationtime=2000-01-01 00:00:00") == [a, b]
    assert ids("-C", "starttime=2000-01-01") == []
    assert ids("-o", "name", "-r") == [b, a]
    assert [r.split()[2] for r in ok(farm.pul("pul_query", "-t", user)).splitlines()[1:-1]] == \
        ["cx_one", "cx_two", "├", "└"]
    assert "CMDS" in ok(farm.pul("pul_query", "-l", user)).splitlines()[0]
    fails(farm.pul("pul_query", "-C", "colour=red"), 2, "-C 'colour=red'")


def test_pul_query_data_command_lists_commands(farm, user):
    job = farm.submit("cmdjob", user, frames=3)
    text = ok(farm.pul("pul_query", "-d", "command", str(job)))
    assert "DESC" in text.splitlines()[0] and "cmdjob_2_2" in text
    items = json.loads(ok(farm.pul("pul_query", "-d", "command", "-j", "-C", f"id={job}", "-C", "status=ready")))
    assert [i["description"] for i in items] == ["cmdjob_1_1", "cmdjob_2_2", "cmdjob_3_3"]
    assert json.loads(ok(farm.pul("pul_query", "-d", "command", "-j", str(job), "-C", "status=DONE"))) == []


def test_pul_rn_lists_render_nodes(farm):
    name = farm.standin.name
    text = ok(farm.pul("pul_rn"))
    assert "HOST" in text.splitlines()[0] and name in text
    assert [i["name"] for i in json.loads(ok(farm.pul("pul_rn", "-j", "-C", "coresnumber=+8")))] == [name]
    assert json.loads(ok(farm.pul("pul_rn", "-j", "-C", "coresnumber=-8"))) == []
    rows = list(csv.DictReader(io.StringIO(ok(farm.pul("pul_rn", "-c", "-C", f"name=*{name.split(':')[1]}")))))
    assert [r["name"] for r in rows] == [name]
    assert ok(farm.pul("pul_rn", "-a", "name", "-a", "coresNumber", "-o", "name")).splitlines() == ["name,coresNumber", f"{name},16"]
    fails(farm.pul("pul_rn", "-C", "speed=fast"), 2, "'fast'")


def test_pul_query_server_and_port_options(farm, user):
    job = farm.submit("addressed", user)
    parts = urlsplit(farm.url)
    assert table_ids(ok(farm.pul("pul_query", "-s", parts.hostname, "-p", parts.port, str(job), server=False))) == [job]
    assert table_ids(ok(farm.pul("pul_query", "--server", farm.url, str(job), server=False))) == [job]
    fails(farm.pul("pul_query", "-s", parts.hostname, "-p", parts.port + 1 if parts.port < 65535 else 1,
                   server=False), 3, "cannot reach the dispatcher")
    fails(farm.pul("pul_rn", "-s", unreachable_url(), server=False), 3, "cannot reach")
    fails(farm.pul("pul_cancel", "-s", unreachable_url(), "1", server=False), 3, "cannot reach")


def test_pul_edit_sets_dispatch_key_and_max_rn(farm, user):
    a, b = farm.submit("e1", user), farm.submit("e2", user)
    assert ok(farm.pul("pul_edit", "--field", "dispatchKey", "--value", "4", user)) == \
        f"set dispatchKey 4 on 2 jobs: {a}, {b}\n"
    assert farm.node(a)["dispatchKey"] == 4 and farm.node(b)["dispatchKey"] == 4
    ok(farm.pul("pul_edit", "--field", "maxRN", "--value", "2", "-C", f"id={b}"))
    assert farm.node(b)["maxRN"] == 2 and farm.node(a)["maxRN"] == -1
    summary = json.loads(ok(farm.pul("pul_edit", "-j", "--field", "maxRN", "--value", "5", str(a))))
    assert summary["editedJobs"] == [a] and summary["summary"]["editedCount"] == 1
    fails(farm.pul("pul_edit", "--field", "dispatchKey", "--value", "9"), 2, "give job ids or at least one filter")
    fails(farm.pul("pul_edit", "--field", "colour", "--value", "9", str(a)), 2, "dispatchKey or maxRN")
    assert farm.node(a)["dispatchKey"] == 4


def test_pul_set_status_and_the_cancel_restart_launchers(farm, user):
    a, b, done = farm.submit("st1", user), farm.submit("st2", user), farm.submit("st3", "other" + user)
    assert ok(farm.pul("pul_set_status", "--set", "5", str(a))) == f"canceled 1 job: {a}\n"
    assert farm.node(a)["status"] == NS.CANCELED
    ok(farm.pul("pul_set_status", "--set", "1", str(a)))
    assert farm.node(a)["status"] == NS.READY
    ok(farm.pul("pul_set_status", "--set", "3", "-C", f"id={done}"))
    assert farm.node(done)["status"] == NS.DONE
    fails(farm.pul("pul_set_status", "--set", "2", str(a)), 1, "update_status must be")
    fails(farm.pul("pul_set_status", "--set", "5"), 2, "give job ids or at least one filter")
    assert ok(farm.pul("pul_cancel", user)) == f"canceled 2 jobs: {a}, {b}\n"
    assert farm.node(a)["status"] == NS.CANCELED and farm.node(b)["status"] == NS.CANCELED
    assert ok(farm.pul("pul_restart", "-C", f"user={user}")) == f"restarted 2 jobs: {a}, {b}\n"
    assert farm.node(a)["status"] == NS.READY and farm.node(b)["status"] == NS.READY
    assert all(c["status"] == CS.READY for c in farm.commands(a))
    fails(farm.pul("pul_cancel"), 2, "give job ids or at least one filter")


def test_pul_set_pause_and_the_pause_resume_launchers(farm, user):
    a, b = farm.submit("pa1", user), farm.submit("pa2", user)
    assert ok(farm.pul("pul_set_pause", "--set", "1", str(a))) == f"paused 1 job: {a}\n"
    assert farm.node(a)["paused"]
    ok(farm.pul("pul_set_pause", "--set", "0", str(a)))
    assert not farm.node(a)["paused"]
    fails(farm.pul("pul_set_pause", "--set", "2", str(a)), 2, "invalid choice")
    assert ok(farm.pul("pul_pause", user)) == f"paused 2 jobs: {a}, {b}\n"
    assert farm.node(a)["paused"] and farm.node(b)["paused"]
    assert ok(farm.pul("pul_resume", "-C", "name=pa*", "-C", f"user={user}")) == f"resumed 2 jobs: {a}, {b}\n"
    assert not farm.node(a)["paused"] and not farm.node(b)["paused"]
    fails(farm.pul("pul_pause"), 2, "give job ids or at least one filter")


def test_every_pul_name_has_help(farm):
    names = ("pul_query", "pul_rn", "pul_edit", "pul_set_status", "pul_set_pause", "pul_cancel",
             "pul_restart", "pul_pause", "pul_resume")
    with ThreadPoolExecutor(8) as pool:
        helps = pool.map(lambda name: farm.pul(name, "--help", server=False), names)
    for name, result in zip(names, helps):
        assert ok(result).startswith(f"usage: {name}")
