"""Every input bounded before work is done on it: graph sizes counted before frames expand,
queues per user and per farm, stats sizes, nesting depth, paging offsets; each refusal a 4xx
naming the limit, and nothing created."""
import tempfile

import pytest

from puli.dispatcher.settings import load_settings
from test_api_support import Api, assert_error, graph, task


def limited(**limits):
    return Api(settings=load_settings(data_dir=tempfile.mkdtemp(prefix="puli-limits-"), **limits))


def test_a_94_byte_frame_list_is_refused_before_it_is_expanded():
    api = Api()
    body = graph(task("huge", arguments={"cmd": "x", "framesList": "1-100000000"}))
    assert_error(api.post("/graphs/", body), 413, "100000000 commands", "max_graph_commands")
    assert api.job_ids() == [] and api.farm.commands == {}


def test_graph_sizes_are_settings():
    api = limited(max_graph_commands=10, max_graph_tasks=3)
    assert_error(api.post("/graphs/", graph(task("a", frames=(1, 11)))), 413, "11 commands", "at most 10")
    two = graph(task("a", frames=(1, 6)), task("b", frames=(1, 5)))      # 11 across two tasks
    assert_error(api.post("/graphs/", two), 413, "max_graph_commands")
    four = graph(task("a"), task("b"), task("c"))                        # a group and three tasks
    assert_error(api.post("/graphs/", four), 413, "4 tasks", "max_graph_tasks")
    assert api.job_ids() == []
    assert api.submit(task("a", frames=(1, 10)))


def test_queues_per_user_and_per_farm_refuse_with_429_and_count_only_unfinished_work():
    api = limited(max_queued_jobs_per_user=2, max_queued_commands_per_user=5, max_queued_commands=8)
    first = api.submit(task("a", frames=(1, 3)), user="ann")
    api.submit(task("b", frames=(1, 2)), user="ann")
    assert_error(api.post("/graphs/", graph(task("c"), user="ann", poolName="new")), 429, "ann",
                 "2 unfinished jobs", "max_queued_jobs_per_user")
    assert "new" not in api.farm.pools         # a refused submission makes nothing, not its pool
    api.put(f"/nodes/{first}/cancel")
    over = api.post("/graphs/", graph(task("d", frames=(1, 4)), user="ann"))
    assert_error(over, 429, "2 unfinished commands", "max_queued_commands_per_user")
    assert api.submit(task("e", frames=(1, 3)), user="ann")
    # Farm-wide: ann holds 5, bob may add 3 more, not 4.
    assert_error(api.post("/graphs/", graph(task("f", frames=(1, 4)), user="bob")), 429,
                 "max_queued_commands")
    assert api.submit(task("g", frames=(1, 3)), user="bob")
    assert len(api.job_ids()) == 4


def test_stats_are_bounded_and_a_bad_status_is_a_400():
    api = limited(max_stats_bytes=300)
    api.submit(task("t"))
    api.register("rn1:8000")
    ((cmd, (rn, assignment)),) = api.dispatch().items()
    assert_error(api.report(rn, cmd, assignment, stats={"log": "x" * 400}), 400, "max_stats_bytes")
    for status in ({}, [], "3", 3.5, True, 99):
        result = api.put(f"/rendernodes/{rn}/commands/{cmd}/", {"assignment": assignment, "status": status})
        assert_error(result, 400, "status")
    assert api.report(rn, cmd, assignment, stats={"frames": 1}).status_code == 200


def test_free_form_values_are_not_nested_deeper_than_the_store_can_write_back():
    api = Api()
    deep = '{"name": "x", "root": 0, "tasks": [{"type": "Task", "name": "t", "arguments": {"a": ' \
           + "[" * 900 + "]" * 900 + "}}]}"
    assert_error(api.raw("POST", "/graphs/", deep), 400, "nested more than 32 levels")
    assert_error(api.raw("POST", "/graphs/", "[" * 100_000 + "]" * 100_000), 400, "nested too deeply")
    assert api.job_ids() == []


@pytest.mark.parametrize("path", ["/commands", "/tasks", "/tasks/{job}/commands", "/query/command",
                                  "/nodes/1/children"])
def test_an_offset_past_any_list_is_a_400_not_a_500(path):
    api = Api()
    job = api.submit(task("t", frames=(1, 2)))
    assert_error(api.get(path.format(job=job), offset=10**20), 400, "offset")
    assert api.get(path.format(job=job), offset=10**6).status_code == 200


def test_a_lone_surrogate_is_refused_and_a_pair_is_a_character():
    api = Api()
    body = '{"name": "x", "root": 0, "tasks": [{"type": "Task", "name": "a\\ud800b"}]}'
    assert_error(api.raw("POST", "/graphs/", body), 400, "surrogate")
    assert api.job_ids() == []
    paired = api.raw("POST", "/graphs/", body.replace("\\ud800", "\\ud83d\\ude00"))
    assert paired.status_code == 201 and api.node(paired.json["id"])["name"] == "a\U0001F600b"


def test_a_digit_str_isdigit_takes_but_int_refuses_is_a_400_not_a_500():
    # Found by the fuzz (test_fuzz_api): '²' is a digit to str.isdigit(), not to int().
    api = Api()
    assert_error(api.put("/edit/prio?value=1&constraint_id=%C2%B2"), 400, "constraint_id")
    assert_error(api.post("/rendernodes/host:²/", {"cores": 2, "ram": 1000}), 400, "port")
    assert api.farm.render_nodes == {}


def test_an_empty_since_puts_no_bound_on_the_audit_trail():
    # Found by the fuzz: GET /audit?since= compared the records' times with '' (a 500).
    api = Api()
    api.submit(task("a"))
    records = api.get("/audit", since="").json["records"]
    assert [r["route"] for r in records] == ["/graphs"]


def test_an_id_past_any_column_names_nothing_rather_than_making_the_database_refuse(tmp_sqlite_url):
    # Found by the fuzz: DELETE /tokens/<2**65> was a 400 "Refused by the database" (the
    # database cannot hold the id), and so was a node read back from the archive.
    from puli.store import open_store

    store = open_store(tmp_sqlite_url)
    try:
        api = Api(store=store)
        assert_error(api.delete(f"/tokens/{2**65}"), 404, "no token")
        assert_error(api.get(f"/nodes/{2**65}"), 404, "no node")
        assert api.delete("/tokens/1").json == {"revoked": [1]}
    finally:
        store.close()
