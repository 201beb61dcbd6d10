"""The database schema, defined as SQLObject classes and created by SQLObject on first start.

Only the definitions and schema creation use SQLObject: rows are read and written in bulk on
the raw connection (connection.py). Times are DOUBLE epoch seconds (DATETIME costs ~70% more
restore time), JSON is TEXT, ids are BIGINT (a busy farm passes 2**31 command ids in a few
years; ids are never reused).
"""
from sqlobject import (BigIntCol, BoolCol, DatabaseIndex, FloatCol, IntCol, SQLObject, StringCol,
                       sqlmeta)
from sqlobject.mysql.mysqlconnection import MySQLConnection
from sqlobject.sqlite.sqliteconnection import SQLiteConnection

from .connection import StoreError

# MEDIUMTEXT on MySQL (TEXT stops at 64 KiB, too short for some argument sets); SQLite reads
# any type name containing TEXT as text.
JSON = dict(sqlType="MEDIUMTEXT")
NAME = dict(length=255)


# Applied to each table MySQL creates: InnoDB even where the server defaults to another engine,
# utf8mb4 whatever the database's charset, and a binary collation so that names compare like
# Python strings ("Nuke" and "nuke" are two licenses). (SQLObject's per-backend `createSQL`
# cannot be used: it needs a class-wide connection.)
MYSQL_TABLE_OPTIONS = "ALTER TABLE {table} ENGINE=InnoDB, CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


class _Meta(sqlmeta):
    idSize = "BIG"
    registry = "puli.store"        # keep our class names out of SQLObject's global registry
    lazyUpdate = True


class NodeTable(SQLObject):
    """TaskGroups and Tasks of every job, live and archived (`kind` tells them apart)."""

    class sqlmeta(_Meta):
        table = "nodes"

    kind = StringCol(length=16, notNone=True)
    parent_id = BigIntCol(notNone=True)          # 1 (the farm root, not stored) for a job
    job_id = BigIntCol(notNone=True)
    name = StringCol(notNone=True)
    user = StringCol(notNone=True)
    priority = IntCol(notNone=True)
    dispatch_key = FloatCol(notNone=True)
    max_rn = IntCol(notNone=True)
    paused = BoolCol(notNone=True)
    tags = StringCol(**JSON)
    environment = StringCol(**JSON)
    arguments = StringCol(**JSON)
    requirements = StringCol(**JSON)
    timer = FloatCol()
    creation_time = FloatCol()
    start_time = FloatCol()
    update_time = FloatCol()
    end_time = FloatCol()
    status = IntCol(notNone=True)                # derived, stored so archived nodes keep it
    strategy = StringCol()                       # TaskGroup only
    runner = StringCol()                         # Task only from here on
    min_cores = IntCol()
    max_cores = IntCol()
    ram_use = IntCol()
    licenses = StringCol()                       # "a&b"
    max_attempt = IntCol()
    max_run_time = FloatCol()
    validation_expression = StringCol()
    runner_packages = StringCol()
    watcher_packages = StringCol()
    archived = BoolCol(notNone=True)
    # (archived, parent_id): live rows for the restore, archived jobs newest first for queries.
    by_archived = DatabaseIndex("archived", "parent_id")
    by_job = DatabaseIndex("job_id")


class CommandTable(SQLObject):
    class sqlmeta(_Meta):
        table = "commands"

    task_id = BigIntCol(notNone=True)
    description = StringCol(notNone=True)
    status = IntCol(notNone=True)
    completion = FloatCol(notNone=True)
    attempt = IntCol(notNone=True)
    start_time = FloatCol()
    update_time = FloatCol()
    end_time = FloatCol()
    render_node = StringCol(**NAME)              # by name: a removed render node keeps its name here
    assignment = BigIntCol(notNone=True)
    cores = IntCol(notNone=True)
    ram = IntCol(notNone=True)
    message = StringCol(notNone=True)
    stats = StringCol(**JSON)
    args_json = StringCol(notNone=True, **JSON)  # kept as text in memory too
    nb_frames = IntCol(notNone=True)
    archived = BoolCol(notNone=True)
    # No index on archived: the restore reads live rows in primary-key order, and a full scan
    # filtered in the engine beats a million index lookups.
    by_task = DatabaseIndex("task_id")


class DependencyTable(SQLObject):
    class sqlmeta(_Meta):
        table = "dependencies"

    node_id = BigIntCol(notNone=True)
    target_id = BigIntCol(notNone=True)
    statuses = StringCol(length=64, notNone=True)   # NodeStatus values, "3,4"
    by_node = DatabaseIndex("node_id")


class PoolTable(SQLObject):
    class sqlmeta(_Meta):
        table = "pools"

    name = StringCol(notNone=True, **NAME)
    archived = BoolCol(notNone=True)


class PoolMemberTable(SQLObject):
    """Which render nodes are in which pool; rows of a pool are rewritten whole, in order."""

    class sqlmeta(_Meta):
        table = "pool_members"

    pool_id = BigIntCol(notNone=True)
    render_node = StringCol(notNone=True, **NAME)
    by_pool = DatabaseIndex("pool_id")


class PoolShareTable(SQLObject):
    class sqlmeta(_Meta):
        table = "pool_shares"

    pool_id = BigIntCol(notNone=True)
    node_id = BigIntCol(notNone=True)            # the job
    max_rn = IntCol(notNone=True)
    archived = BoolCol(notNone=True)
    by_node = DatabaseIndex("node_id")


class RenderNodeTable(SQLObject):
    class sqlmeta(_Meta):
        table = "render_nodes"

    # Not unique: a removed (archived) render node that registers again is a new row.
    name = StringCol(notNone=True, **NAME)
    host = StringCol(notNone=True, **NAME)
    port = IntCol(notNone=True)
    cores = IntCol(notNone=True)
    ram = IntCol(notNone=True)
    speed = FloatCol(notNone=True)
    caracteristics = StringCol(**JSON)
    puliversion = StringCol(notNone=True, **NAME)
    performance = FloatCol(notNone=True)
    paused = BoolCol(notNone=True)
    quarantined = BoolCol(notNone=True)
    archived = BoolCol(notNone=True)
    create_date = FloatCol()
    register_date = FloatCol()
    token_id = BigIntCol()                       # the token that registered it, the only one it answers
    by_name = DatabaseIndex("name")


class LicenseTable(SQLObject):
    class sqlmeta(_Meta):
        table = "licenses"

    name = StringCol(notNone=True, unique=True, **NAME)
    maximum = IntCol(notNone=True)


class MetaTable(SQLObject):
    """Key/value: the farm's id counters (next_node_id, ...)."""

    class sqlmeta(_Meta):
        table = "meta"

    name = StringCol(notNone=True, unique=True, length=64)
    value = BigIntCol(notNone=True)


class StatsSampleTable(SQLObject):
    """pulistats: one farm sample (flat JSON of series); resolution 0 raw, else the seconds a
    downsampled row averages (see puli/store/stats.py)."""

    class sqlmeta(_Meta):
        table = "stats_samples"

    time = FloatCol(notNone=True)
    resolution = IntCol(notNone=True)
    data = StringCol(notNone=True, **JSON)
    by_time = DatabaseIndex("resolution", "time")


class StatsJobTable(SQLObject):
    """pulistats: the summary of a job that ended (id = the job's id)."""

    class sqlmeta(_Meta):
        table = "stats_jobs"

    end_time = FloatCol(notNone=True)
    data = StringCol(notNone=True, **JSON)
    by_end = DatabaseIndex("end_time")


class TokenTable(SQLObject):
    """Who may call the API: a token's SHA-256 (never the token), its user, role and life."""

    class sqlmeta(_Meta):
        table = "tokens"

    digest = StringCol(length=64, notNone=True, unique=True)
    user = StringCol(notNone=True, **NAME)
    role = StringCol(length=16, notNone=True)
    node = StringCol(**NAME)                     # a worker token bound to this render node
    created = FloatCol(notNone=True)
    last_used = FloatCol()
    expires = FloatCol()
    revoked = BoolCol(notNone=True)


class AuditTable(SQLObject):
    """Every state-changing request: who, when, which route, on what, and how it ended."""

    class sqlmeta(_Meta):
        table = "audit"

    time = FloatCol(notNone=True)
    user = StringCol(notNone=True, **NAME)
    role = StringCol(length=16, notNone=True)
    method = StringCol(length=8, notNone=True)
    route = StringCol(notNone=True, **NAME)      # the route's template, /nodes/{id}/status
    path = StringCol(notNone=True)
    targets = StringCol(**JSON)                  # {"jobs": [...], "renderNodes": [...], ...}
    jobs = StringCol()                           # ",12,13,": the jobs acted on, for a LIKE
    status = IntCol(notNone=True)
    outcome = StringCol()
    by_time = DatabaseIndex("time")


TABLES = (NodeTable, CommandTable, DependencyTable, PoolTable, PoolMemberTable, PoolShareTable,
          RenderNodeTable, LicenseTable, MetaTable, StatsSampleTable, StatsJobTable, TokenTable,
          AuditTable)


def columns(table):
    """Database column names of a table class, id first."""
    return ("id", *(col.dbName for col in table.sqlmeta.columnList))


def sqlobject_connection(url):
    """An SQLObject connection for a parsed DbUrl (built from parts: never a charset in a URI)."""
    if url.scheme == "sqlite":
        return SQLiteConnection(filename=url.path)
    kw = {"unix_socket": url.query["unix_socket"]} if "unix_socket" in url.query else {}
    return MySQLConnection(db=url.database, user=url.user, password=url.password, host=url.host,
                           port=url.port, connect_timeout=10, **kw)


def _add_missing_columns(conn, url, table):
    """A database made by an older Puli gets the columns added since (each may be NULL): an
    upgrade keeps its farm."""
    name = table.sqlmeta.table
    if url.scheme == "mysql":
        present = {row[0] for row in conn.queryAll(f"SHOW COLUMNS FROM {name}")}
    else:
        present = {row[1] for row in conn.queryAll(f"PRAGMA table_info({name})")}
    for col in table.sqlmeta.columnList:
        if col.dbName not in present:
            definition = col.mysqlCreateSQL(conn) if url.scheme == "mysql" else col.sqliteCreateSQL()
            conn.query(f"ALTER TABLE {name} ADD COLUMN {definition}")


def create_schema(url, clean=False):
    """Create the tables that do not exist yet (all of them again with clean=True)."""
    try:
        conn = sqlobject_connection(url)
    except Exception as exc:
        raise StoreError(f"cannot connect to the database {url.safe}: {exc}") from exc
    try:
        if clean:
            for table in TABLES:
                table.dropTable(ifExists=True, connection=conn)
        for table in TABLES:
            if table.tableExists(connection=conn):
                _add_missing_columns(conn, url, table)
                continue
            table.createTable(connection=conn)
            if url.scheme == "mysql":
                conn.query(MYSQL_TABLE_OPTIONS.format(table=table.sqlmeta.table))
    except Exception as exc:
        raise StoreError(f"cannot create the tables in {url.safe}: {exc}") from exc
    finally:
        conn.close()
