"""Writing rows: a submission as plain INSERTs, a flush as upserts, each in one transaction."""
import json

from .rows import (COMMAND_COLUMNS, COMMAND_STATS, DEPENDENCY_COLUMNS, LICENSE_COLUMNS,
                   MEMBER_COLUMNS, META_COLUMNS, NODE_COLUMNS, POOL_COLUMNS, RENDER_NODE_COLUMNS,
                   SHARE_COLUMNS)

# Statements naming ids are cut into chunks of this many ids (a statement's size and the
# number of placeholders both have limits).
ID_CHUNK = 500
# Columns a row never changes after its insertion: an upsert leaves them alone.
_FIXED = {
    # (A command's description, arguments and frames change only when adaptive OpenJD chunks
    # are cut again: model/chunking.py.)
    "commands": ("task_id",),
    "nodes": ("kind", "parent_id", "job_id", "creation_time"),
}


class Writer:
    """The statements of one database dialect, built once."""

    def __init__(self, db):
        self.db = db
        insert, upsert = db.insert, db.upsert
        self.insert_nodes = insert("nodes", NODE_COLUMNS)
        self.insert_commands = insert("commands", COMMAND_COLUMNS)
        self.insert_dependencies = insert("dependencies", DEPENDENCY_COLUMNS)
        self.insert_shares = insert("pool_shares", SHARE_COLUMNS)
        self.insert_members = insert("pool_members", MEMBER_COLUMNS)
        self.upsert_nodes = upsert("nodes", NODE_COLUMNS, keep=_FIXED["nodes"])
        self.upsert_commands = upsert("commands", COMMAND_COLUMNS, keep=_FIXED["commands"])
        self.upsert_shares = upsert("pool_shares", SHARE_COLUMNS)
        self.upsert_pools = upsert("pools", POOL_COLUMNS)
        self.upsert_render_nodes = upsert("render_nodes", RENDER_NODE_COLUMNS)
        self.upsert_licenses = upsert("licenses", LICENSE_COLUMNS, key="name")
        # Counters only grow: a submission and a flush may commit in either order.
        self.upsert_meta = upsert("meta", META_COLUMNS, key="name", greatest=("value",))

    def insert_job(self, rows):
        """A submission: all or nothing, committed before the caller answers the user."""
        with self.db.transaction(what="saving the submitted job") as cur:
            cur.executemany(self.upsert_pools, rows.pools)
            cur.executemany(self.insert_nodes, rows.nodes)
            cur.executemany(self.insert_commands, _with_stats_text(rows.commands))
            cur.executemany(self.insert_dependencies, rows.dependencies)
            cur.executemany(self.insert_shares, rows.shares)
            cur.executemany(self.upsert_meta, rows.meta)

    def write(self, rows):
        """A flush: upserts of everything that changed, then the archive marks, in one transaction."""
        # Primary-key order: neighbouring rows share index pages.
        rows.commands.sort()
        rows.nodes.sort()
        with self.db.transaction(what="writing changes") as cur:
            cur.executemany(self.upsert_commands, _with_stats_text(rows.commands))
            cur.executemany(self.upsert_nodes, rows.nodes)
            cur.executemany(self.upsert_render_nodes, rows.render_nodes)
            cur.executemany(self.upsert_pools, rows.pools)
            for ids in _chunks(rows.member_pools):
                cur.execute(f"DELETE FROM pool_members WHERE pool_id IN ({_marks(ids)})", ids)
            cur.executemany(self.insert_members, rows.members)
            cur.executemany(self.upsert_shares, rows.shares)
            cur.executemany(self.upsert_licenses, rows.licenses)
            for names in _chunks(rows.removed_licenses):
                cur.execute(f"DELETE FROM licenses WHERE name IN ({_marks(names)})", names)
            # After the upserts: a row of an archived job written above must end archived.
            for ids in _chunks(rows.archived_jobs):
                _archive_jobs(cur, ids)
            cur.executemany(self.upsert_meta, rows.meta)

    def units(self, rows):
        """The same flush cut into units of one row each (a pool with its members, an archived
        job with its marks), as (kind, key, statements): what a flush the database refused is
        written again in, to find the rows at fault. `kind` names the farm's dirty set."""
        members = {}
        for pool_id, name in rows.members:
            members.setdefault(pool_id, []).append((pool_id, name))
        units = [("commands", row[0], [(self.upsert_commands, row)])
                 for row in _with_stats_text(sorted(rows.commands))]
        units += [("nodes", row[0], [(self.upsert_nodes, row)]) for row in sorted(rows.nodes)]
        units += [("render_nodes", row[0], [(self.upsert_render_nodes, row)]) for row in rows.render_nodes]
        units += [("pools", row[0], [(self.upsert_pools, row), (_DELETE_MEMBERS, (row[0],)),
                                     *((self.insert_members, m) for m in members.get(row[0], ()))])
                  for row in rows.pools]
        units += [("shares", row[0], [(self.upsert_shares, row)]) for row in rows.shares]
        units += [("licenses", row[0], [(self.upsert_licenses, row)]) for row in rows.licenses]
        units += [("removed_licenses", name, [(_DELETE_LICENSE, (name,))]) for name in rows.removed_licenses]
        units += [("archived_jobs", job_id, [(_archive_jobs, [job_id])]) for job_id in rows.archived_jobs]
        units += [("meta", row[0], [(self.upsert_meta, row)]) for row in rows.meta]
        return units

    def write_units(self, units):
        """Some units of a flush in one transaction; consecutive rows of a table go together."""
        with self.db.transaction(what="writing changes") as cur:
            sql, batch = None, []
            for _, _, statements in units:
                for statement, params in statements:
                    if statement is not sql:
                        _run(cur, sql, batch)
                        sql, batch = statement, []
                    batch.append(params)
            _run(cur, sql, batch)


_DELETE_MEMBERS = "DELETE FROM pool_members WHERE pool_id = %s"
_DELETE_LICENSE = "DELETE FROM licenses WHERE name = %s"


def _run(cur, statement, batch):
    if not batch:
        return
    if callable(statement):
        for params in batch:
            statement(cur, params)
    else:
        cur.executemany(statement, batch)


def _archive_jobs(cur, job_ids):
    marks = _marks(job_ids)
    cur.execute(f"UPDATE nodes SET archived = 1 WHERE job_id IN ({marks})", job_ids)
    # The task ids first, then the commands by their indexed task_id: a plain list that every
    # engine serves from the index (an UPDATE ... WHERE IN (subquery) is not always a semi-join).
    task_ids = [row[0] for row in cur.execute(
        f"SELECT id FROM nodes WHERE job_id IN ({marks}) AND kind = 'Task'", job_ids).fetchall()]
    for ids in _chunks(task_ids):
        cur.execute(f"UPDATE commands SET archived = 1 WHERE task_id IN ({_marks(ids)}) AND archived = 0", ids)
    cur.execute(f"UPDATE pool_shares SET archived = 1 WHERE node_id IN ({marks})", job_ids)


def _with_stats_text(rows):
    """Commands' stats objects as JSON text: serialised here, outside the farm lock."""
    i = COMMAND_STATS
    return [row if row[i] is None else row[:i] + (json.dumps(row[i], separators=(",", ":")),) + row[i + 1:]
            for row in rows]


def _chunks(items, size=ID_CHUNK):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _marks(items):
    return ", ".join(["%s"] * len(items))
