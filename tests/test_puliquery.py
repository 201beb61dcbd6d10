"""puliquery for real: the CLI as a subprocess against a real dispatcher, every listing in every
output format, every filter, every action with its effect read back from the API, and the errors."""
import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from processes import ROOT, StandInWorker, wait_for
from puli.model.status import CommandStatus as CS, NodeStatus as NS
from test_puliquery_support import HOLD, fails, farm, ok, unreachable_url, user  # noqa: F401

JOB_HEADER = ["ID", "ST", "NAME", "PROD", "SHOT", "OWNER", "%", "PRIO", "MAXRN", "ALLOC",
              "SUBMITTED", "START", "END", "RUN TIME"]


def table(text):
    """(header line, row lines, footer line) of a table printed with a footer."""
    lines = text.rstrip("\n").splitlines()
    return lines[0], lines[1:-1], lines[-1]


def ids_in(text):
    _, rows, _ = table(text)
    return [int(row.split()[0]) for row in rows]


def rows_of_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


# -- listing jobs --------------------------------------------------------------------------------------
def test_jobs_is_the_default_and_prints_puli_columns_and_a_footer(farm, user):
    a = farm.submit("shot010_light", user, frames=3, prod="feature", shot="sh010")
    b = farm.submit("shot020_comp", user, prod="feature", shot="sh020")
    header, rows, footer = table(ok(farm.pq("--user", user)))
    for word in JOB_HEADER:
        assert word in header
    assert [int(r.split()[0]) for r in rows] == [a, b]
    assert rows[0].split()[1:6] == ["READY", "shot010_light", "feature", "sh010", user]
    assert re.fullmatch(r"2 of \d+ jobs in \d+ ms", footer), footer
    assert ok(farm.pq("jobs", "--user", user)) .splitlines()[1:3] == rows


def test_jobs_as_json_are_the_dispatchers_items(farm, user):
    a = farm.submit("json_job", user, prod="p", shot="s")
    items = json.loads(ok(farm.pq("--json", "jobs", "--user", user)))
    assert [i["id"] for i in items] == [a]
    item = items[0]
    assert item["name"] == "json_job" and item["user"] == user and item["status"] == NS.READY
    assert item["prod"] == "p" and item["shot"] == "s" and item["pool"] == HOLD
    assert item["commandCount"] == 1 and isinstance(item["creationTime"], float)
    # The output options may also follow the subcommand.
    assert json.loads(ok(farm.pq("jobs", "--user", user, "--json"))) == items


def test_jobs_as_csv_have_a_header_then_one_row_per_job(farm, user):
    a = farm.submit("csv_job", user, frames=4, prod="p,1")
    b = farm.submit("csv_job2", user)
    rows = rows_of_csv(ok(farm.pq("--csv", "--user", user)))
    assert [int(r["id"]) for r in rows] == [a, b]
    assert rows[0]["name"] == "csv_job" and rows[0]["prod"] == "p,1" and rows[0]["commandCount"] == "4"
    assert rows[0]["status"] == str(int(NS.READY)) and rows[0]["startTime"] == ""


def test_positional_restrictions_are_job_ids_or_users(farm, user):
    a = farm.submit("r1", user)
    b = farm.submit("r2", user)
    assert ids_in(ok(farm.pq(str(b)))) == [b]
    assert ids_in(ok(farm.pq(user))) == [a, b]
    assert ids_in(ok(farm.pq(str(a), user))) == [a]


def test_every_job_filter(farm, user):
    light = farm.submit("sq01_light_v001", user, prod="alpha")
    comp = farm.submit("sq01_comp_v002", user, prod="beta", pool="hold2")
    ran = farm.submit("sq02_light_v003", user, prod="alpha", pool="default")
    (cmd,) = farm.commands(ran)
    farm.report(cmd["id"], CS.RUNNING)
    farm.report(cmd["id"], CS.DONE)
    assert ok(farm.pq("pause", comp)).startswith("paused 1 job")

    def ids(*args):
        return [int(r["id"]) for r in rows_of_csv(ok(farm.pq("--csv", "--user", user, *args)))]

    assert ids("--id", light, "--id", comp) == [light, comp]
    assert ids("--status", "paused") == [comp]
    assert ids("--status", str(int(NS.PAUSED))) == [comp]
    assert ids("--status", "READY,done") == [light, ran]
    assert ids("--name", "sq01_*") == [light, comp]
    assert ids("--name", "*light*") == [light, ran]
    assert ids("--name", "sq01") == []          # the whole name must match
    assert ids("--prod", "alpha") == [light, ran]
    assert ids("--pool", "hold2") == [comp]
    assert ids("--since", "1h") == [light, comp, ran]
    assert ids("--created-after", time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + 120))) == []
    assert ids("--started-after", "10m") == [ran]
    assert ids("--started-after", time.strftime("%Y-%m-%d", time.localtime(time.time() + 86400))) == []
    assert ids("--ended-after", "2d") == [ran]
    assert ids("--ended-after", "2d", "--prod", "beta") == []


def test_tree_shows_the_tasks_under_each_job(farm, user):
    job = farm.submit("grouped", user, frames=2, group=True)
    _, rows, _ = table(ok(farm.pq("--tree", "--user", user)))
    assert [r.split()[2:4] for r in rows] == [["grouped", "-"], ["├", "grouped_render"], ["└", "grouped_comp"]]
    assert "BLOCKED" in rows[2]
    (item,) = json.loads(ok(farm.pq("--json", "jobs", "-t", "--user", user)))
    assert item["id"] == job and [c["name"] for c in item["items"]] == ["grouped_render", "grouped_comp"]
    rows = rows_of_csv(ok(farm.pq("--csv", "jobs", "--tree", "--user", user)))
    assert [(r["name"], r["depth"]) for r in rows] == [("grouped", "0"), ("grouped_render", "1"), ("grouped_comp", "1")]


def test_sort_reverse_attributes_and_long(farm, user):
    b = farm.submit("b_job", user)
    a = farm.submit("a_job", user)
    c = farm.submit("c_job", user)
    ok(farm.pq("set-prio", 5, a))
    assert ids_in(ok(farm.pq("--user", user, "--sort", "name"))) == [a, b, c]
    assert ids_in(ok(farm.pq("--user", user, "--sort", "NAME", "-r"))) == [c, b, a]
    assert ids_in(ok(farm.pq("--user", user, "--sort", "prio", "--reverse"))) == [a, b, c]
    fails(farm.pq("--user", user, "--sort", "colour"), 2, "cannot sort on 'colour'")
    assert ok(farm.pq("--csv", "--user", user, "-a", "id", "-a", "name", "-a", "tags:prod")).splitlines() == [
        "id,name,prod", f"{b},b_job,", f"{a},a_job,", f"{c},c_job,"]
    header, rows, _ = table(ok(farm.pq("--user", user, "-a", "id", "-a", "status")))
    assert header.split() == ["id", "status"] and rows[0].split() == [str(b), "READY"]
    header = ok(farm.pq("-l", "--user", user)).splitlines()[0]
    for word in ("POOL", "CMDS", "READY", "DONE", "ATTEMPT", "AVG/FRAME"):
        assert word in header


def test_the_table_fits_the_terminal_truncating_the_name_first(farm, user):
    farm.submit("a_very_long_job_name_" + "x" * 80, user, prod="feature", shot="sh0100")
    wide = ok(farm.pq("--user", user, env={"COLUMNS": "300"}))
    assert "x" * 80 in wide and len(wide.splitlines()[1]) > 120
    for width in (120, 100, 80):
        text = ok(farm.pq("--user", user, env={"COLUMNS": str(width)}))
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), (width, text)
        assert "a_very_long_job_name_" in lines[1] and "…" in lines[1]
        assert user in lines[1] and "OWNER" in lines[0]
    # Without a terminal (and no $COLUMNS) nothing is cut: scripts reading the table get it all.
    assert "x" * 80 in ok(farm.pq("--user", user))


def test_status_names_are_colored_on_a_terminal_only(farm, user):
    farm.submit("colored", user)
    assert "\x1b[" not in ok(farm.pq("--user", user))
    master, slave = pty.openpty()
    env = dict(os.environ, PULI_SERVER=farm.url, PULI_TOKEN=farm.dispatcher.token, COLUMNS="200", TERM="xterm")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "puli.cli.puliquery", "--user", user],
                            stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    output = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:         # EIO: the child closed the terminal
            break
        if not data:
            break
        output += data
    os.close(master)
    assert proc.wait(30) == 0
    assert b"\x1b[" in output and b"READY" in output and b"colored" in output


# -- one job, commands ---------------------------------------------------------------------------------
def test_job_shows_its_tree_and_its_commands(farm, user):
    job = farm.submit("showme", user, frames=2, group=True, prod="feature")
    text = ok(farm.pq("job", job))
    assert text.startswith(f"job {job}  showme  READY")
    assert "prod feature" in text and f"pool {HOLD}" in text
    assert "├ showme_render" in text and "└ showme_comp" in text
    for frame in (1, 2):
        assert f"showme_render_{frame}_{frame}" in text and f"showme_comp_{frame}_{frame}" in text
    data = json.loads(ok(farm.pq("--json", "job", job)))
    assert data["job"]["id"] == job and len(data["tasks"]) == 3 and len(data["commands"]) == 4
    rows = rows_of_csv(ok(farm.pq("job", job, "--csv")))
    assert [r["description"] for r in rows] == ["showme_render_1_1", "showme_render_2_2",
                                                "showme_comp_1_1", "showme_comp_2_2"]
    fails(farm.pq("job", 987654), 1, "no node 987654")


def test_job_shows_an_archived_job_from_the_store(farm, user):
    job = farm.submit("archived", user)
    ok(farm.pq("done", job))
    assert farm.call("POST", "/tasks/delete", {"taskids": str(job)})[0] == 200
    wait_for(lambda: farm.call("GET", f"/nodes/{job}")[0] == 200, what="the archived job to be readable")
    text = ok(farm.pq("job", job))
    assert text.startswith(f"job {job}  archived  DONE  100%") and "(archived" in text
    assert json.loads(ok(farm.pq("job", job, "--json")))["job"]["archived"] is True


def test_commands_lists_and_filters_commands(farm, user):
    job = farm.submit("cmds", user, frames=3, pool="default")
    first, second, third = [c["id"] for c in farm.commands(job)]
    farm.report(first, CS.RUNNING, completion=0.5)
    farm.report(second, CS.ERROR, message="exit code 3")
    header, rows, footer = table(ok(farm.pq("commands", job)))
    for word in ("ID", "ST", "DESC", "%", "RENDER NODE", "MESSAGE"):
        assert word in header
    assert [int(r.split()[0]) for r in rows] == [first, second, third]
    assert "RUNNING" in rows[0] and "50" in rows[0].split() and farm.standin.name in rows[0]
    assert "ERROR" in rows[1] and "exit code 3" in rows[1]
    assert re.fullmatch(r"3 of \d+ commands in \d+ ms", footer)
    items = json.loads(ok(farm.pq("--json", "commands", "--job", job, "--status", "error")))
    assert [(i["id"], i["message"]) for i in items] == [(second, "exit code 3")]
    rows = rows_of_csv(ok(farm.pq("--csv", "commands", "--id", third)))
    assert [(int(r["id"]), r["job"], r["description"]) for r in rows] == [(third, str(job), "cmds_3_3")]
    started = rows_of_csv(ok(farm.pq("--csv", "commands", job, "--started-after", "1h")))
    assert {int(r["id"]) for r in started} == {first, second, third} - {
        c["id"] for c in farm.commands(job) if c["startTime"] is None}
    assert rows_of_csv(ok(farm.pq("--csv", "commands", job, "--started-before", "1h"))) == []
    assert len(rows_of_csv(ok(farm.pq("--csv", "commands", job, "--limit", 2)))) == 2
    farm.report(first, CS.DONE)


# -- render nodes, pools, pool shares, licenses --------------------------------------------------------
def test_rn_lists_render_nodes_with_puli_filters(farm):
    side = StandInWorker()
    try:
        side.register(farm.dispatcher, cores=2, pools=["side"])
        header, rows, footer = table(ok(farm.pq("rn")))
        for word in ("ID", "ST", "HOST", "CORES", "FREE", "RAM", "FREE RAM", "GHZ", "VERSION",
                     "%SWAP", "LAST PING", "POOLS", "QUARANTINE"):
            assert word in header
        assert {farm.standin.name, side.name} <= {r.split()[2] for r in rows}
        assert re.fullmatch(r"\d+ of \d+ render nodes in \d+ ms", footer)

        def names(*args):
            return {i["name"] for i in json.loads(ok(farm.pq("--json", "rn", *args)))}

        assert names("--pool", "side") == {side.name}
        assert names("--cores", "+8") == {farm.standin.name}
        assert names("--cores", "-8") == {side.name}
        assert names("--cores", "2") == {side.name}
        assert names("--ram", "+1000", "--speed", "3", "--pool", "side") == {side.name}
        assert names("--name", f"*:{side.port}") == {side.name}
        assert names(f"127.0.0.1:{side.port}") == {side.name}
        assert names("127.0.0.1") >= {side.name, farm.standin.name}     # a host alone: any port
        assert names("--status", "idle") >= {side.name}
        assert names("--status", "paused") == set()
        fails(farm.pq("rn", "--cores", "lots"), 2, "'lots'")
        rows = rows_of_csv(ok(farm.pq("--csv", "rn", "--pool", "side")))
        assert [(r["name"], r["coresNumber"], r["pools"]) for r in rows] == [(side.name, "2", "default side")]
    finally:
        farm.call("DELETE", f"/rendernodes/{side.name}")
        side.close()


def test_pools_poolshares_and_licenses_are_listed(farm, user):
    ok(farm.pq("pool-create", "listed"))
    job = farm.submit("in_listed", user, pool="listed")
    ok(farm.pq("license", "listedlic", 4))
    _, rows, _ = table(ok(farm.pq("pools")))
    assert any(r.split()[0] == "listed" for r in rows)
    pools = {p["name"]: p for p in json.loads(ok(farm.pq("--json", "pools")))}
    assert pools["listed"]["poolShares"] and farm.standin.name in pools["default"]["renderNodes"]
    assert "listed" in {r["name"] for r in rows_of_csv(ok(farm.pq("--csv", "pools")))}

    shares = json.loads(ok(farm.pq("--json", "poolshares", "--pool", "listed")))
    assert [(s["poolName"], s["nodeId"]) for s in shares] == [("listed", job)]
    _, rows, _ = table(ok(farm.pq("poolshares")))
    assert any(r.split()[1:3] == ["listed", str(job)] for r in rows)
    assert rows_of_csv(ok(farm.pq("--csv", "poolshares", "--pool", "listed")))[0]["nodeId"] == str(job)

    _, rows, _ = table(ok(farm.pq("licenses")))
    assert any(r.split()[:3] == ["listedlic", "0", "4"] for r in rows)
    lics = {lic["name"]: lic for lic in json.loads(ok(farm.pq("--json", "licenses")))}
    assert lics["listedlic"] == {"name": "listedlic", "max": 4, "used": 0, "rns": []}
    assert {"name": "listedlic", "used": "0", "max": "4", "rns": ""} in rows_of_csv(ok(farm.pq("--csv", "licenses")))


# -- acting on jobs ---------------------------------------------------------------------------------------
def test_pause_and_resume_job_ids(farm, user):
    a, b = farm.submit("p1", user), farm.submit("p2", user)
    assert ok(farm.pq("pause", a, b)) == f"paused 2 jobs: {a}, {b}\n"
    assert farm.node(a)["paused"] and farm.node(b)["status"] == NS.PAUSED
    assert ok(farm.pq("pause", a)) == "paused 0 jobs\n1 matching job left as it was\n"
    assert ok(farm.pq("resume", b)) == f"resumed 1 job: {b}\n"
    assert not farm.node(b)["paused"] and farm.node(a)["paused"]


def test_an_action_by_filter_reports_what_it_changed(farm, user):
    a, b, c = farm.submit("f1", user), farm.submit("f2", user), farm.submit("other", user)
    ok(farm.pq("pause", b))
    assert ok(farm.pq("pause", "--user", user, "--name", "f*")) == \
        f"paused 1 job: {a}\n1 other matching job left as it was\n"
    summary = json.loads(ok(farm.pq("--json", "resume", "--user", user, "--status", "paused")))
    assert sorted(summary["editedJobs"]) == [a, b]
    assert summary["summary"]["editedCount"] == 2 and summary["summary"]["filteredCount"] == 2
    assert not farm.node(a)["paused"] and not farm.node(c)["paused"]
    rows = rows_of_csv(ok(farm.pq("--csv", "pause", user)))
    assert sorted(int(r["id"]) for r in rows) == [a, b, c]


def test_acting_without_job_ids_or_a_filter_is_refused(farm, user):
    job = farm.submit("safe", user)
    for action in (["pause"], ["cancel"], ["set-prio", "5"], ["set-pool", "default"], ["retry"]):
        fails(farm.pq(*action), 2, "give job ids or at least one filter")
    assert farm.node(job)["status"] == NS.READY and farm.node(job)["dispatchKey"] == 0


def test_an_unknown_job_id_changes_nothing(farm, user):
    job = farm.submit("known", user)
    fails(farm.pq("cancel", job, 987654), 1, "no job 987654", "nothing was changed")
    assert farm.node(job)["status"] == NS.READY


def test_a_filter_that_matches_nothing_says_so(farm, user):
    result = farm.pq("pause", "--user", user, "--name", "nothing*")
    fails(result, 1, "no job matches")
    assert result.stdout == "paused 0 jobs\n"


def test_cancel_restart_and_done(farm, user):
    job = farm.submit("lifecycle", user, frames=2)
    assert ok(farm.pq("cancel", job)) == f"canceled 1 job: {job}\n"
    assert farm.node(job)["status"] == NS.CANCELED
    assert ok(farm.pq("restart", job)) == f"restarted 1 job: {job}\n"
    assert farm.node(job)["status"] == NS.READY
    assert ok(farm.pq("done", job)) == f"forced DONE on 1 job: {job}\n"
    assert farm.node(job)["status"] == NS.DONE and farm.node(job)["completion"] == 1.0


def test_restart_cascades_to_dependent_jobs_unless_told_not_to(farm, user):
    first = farm.submit("first", user)
    second = farm.submit("second", user, dependencies=[[{"nodeId": first}, [int(NS.DONE)]]])
    ok(farm.pq("done", first, second))
    ok(farm.pq("restart", "--no-cascade", first))
    assert farm.node(first)["status"] == NS.READY and farm.node(second)["status"] == NS.DONE
    ok(farm.pq("done", first))
    ok(farm.pq("restart", first))
    assert farm.node(first)["status"] == NS.READY
    assert farm.node(second)["status"] in (NS.READY, NS.BLOCKED)


def test_retry_restarts_only_the_failed_commands(farm, user):
    job = farm.submit("flaky", user, frames=2, pool="default")
    good, bad = [c["id"] for c in farm.commands(job)]
    farm.report(good, CS.DONE)
    farm.report(bad, CS.ERROR, message="boom")
    assert farm.node(job)["status"] == NS.ERROR
    assert ok(farm.pq("retry", "--user", user, "--status", "error")) == \
        f"retried 1 failed command in 1 job: {job}\n"
    assert farm.command(good)["status"] == CS.DONE
    assert farm.command(bad)["status"] in (CS.READY, CS.ASSIGNED)
    assert ok(farm.pq("retry", job)) == "retried 0 failed commands in 0 jobs\n1 matching job left as it was\n"
    farm.report(bad, CS.DONE)


def test_set_priority_maxrn_and_pool(farm, user):
    a, b = farm.submit("s1", user), farm.submit("s2", user)
    assert ok(farm.pq("set-prio", 5, a)) == f"set dispatchKey 5 on 1 job: {a}\n"
    assert ok(farm.pq("set-dispatchkey", "-2.5", "--user", user)) == f"set dispatchKey -2.5 on 2 jobs: {a}, {b}\n"
    assert farm.node(a)["dispatchKey"] == -2.5 and farm.node(b)["dispatchKey"] == -2.5
    assert ok(farm.pq("set-maxrn", 3, b)) == f"set maxRN 3 on 1 job: {b}\n"
    assert farm.node(b)["maxRN"] == 3
    fails(farm.pq("set-maxrn", "lots", b), 2, "invalid int value")
    ok(farm.pq("pool-create", "moved_to"))
    assert ok(farm.pq("set-pool", "moved_to", a, b)) == f"moved 2 jobs: {a}, {b} to pool moved_to\n"
    assert farm.node(a)["poolName"] == "moved_to" and farm.node(b)["poolName"] == "moved_to"
    fails(farm.pq("set-pool", "no_such_pool", a), 1, "no pool no_such_pool")
    assert farm.node(a)["poolName"] == "moved_to"


# -- acting on render nodes, licenses, pools ------------------------------------------------------------
def test_render_node_pause_resume_and_quarantine(farm):
    side = StandInWorker()
    try:
        side.register(farm.dispatcher, cores=2, pools=["rnside"])
        rn = lambda: farm.get(f"/rendernodes/{side.name}")    # noqa: E731
        assert ok(farm.pq("rn-pause", side.name)) == f"paused render node {side.name}\n"
        assert rn()["paused"] and rn()["status"] == 2
        assert ok(farm.pq("rn-resume", side.name)) == f"resumed render node {side.name}\n"
        assert not rn()["paused"]
        assert ok(farm.pq("rn-pause", "--kill", side.name)) == f"paused and emptied render node {side.name}\n"
        assert rn()["paused"]
        ok(farm.pq("rn-resume", side.name))
        assert ok(farm.pq("quarantine", side.name)) == f"put in quarantine: {side.name}\n"
        assert rn()["quarantined"]
        assert "yes" in [line for line in ok(farm.pq("rn", side.name)).splitlines() if side.name in line][0]
        assert ok(farm.pq("unquarantine", side.name)) == f"released from quarantine: {side.name}\n"
        assert not rn()["quarantined"]
        fails(farm.pq("rn-pause", side.name, "nosuch:9"), 1, "no render node nosuch:9")
        assert not rn()["paused"]
        fails(farm.pq("quarantine", "nosuch:9"), 1, "no render node nosuch:9")
    finally:
        farm.call("DELETE", f"/rendernodes/{side.name}")
        side.close()


def test_license_count_and_pools(farm):
    assert ok(farm.pq("license", "katana", 7)) == "license katana: 0 of 7 in use\n"
    assert farm.get("/licenses/katana")["max"] == 7
    assert json.loads(ok(farm.pq("--json", "license", "katana", 3)))["max"] == 3
    assert ok(farm.pq("pool-create", "gpu")) == "created pool gpu\n"
    fails(farm.pq("pool-create", "gpu"), 1, "409")
    assert ok(farm.pq("pool-set-nodes", "gpu", farm.standin.name)) == f"pool gpu: {farm.standin.name}\n"
    assert farm.get("/pools/gpu")["renderNodes"] == [farm.standin.name]
    assert ok(farm.pq("pool-delete", "gpu")) == "deleted pool gpu\n"
    assert farm.call("GET", "/pools/gpu")[0] == 404
    fails(farm.pq("pool-delete", "gpu"), 1, "no pool gpu")


# -- errors and help ----------------------------------------------------------------------------------------
def test_an_unreachable_dispatcher_is_one_line_and_exit_3(farm):
    address = unreachable_url()
    for args, env in ((["--server", address, "jobs"], None), (["rn"], {"PULI_SERVER": address}),
                      (["pause", "--server", address, "42"], None)):
        stderr = fails(farm.pq(*args, server=False, env=env), 3, "cannot reach the dispatcher", address)
        assert stderr.startswith("puliquery: ")


def test_a_refusal_is_exit_1_with_the_servers_description(farm):
    fails(farm.pq("--name", "sh.*"), 1, "not a regular expression", "sh*")
    fails(farm.pq("commands", "--id", "1", "--id", "x"), 2, "invalid int value")
    fails(farm.pq("license", "neg", "-1"), 1, "'maxlic' must be at least 0")


def test_usage_errors_exit_2(farm):
    fails(farm.pq("--status", "sleeping"), 2, "'sleeping' is not a status")
    fails(farm.pq("--since", "yesterday"), 2, "'yesterday' is not a date")
    fails(farm.pq("jobs", "--colour"), 2, "unrecognized arguments")
    fails(farm.pq("log", 1, "--tail", "-3"), 2, "--tail")


def test_help_everywhere(farm):
    subcommands = ["jobs", "job", "commands", "rn", "pools", "poolshares", "licenses", "pause",
                   "resume", "cancel", "restart", "retry", "done", "set-prio", "set-dispatchkey",
                   "set-maxrn", "set-pool", "rn-pause", "rn-resume", "quarantine", "unquarantine",
                   "license", "pool-create", "pool-delete", "pool-set-nodes", "log"]
    text = ok(farm.pq("--help", server=False))
    with ThreadPoolExecutor(8) as pool:
        helps = pool.map(lambda name: farm.pq(name, "--help", server=False), subcommands)
    for name, result in zip(subcommands, helps):
        assert name in text
        assert ok(result).startswith(f"usage: puliquery {name}")
