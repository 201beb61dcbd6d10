"""The CLIs' pure parts, in process: table fitting, value formats, and the parsing of statuses,
dates, name patterns and constraints that puliquery and the pul_* names share."""
import io
import time

import pytest

from puli.cli import render
from puli.cli.common import (UsageError, comparison, parse_statuses, parse_time,
                             sort_items)
from puli.cli.render import Column, Output, table_lines
from puli.model.status import CommandStatus, NodeStatus, RenderNodeStatus

COLUMNS = [
    Column("ID", "id", right=True),
    Column("NAME", "name", shrink=0, minimum=6),
    Column("OWNER", "user", shrink=2, minimum=5),
    Column("START", "start", drop=1),
    Column("NOTE", "note", drop=3),
]
ITEMS = [{"id": 7, "name": "a_rather_long_job_name", "user": "bob", "start": "11-26 08:00", "note": "x"},
         {"id": 12, "name": "short", "user": "annabelle", "start": "-", "note": "y"}]


def test_a_table_that_fits_is_printed_whole_with_numbers_on_the_right():
    lines = table_lines(ITEMS, COLUMNS, width=200)
    assert lines[0] == "ID  NAME                    OWNER      START        NOTE"
    assert lines[1] == " 7  a_rather_long_job_name  bob        11-26 08:00  x"
    assert lines[2] == "12  short                   annabelle  -            y"


def test_a_narrow_terminal_truncates_the_name_first_then_leaves_columns_out():
    lines = table_lines(ITEMS, COLUMNS, width=45)
    assert all(len(line) <= 45 for line in lines)
    assert lines[1] == " 7  a_rather_l…  bob        11-26 08:00  x"
    narrower = table_lines(ITEMS, COLUMNS, width=30)
    assert all(len(line) <= 30 for line in narrower)
    assert "START" not in narrower[0] and "OWNER" in narrower[0] and "ID" in narrower[0]
    # Room freed by leaving a column out goes back to the name.
    name_width = narrower[1].index("bob") - narrower[1].index("a_")
    assert name_width > 6 + 2


def test_the_ellipsis_falls_back_to_ascii_when_the_terminal_cannot_show_it():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    out = Output("table", stream=stream, width=30, color=False)
    assert out.ellipsis == "~"
    out.table(ITEMS, COLUMNS)
    stream.flush()
    assert b"~" in stream.buffer.getvalue()


def test_colors_only_status_cells_and_never_changes_the_layout():
    cols = [Column("ST", "status", render.status_name(render.NODE_STATUS), status=True),
            Column("NAME", "name")]
    plain = table_lines([{"status": 4, "name": "x"}], cols, color=False)
    painted = table_lines([{"status": 4, "name": "x"}], cols, color=True)
    assert plain[1] == "ERROR  x"
    assert painted[1] == "\x1b[1;31mERROR\x1b[0m  x"


def test_csv_and_json_print_the_raw_values():
    stream = io.StringIO()
    Output("csv", stream=stream).items([{"id": 1, "pools": ["a", "b"], "start": None, "_tree": "└ "}], COLUMNS)
    assert stream.getvalue() == "id,pools,start\n1,a b,\n"
    stream = io.StringIO()
    Output("json", stream=stream).items([{"id": 1}], COLUMNS, footer="ignored")
    assert stream.getvalue() == '[\n  {\n    "id": 1\n  }\n]\n'


def test_value_formats():
    assert render.duration(59) == "59s" and render.duration(61) == "1m01s"
    assert render.duration(3723) == "1h02m" and render.duration(2 * 86400 + 3600) == "2d01h"
    assert render.percent(0.456) == "46" and render.percent(None) == "-"
    assert render.max_rn(-1) == "-" and render.max_rn(3) == "3"
    assert render.megabytes(16384) == "16.0G" and render.megabytes(512) == "512M"
    assert render.text(None) == "-" and render.text(2.0) == "2" and render.text(["a", "b"]) == "a,b"
    assert render.ago(time.time() - 5).endswith("s ago") and render.ago(None) == "never"


def test_run_time_stops_at_the_end_or_the_last_change_unless_running():
    now = time.time()
    node = render.node_run_time
    assert node({"startTime": 100.0, "endTime": 160.0, "status": int(NodeStatus.DONE)}) == 60
    assert node({"startTime": 100.0, "endTime": None, "updateTime": 130.0, "status": int(NodeStatus.ERROR)}) == 30
    assert node({"startTime": now - 50, "endTime": None, "updateTime": now - 40,
                 "status": int(NodeStatus.RUNNING)}) >= 50
    assert render.command_run_time({"startTime": now - 9, "status": int(CommandStatus.RUNNING)}) >= 9
    assert node({"startTime": None}) is None


def test_tree_rows_draw_the_branches():
    rows = render.flatten_tree([{"name": "job", "items": [{"name": "a", "items": [{"name": "a1"}]},
                                                         {"name": "b"}]}])
    assert [(r["_tree"] + r["name"], r["depth"]) for r in rows] == [
        ("job", 0), ("├ a", 1), ("│ └ a1", 2), ("└ b", 1)]


def test_statuses_by_name_prefix_or_number():
    assert parse_statuses(["error", "1,PAUSED"], NodeStatus) == [4, 1, 6]
    assert parse_statuses(["can"], NodeStatus) == [5]
    assert parse_statuses(["idle", "work"], RenderNodeStatus) == [3, 5]
    assert parse_statuses(["timeout", "7"], CommandStatus) == [6, 7]
    with pytest.raises(UsageError, match="'r' is not a status"):
        parse_statuses(["r"], NodeStatus)          # READY or RUNNING?
    with pytest.raises(UsageError, match="9 is not a status"):
        parse_statuses(["9"], NodeStatus)


def test_dates_absolute_or_ago():
    now = 1_700_000_000.0
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1d12h", now) == now - 36 * 3600
    assert parse_time("1w", now) == now - 7 * 86400
    assert parse_time("2024-03-01", now) == time.mktime((2024, 3, 1, 0, 0, 0, 0, 0, -1))
    assert parse_time("2024-03-01 10:30", now) == time.mktime((2024, 3, 1, 10, 30, 0, 0, 0, -1))
    assert parse_time("2024-03-01 10:30:15", now) == time.mktime((2024, 3, 1, 10, 30, 15, 0, 0, -1))
    for bad in ("yesterday", "", "2h30", "2024-13-01"):
        with pytest.raises(UsageError):
            parse_time(bad, now)


def test_comparisons_and_sorting():
    assert comparison("+4") == "+4" and comparison("-2.5") == "-2.5" and comparison("8") == "8"
    with pytest.raises(UsageError):
        comparison("lots")
    items = [{"Name": "b", "n": None}, {"Name": "a", "n": 2}, {"Name": "c", "n": 1}]
    assert [i["Name"] for i in sort_items(items, "name")] == ["a", "b", "c"]
    assert [i["Name"] for i in sort_items(items, "N", reverse=True)] == ["a", "c", "b"]
    assert [i["Name"] for i in sort_items(items, "owner", aliases={"owner": "name"})] == ["a", "b", "c"]
    with pytest.raises(UsageError, match="cannot sort on 'colour'"):
        sort_items(items, "colour")
