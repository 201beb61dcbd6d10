"""The store on real SQLite files and a real MariaDB database: round trips through a restart,
archive, id counters, atomic submissions, and recovery after the database failed."""
import sqlite3
import threading
import time
import urllib.parse

import MySQLdb
import pytest

from farmkit import add_rn, report, run_pass, task
from puli.model import job_operations, pool_admin, render_node_admin
from puli.model.build import build_job
from puli.model.farm import Farm
from puli.model.graph import parse_graph
from puli.model.status import CommandStatus as CS, NodeStatus as NS
from puli.store import StoreError, open_store
from puli.store import rows as store_rows
from puli.store.tables import (CommandTable, DependencyTable, LicenseTable, MetaTable, NodeTable,
                               PoolMemberTable, PoolShareTable, PoolTable, RenderNodeTable, columns)

FARM = dict(rn_timeout=60.0, retry_delay=20.0)


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """A database of each kind (the SQLite file's directory does not exist yet)."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/data/puli.sqlite"
    return request.getfixturevalue("mariadb_url")


@pytest.fixture
def store(db_url):
    store = open_store(db_url, clean=True)
    yield store
    store.close()


# -- helpers ----------------------------------------------------------------------------------------
def submit(farm, store, *tasks, now=0.0, group=False, root=None, **graph):
    """farmkit.submit, plus the commit the dispatcher makes between build and publish;
    `root` holds fields of the job's own node (tags, dependencies, dispatchKey...)."""
    tasks = [dict(t) for t in tasks]
    if group or len(tasks) > 1:
        top = {"type": "TaskGroup", "name": graph.pop("name", "job"), "tasks": list(range(1, len(tasks) + 1))}
        body = {"root": 0, "tasks": [top, *tasks]}
    else:
        top = tasks[0]
        body = {"root": 0, "tasks": tasks}
    top.update(root or {})
    body.update(graph)
    job = build_job(farm, parse_graph(body), now)
    store.insert_job(job)
    farm.publish(job, now)
    return job


def flush(farm, store):
    """What Service.flush does."""
    dirty = farm.take_dirty()
    if dirty:
        store.write(store.snapshot(farm, dirty))


def restart(db_url, now):
    """A new store and farm restored from the database, as the dispatcher does at start."""
    store = open_store(db_url)
    farm = Farm(**FARM)
    store.load(farm, now)
    return farm, store


def describe(farm):
    """Everything user-visible in a farm, as plain data."""
    nodes = {}
    for node_id, node in sorted(farm.nodes.items()):
        if node is farm.root:
            continue
        d = dict(type=type(node).__name__, name=node.name, parent=node.parent.id, job=node.job.id,
                 user=node.user, priority=node.priority, dispatch_key=node.dispatch_key,
                 max_rn=node.max_rn, paused=node.paused, tags=node.tags, environment=node.environment,
                 arguments=node.arguments, requirements=node.requirements, timer=node.timer,
                 times=(node.creation_time, node.start_time, node.update_time, node.end_time),
                 status=node.status, counts=list(node.counts), completion=round(node.completion, 9),
                 children=[c.id for c in getattr(node, "children", [])],
                 dependencies=[(d.target_id, sorted(d.statuses), d.satisfied) for d in node.dependencies],
                 dependents=sorted(d.node.id for d in node.dependents),
                 unsatisfied=node.unsatisfied, blocked=node.blocked())
        if node.is_task:
            d.update(runner=node.runner, cores=(node.min_cores, node.max_cores), ram_use=node.ram_use,
                     licenses=node.licenses, max_attempt=node.max_attempt, max_run_time=node.max_run_time,
                     validation=node.validation_expression,
                     packages=(node.runner_packages, node.watcher_packages),
                     ready=sorted({c.id for c in node.ready if c.status == CS.READY}),
                     commands=[c.id for c in node.commands])
        else:
            d["strategy"] = node.strategy
        if node.is_job:
            d.update(share=(node.share.id, node.share.pool.name, node.share.max_rn),
                     ready_tasks=sorted(t.id for t in node.ready_tasks))
        nodes[node_id] = d
    commands = {
        c.id: (c.task.id, c.description, c.status, c.completion, c.attempt, c.start_time, c.update_time,
               c.end_time, c.render_node.name if c.render_node else None, c.assignment, c.cores, c.ram,
               c.message, c.stats, c.args_json, c.nb_frames)
        for c in farm.commands.values()}
    render_nodes = {
        rn.name: dict(id=rn.id, host=rn.host, port=rn.port, cores=rn.cores, ram=rn.ram, speed=rn.speed,
                      caracteristics=rn.caracteristics, puliversion=rn.puliversion,
                      performance=rn.performance, paused=rn.paused, quarantined=rn.quarantined,
                      dates=(rn.create_date, rn.register_date), pools=sorted(p.name for p in rn.pools),
                      commands=sorted(rn.commands), free=(rn.free_cores, rn.free_ram),
                      # derived: the model does not refresh rn.status when a command starts RUNNING
                      status=rn.derive_status())
        for rn in farm.render_nodes.values()}
    pools = {
        name: dict(id=p.id, render_nodes=list(p.render_nodes), shares=sorted(p.shares),
                   jobs=sorted(j.id for j in p.jobs), free=sorted(rn.name for rn in p.free))
        for name, p in farm.pools.items()}
    return dict(
        counters=[farm.next_node_id, farm.next_command_id, farm.next_share_id, farm.next_pool_id,
                  farm.next_rn_id, farm.next_assignment],
        root=(list(farm.root.counts), round(farm.root.completion, 9), [j.id for j in farm.root.children]),
        nodes=nodes, commands=commands, render_nodes=render_nodes, pools=pools,
        shares={s.id: (s.pool.name, s.node.id, s.max_rn) for s in farm.shares.values()},
        licenses={n: (lic.maximum, lic.used, dict(lic.holders)) for n, lic in farm.licenses.items()},
        retries=sorted(farm.retries),
    )


def assert_same(a, b):
    da, db = describe(a), describe(b)
    for key in da:                      # one item at a time, naming what differs
        if isinstance(da[key], dict) and da[key].keys() == db[key].keys():
            for item in da[key]:
                x, y = da[key][item], db[key][item]
                if isinstance(x, dict):
                    assert x == y, (key, item, {f: (x[f], y.get(f)) for f in x if x[f] != y.get(f)})
                assert x == y, (key, item)
        assert da[key] == db[key], key


def busy_farm(store, now=0.0):
    """A farm with a bit of everything, saved as the dispatcher saves it."""
    farm = Farm(**FARM)
    pool_admin.set_license(farm, "nuke", 2)
    pool_admin.set_license(farm, "arnold", 2)
    add_rn(farm, "a:8000", cores=8, pools=["lin", "gpu"], gpu=True)
    add_rn(farm, "b:8000", cores=4, pools=["lin"])
    add_rn(farm, "c:8000", cores=4, pools=["lin"])
    add_rn(farm, "d:8000", cores=2)
    a = submit(farm, store,
               task("render", frames=(1, 6), minNbCores=2, maxNbCores=2, lic="nuke", maxAttempt=2, maxRN=2),
               task("comp", frames=(1, 3), dependencies=[[1, [3]]], ramUse=500),
               task("timed", frames=(1, 2), timer=4_000_000_000.0, environment={"SHOT": "sh010"}),
               name="shot 🎬 héllo", poolName="lin", maxRN=3, user="bob",
               root={"priority": 5, "dispatchKey": 2, "tags": {"prod": "x"}})
    b = submit(farm, store, task("sim", frames=(1, 4), requirements={"gpu": True}, maxRunTime=3600),
               poolName="gpu", user="ann", root={"dependencies": [[{"nodeId": a.id}, [3]]]})
    c = submit(farm, store, task("paused", frames=(1, 3)), task("other", frames=(1, 1)),
               root={"tags": {"paused": "true"}, "dispatchKey": 1.5})
    d = submit(farm, store, task("quick", frames=(1, 2), lic="arnold", maxNbCores=1))
    e = submit(farm, store, task("after", frames=(1, 2)), root={"dependencies": [[{"nodeId": d.id}, [3]]]})
    flush(farm, store)

    sent = run_pass(farm, now + 1)
    assert sent
    by_task = {}
    for _, cmd in sent:
        by_task.setdefault(cmd.task.name, []).append(cmd)
    render = by_task["render"]
    report(farm, render[0], CS.RUNNING, now=now + 2, completion=0.4, stats={"peakRss": 1234})
    report(farm, render[1], CS.ERROR, now=now + 3, message="segfault")   # retried later
    flush(farm, store)
    for cmd in by_task["quick"]:
        report(farm, cmd, CS.RUNNING, now=now + 4)
        report(farm, cmd, CS.DONE, now=now + 5)
    assert e.status == NS.READY
    farm.archive_finished(now + 6, 0)          # d is DONE: out of memory
    assert d.archived and d.id not in farm.nodes
    job_operations.set_command_status(farm, c.children[0].commands[1], CS.CANCELED, now + 7)
    render_node_admin.set_quarantine(farm, farm.render_nodes["c:8000"], True)
    render_node_admin.set_render_node_paused(farm, farm.render_nodes["d:8000"], True)
    pool_admin.set_pool_members(farm, farm.pools["gpu"], ["a:8000", "b:8000"])
    job_operations.set_attribute(farm, c, "dispatch_key", 4.5)
    job_operations.set_attribute(farm, a.children[1], "priority", 7)
    job_operations.set_max_rn(farm, a.children[1], 1)
    job_operations.set_max_rn(farm, a, 5)
    job_operations.set_pool(farm, c, "lin", max_rn=2)
    pool_admin.create_pool(farm, "empty")
    flush(farm, store)
    return farm, dict(a=a, b=b, c=c, d=d, e=e, running=render[0], failed=render[1])


# -- the schema ---------------------------------------------------------------------------------------
def test_rows_cover_every_column():
    assert set(store_rows.NODE_COLUMNS) == set(columns(NodeTable))
    assert set(store_rows.COMMAND_COLUMNS) == set(columns(CommandTable))
    assert set(store_rows.DEPENDENCY_COLUMNS) | {"id"} == set(columns(DependencyTable))
    assert set(store_rows.POOL_COLUMNS) == set(columns(PoolTable))
    assert set(store_rows.MEMBER_COLUMNS) | {"id"} == set(columns(PoolMemberTable))
    assert set(store_rows.SHARE_COLUMNS) == set(columns(PoolShareTable))
    assert set(store_rows.RENDER_NODE_COLUMNS) == set(columns(RenderNodeTable))
    assert set(store_rows.LICENSE_COLUMNS) | {"id"} == set(columns(LicenseTable))
    assert set(store_rows.META_COLUMNS) | {"id"} == set(columns(MetaTable))


def test_empty_database_restores_an_empty_farm(db_url, store):
    farm = Farm(**FARM)
    store.load(farm, 0.0)
    assert not farm.root.children and not farm.commands and list(farm.pools) == ["default"]
    assert farm.dirty.pools == {farm.pools["default"]}     # not stored yet: the next flush writes it
    flush(farm, store)
    again, store2 = restart(db_url, 0.0)
    assert again.pools["default"].id == 1 and not again.dirty
    store2.close()


# -- round trip -------------------------------------------------------------------------------------
def test_round_trip_restores_everything_user_visible(db_url, store):
    farm, jobs = busy_farm(store)
    restored, store2 = restart(db_url, 100.0)
    try:
        assert_same(farm, restored)
        assert not restored.dirty, "a restore must not schedule a rewrite of what it read"
        a, c, e = (restored.nodes[jobs[k].id] for k in "ace")
        # spot checks of what the comparison covers
        assert a.name == "shot 🎬 héllo" and a.share.max_rn == 5 and a.priority == 5
        assert a.children[1].max_rn == 1 and a.children[1].priority == 7
        assert a.children[2].timer == 4_000_000_000.0 and a.children[2].environment == {"SHOT": "sh010"}
        assert c.paused and c.status == NS.PAUSED and c.dispatch_key == 4.5 and c.share.pool.name == "lin"
        assert e.dependencies[0].target is None and e.dependencies[0].satisfied     # target archived
        assert restored.nodes[jobs["b"].id].status == NS.BLOCKED                      # cross-job
        running = restored.commands[jobs["running"].id]
        assert running.status == CS.RUNNING and running.completion == 0.4 and running.stats == {"peakRss": 1234}
        rn = restored.render_nodes["a:8000"]
        assert running.render_node is rn and running.id in rn.commands and rn.free_cores < rn.cores
        assert restored.licenses["nuke"].used == farm.licenses["nuke"].used >= 1
        assert restored.render_nodes["c:8000"].quarantined and restored.render_nodes["d:8000"].paused
        assert list(restored.pools["gpu"].render_nodes) == ["a:8000", "b:8000"]
        assert restored.retries and restored.retries[0][1] == jobs["failed"].id
    finally:
        store2.close()


def test_restored_farm_dispatches_like_the_original(db_url, store):
    farm, jobs = busy_farm(store)
    restored, store2 = restart(db_url, 100.0)
    try:
        for now in (100.0, 130.0):      # at 130 the failed command's retry is due
            farm.process_retries(now)
            restored.process_retries(now)
            want = [(name, cmd.id) for name, cmd in run_pass(farm, now)]
            got = [(name, cmd.id) for name, cmd in run_pass(restored, now)]
            assert want == got and want
            assert_same(farm, restored)
            for _, cmd_id in want:      # they finish, making room for the retry
                for f in (farm, restored):
                    report(f, f.commands[cmd_id], CS.DONE, now=now + 1)
        assert restored.commands[jobs["failed"].id].status == CS.READY      # requeued on both
    finally:
        store2.close()


def test_changes_after_a_restore_are_saved(db_url, store):
    farm, jobs = busy_farm(store)
    restored, store2 = restart(db_url, 100.0)
    running = restored.commands[jobs["running"].id]
    report(restored, running, CS.DONE, now=101.0)
    job_operations.pause(restored, restored.nodes[jobs["c"].id], False, 102.0)
    run_pass(restored, 103.0)
    flush(restored, store2)
    store2.close()
    again, store3 = restart(db_url, 200.0)
    try:
        assert_same(restored, again)
        assert again.commands[running.id].status == CS.DONE
    finally:
        store3.close()


def test_running_command_of_a_removed_render_node_is_requeued(db_url, store):
    farm = Farm(**FARM)
    rn = add_rn(farm, "gone:8000", cores=2)
    job = submit(farm, store, task("t", frames=(1, 1)))
    (_, cmd), = run_pass(farm, 1.0)
    report(farm, cmd, CS.RUNNING, now=2.0)
    flush(farm, store)
    # The render node row is archived behind the farm's back (as by an older dispatcher).
    rn.archived = True
    farm.dirty.render_nodes.add(rn)
    flush(farm, store)
    restored, store2 = restart(db_url, 10.0)
    try:
        again = restored.commands[cmd.id]
        assert "gone:8000" not in restored.render_nodes
        assert again.status == CS.READY and again.render_node is None
        assert restored.nodes[job.id].status == NS.READY
        assert again in restored.dirty.commands          # the requeue itself is saved
        flush(restored, store2)
    finally:
        store2.close()
    third, store3 = restart(db_url, 20.0)
    assert third.commands[cmd.id].status == CS.READY
    store3.close()


def test_removed_render_node_keeps_its_name_on_finished_commands(db_url, store):
    farm = Farm(**FARM)
    rn = add_rn(farm, "old:8000", cores=2)
    submit(farm, store, task("t", frames=(1, 1)))
    (_, cmd), = run_pass(farm, 1.0)
    report(farm, cmd, CS.DONE, now=2.0)
    render_node_admin.remove_render_node(farm, rn, 3.0)
    flush(farm, store)
    restored, store2 = restart(db_url, 10.0)
    assert "old:8000" not in restored.render_nodes
    assert restored.commands[cmd.id].render_node.name == "old:8000"
    assert_same(farm, restored)
    # The same name registers again: a new render node with a new id.
    back = add_rn(restored, "old:8000", cores=4)
    assert back.id > rn.id
    flush(restored, store2)
    store2.close()
    third, store3 = restart(db_url, 20.0)
    assert third.render_nodes["old:8000"].id == back.id and third.render_nodes["old:8000"].cores == 4
    store3.close()


def test_licenses_and_pools_removed(db_url, store):
    farm = Farm(**FARM)
    pool_admin.set_license(farm, "keep", 3)
    pool_admin.set_license(farm, "drop", 1)
    add_rn(farm, "a:8000", pools=["tmp", "stay"])
    flush(farm, store)
    farm.licenses.pop("drop")
    farm.dirty.removed_licenses.add("drop")
    pool_admin.delete_pool(farm, farm.pools["tmp"])
    flush(farm, store)
    restored, store2 = restart(db_url, 5.0)
    assert set(restored.licenses) == {"keep"} and restored.licenses["keep"].maximum == 3
    assert "tmp" not in restored.pools
    assert sorted(p.name for p in restored.render_nodes["a:8000"].pools) == ["default", "stay"]
    store2.close()


def test_render_node_goes_silent_after_restart(db_url, store):
    farm, jobs = busy_farm(store)
    restored, store2 = restart(db_url, 100.0)
    store2.close()
    running = restored.commands[jobs["running"].id]
    restored.check_liveness(100.0 + FARM["rn_timeout"] - 1)
    assert running.status == CS.RUNNING
    restored.check_liveness(100.0 + FARM["rn_timeout"] + 1)
    assert running.status == CS.TIMEOUT
    assert restored.render_nodes["a:8000"].free_cores == restored.render_nodes["a:8000"].cores


# -- archive and ids ----------------------------------------------------------------------------------
def test_archived_jobs_are_queried_from_the_database(db_url, store):
    farm, jobs = busy_farm(store)
    d = jobs["d"]
    node = store.archived_node(d.id)
    assert node["name"] == d.name and node["archived"] is True and node["type"] == "Task"
    assert node["status"] == NS.DONE and node["pool"] == "default"
    assert node["counts"][CS.DONE] == 2 and node["command_count"] == 2 and node["completion"] == 1.0
    assert node["licenses"] == ["arnold"] and node["end_time"] == d.end_time
    assert store.archived_node(jobs["a"].id) is None                 # live, not archived
    assert store.archived_node(10**9) is None
    assert [j["id"] for j in store.archived_jobs()] == [d.id]
    assert store.archived_jobs(offset=1) == []


def test_archived_group_counts_its_subtree(db_url, store):
    farm = Farm(**FARM)
    add_rn(farm, "a:8000", cores=8)
    job = submit(farm, store, task("x", frames=(1, 2), maxNbCores=1), task("y", frames=(1, 3), maxNbCores=1))
    for _, cmd in run_pass(farm, 1.0):
        report(farm, cmd, CS.DONE, now=2.0)
    assert job.status == NS.DONE
    farm.archive_finished(3.0, 0)
    flush(farm, store)
    node = store.archived_node(job.id)
    assert node["type"] == "TaskGroup" and node["counts"][CS.DONE] == 5
    assert node["children"] == [c.id for c in job.children]
    assert store.archived_node(job.children[1].id)["counts"][CS.DONE] == 3
    restored, store2 = restart(db_url, 10.0)
    assert not restored.root.children and not restored.commands
    store2.close()


def test_ids_are_never_reused(db_url, store):
    farm = Farm(**FARM)
    add_rn(farm, "a:8000", cores=8)
    submit(farm, store, task("first", frames=(1, 2), maxNbCores=1))
    last = submit(farm, store, task("last", frames=(1, 3), maxNbCores=1))
    for _, cmd in run_pass(farm, 1.0):
        if cmd.task is last:
            report(farm, cmd, CS.DONE, now=2.0)
    farm.archive_finished(3.0, 0)
    assert last.archived
    # Ids handed out to a submission that never committed are gone too.
    lost = build_job(farm, parse_graph({"root": 0, "tasks": [task("lost", frames=(1, 5))]}), 4.0)
    flush(farm, store)
    counters = describe(farm)["counters"]
    restored, store2 = restart(db_url, 10.0)
    try:
        assert describe(restored)["counters"] == counters
        job = submit(restored, store2, task("new", frames=(1, 1)))
        assert job.id > lost.id > last.id
        assert job.commands[0].id > lost.commands[-1].id > last.commands[-1].id
        assert job.share.id > lost.share.id
        (_, cmd), = run_pass(restored, 11.0)
        assert cmd.assignment >= counters[5]
    finally:
        store2.close()


# -- failures -----------------------------------------------------------------------------------------
def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("mysql://root@127.0.0.1:1/puli_nowhere")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="directory"):
        open_store(f"sqlite://{blocker}/sub/puli.sqlite")
    with pytest.raises(StoreError, match="sqlite:///"):
        open_store("sqlite://relative/puli.sqlite")
    with pytest.raises(StoreError, match="charset"):
        open_store("mysql://root@127.0.0.1/puli?charset=utf8mb4")


def test_failed_submission_leaves_nothing(db_url, store):
    farm = Farm(**FARM)
    first = submit(farm, store, task("ok", frames=(1, 3)))
    flush(farm, store)
    job = build_job(farm, parse_graph({"root": 0, "tasks": [
        {"type": "TaskGroup", "name": "bad", "tasks": [1, 2]}, task("x", frames=(1, 3)), task("y", frames=(1, 3))]}), 1.0)
    job.children[1].commands[-1].id = first.commands[0].id      # collides with a stored command
    with pytest.raises(StoreError):
        store.insert_job(job)
    restored, store2 = restart(db_url, 2.0)
    try:
        assert [j.id for j in restored.root.children] == [first.id]
        assert sorted(restored.commands) == [c.id for c in first.commands]
        assert store2.archived_node(job.id) is None
        # the store still works after the refusal
        submit(restored, store2, task("next", frames=(1, 1)))
    finally:
        store2.close()


def _change_something(farm, now):
    run_pass(farm, now)
    for cmd in list(farm.commands.values()):
        if cmd.status == CS.ASSIGNED:
            report(farm, cmd, CS.RUNNING, now=now, completion=0.25)


def _flush_like_the_service(farm, store):
    """Service.flush: on failure the dirty set goes back for the next try."""
    dirty = farm.take_dirty()
    rows = store.snapshot(farm, dirty)
    try:
        store.write(rows)
    except StoreError:
        farm.dirty.merge(dirty)
        raise


def test_sqlite_write_fails_while_locked_then_recovers(tmp_path):
    url = f"sqlite://{tmp_path}/puli.sqlite?timeout=0.2"
    store = open_store(url, clean=True)
    farm = Farm(**FARM)
    add_rn(farm, "a:8000", cores=2)
    add_rn(farm, "b:8000", cores=2)
    submit(farm, store, task("t", frames=(1, 6)))
    flush(farm, store)
    other = sqlite3.connect(f"{tmp_path}/puli.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")                  # the database refuses writers
    _change_something(farm, 1.0)
    with pytest.raises(StoreError, match="locked"):
        _flush_like_the_service(farm, store)
    with pytest.raises(StoreError):
        store.insert_job(build_job(farm, parse_graph({"root": 0, "tasks": [task("u", frames=(1, 2))]}), 1.5))
    other.execute("ROLLBACK")
    other.close()
    job_operations.set_attribute(farm, farm.root.children[0], "priority", 9)   # more changes meanwhile
    _flush_like_the_service(farm, store)
    store.close()
    restored, store2 = restart(url, 5.0)
    assert_same(farm, restored)
    store2.close()


def _mariadb_admin(url):
    parts = urllib.parse.urlsplit(url)
    return MySQLdb.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                           autocommit=True), parts.path.strip("/")


def _store_connection_ids(admin, database):
    cur = admin.cursor()
    cur.execute("SELECT id, info FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                (database,))
    return cur.fetchall()


def test_mariadb_connection_killed_while_idle_reconnects(mariadb_url):
    store = open_store(mariadb_url, clean=True)
    farm = Farm(**FARM)
    add_rn(farm, "a:8000", cores=2)
    submit(farm, store, task("t", frames=(1, 4)))
    flush(farm, store)
    admin, database = _mariadb_admin(mariadb_url)
    try:
        victims = _store_connection_ids(admin, database)
        assert victims
        for conn_id, _ in victims:
            admin.cursor().execute(f"KILL {int(conn_id)}")
        assert not _store_connection_ids(admin, database)
        _change_something(farm, 1.0)
        _flush_like_the_service(farm, store)         # a dropped connection is reopened first
        submit(farm, store, task("u", frames=(1, 2)), now=2.0)
    finally:
        admin.close()
        store.close()
    restored, store2 = restart(mariadb_url, 5.0)
    assert_same(farm, restored)
    store2.close()


def test_mariadb_connection_killed_mid_write_fails_then_recovers(mariadb_url):
    store = open_store(mariadb_url, clean=True)
    farm = Farm(**FARM)
    add_rn(farm, "a:8000", cores=2)
    job = submit(farm, store, task("t", frames=(1, 4)))
    flush(farm, store)
    admin, database = _mariadb_admin(mariadb_url)
    parts = urllib.parse.urlsplit(mariadb_url)
    locker = MySQLdb.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                             database=database)
    try:
        # Hold a row lock so that the flush stops inside its transaction, then kill it there.
        locker.cursor().execute("SELECT id FROM commands WHERE id = %s FOR UPDATE", (job.commands[0].id,))
        _change_something(farm, 1.0)
        assert job.commands[0] in farm.dirty.commands
        outcome = []

        def flush_in_thread():
            try:
                _flush_like_the_service(farm, store)
                outcome.append("written")
            except StoreError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=flush_in_thread)
        thread.start()
        deadline = time.monotonic() + 10
        victims = []
        while not victims and time.monotonic() < deadline:
            victims = [i for i, info in _store_connection_ids(admin, database)
                       if info and info.startswith("INSERT INTO commands")]
            time.sleep(0.05)
        assert victims, "the flush never reached the locked row"
        admin.cursor().execute(f"KILL {int(victims[0])}")
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
        locker.rollback()
        _flush_like_the_service(farm, store)         # nothing was lost: the retry writes it all
    finally:
        locker.close()
        admin.close()
        store.close()
    restored, store2 = restart(mariadb_url, 5.0)
    assert_same(farm, restored)
    assert restored.commands[job.commands[0].id].status == CS.RUNNING
    store2.close()
