"""The raw DB-API connection under the store: URL parsing, driver differences, transactions, reconnects.

SQLObject defines and creates the tables (tables.py), but every bulk path runs on the driver's
own connection: SQLObject's per-row objects and its cached select() are far too slow at a
million rows (see the performance notes in the design). This module is the one place that
knows the two dialects apart: SQL is written once with `%s` placeholders and MySQL syntax for
upserts is produced by `Database.upsert()`.
"""
import functools
import os
import re
import sqlite3
import urllib.parse
from contextlib import contextmanager

import MySQLdb
import MySQLdb.cursors

from ..redaction import redact

# Where a database name is put into DDL it cannot be a parameter: allow plain identifiers only.
_DB_NAME = re.compile(r"[A-Za-z0-9_$]{1,64}")
# How many rows a streaming read hands over at a time.
FETCH_ROWS = 10_000
# mysqlclient folds an executemany() INSERT into multi-row statements of at most this many
# bytes (64 KiB by default): bigger statements mean fewer round trips. Capped below the
# server's max_allowed_packet (16 MiB on MariaDB, 4 MiB on MySQL 5.7 by default).
MAX_STATEMENT = 4 * 1024 * 1024

# s a MySQL statement may take to be sent or answered (a flush of 40,000 assignments takes ~3 s).
STATEMENT_TIMEOUT = 30
_DRIVER_ERRORS = (MySQLdb.Error, sqlite3.Error)
# sqlite3 refuses an int beyond 64 bits with OverflowError, before SQLite sees it.
_STATEMENT_ERRORS = _DRIVER_ERRORS + (OverflowError,)
# MySQL errors about a value that mysqlclient reports as OperationalError (the others about
# data are DataError or IntegrityError): unknown column (a NaN sent as a literal), bad or
# truncated values.
_MYSQL_DATA_CODES = {1054, 1264, 1265, 1292, 1366, 1406}


def refused_data(exc):
    """True when `exc` says the statement's data was refused, not the connection lost."""
    if isinstance(exc, OverflowError):
        return True
    if isinstance(exc, MySQLdb.OperationalError):
        return bool(exc.args) and exc.args[0] in _MYSQL_DATA_CODES
    # sqlite3's OperationalError: locked, busy, I/O; the other classes name the statement's data.
    return isinstance(exc, _DRIVER_ERRORS) and not isinstance(exc, sqlite3.OperationalError) \
        and not isinstance(exc, (MySQLdb.InternalError, MySQLdb.InterfaceError))


class StoreError(Exception):
    """The database failed (unreachable, lost, refused a statement); the message says how.

    `refused` is true when the database refused the data itself (a value out of a column's
    range, too long, NULL where it may not be): the same rows fail again whenever written,
    while the others can be. Otherwise the failure is the connection's or the moment's (a
    lost server, a lock) and a later try of the same rows may succeed.
    """

    def __init__(self, message, refused=False):
        super().__init__(message)
        self.refused = refused

    @property
    def unreachable(self):
        """The server did not answer (down, starting, or too busy to accept a connection)."""
        exc = self.__cause__
        while exc is not None:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in _UNREACHABLE or str(exc).startswith(_UNREACHABLE_WORDS):
                return True
            exc = exc.__cause__
        return False


# The client's codes for a server it cannot reach or lost (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR,
# CR_SERVER_GONE_ERROR, CR_SERVER_LOST), and SQLObject's words for them (it keeps no code).
_UNREACHABLE = (2002, 2003, 2006, 2013)
_UNREACHABLE_WORDS = ("Can't connect", "Lost connection", "MySQL server has gone away")


class DbUrl:
    """A parsed `sqlite:///abs/path` or `mysql://user:pw@host[:port]/db` URL."""

    def __init__(self, url):
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self.scheme = parts.scheme
        self.query = dict(urllib.parse.parse_qsl(parts.query))
        if self.scheme == "sqlite":
            if parts.netloc or not parts.path.startswith("/"):
                raise StoreError(f"bad database URL {url!r}: write sqlite:///absolute/path/puli.sqlite")
            self.path = parts.path
        elif self.scheme == "mysql":
            self.host = parts.hostname or "localhost"
            try:
                self.port = parts.port or 3306
            except ValueError:
                raise StoreError(f"bad database URL {self.safe}: the port is not a number") from None
            self.user = urllib.parse.unquote(parts.username or "")
            self.password = urllib.parse.unquote(parts.password or "")
            self.database = parts.path.strip("/")
            if not _DB_NAME.fullmatch(self.database):
                raise StoreError(f"bad database URL {self.safe}: name one database made of letters, digits and '_'")
            if "charset" in self.query:
                # SQLObject takes the charset for a Python codec name ("utf8mb4" fails) and
                # mysqlclient already speaks utf8mb4: the URL must not carry one.
                raise StoreError(f"bad database URL {self.safe}: leave charset out, utf8mb4 is used")
        else:
            raise StoreError(f"bad database URL {redact(url)!r}: it must start with sqlite:/// or mysql://")

    @property
    def safe(self):
        """The URL without its password, for messages and logs."""
        if self.scheme != "mysql":
            return self.url
        user = f"{self.user}@" if self.user else ""
        return f"mysql://{user}{self.host}:{self.port}/{self.database}"


class Cursor:
    """A driver cursor that takes `%s` placeholders on both backends."""

    __slots__ = ("raw", "_sql")

    def __init__(self, raw, sql):
        self.raw = raw
        self._sql = sql

    def execute(self, sql, params=()):
        self.raw.execute(self._sql(sql), params)
        return self

    def executemany(self, sql, rows):
        if rows:
            self.raw.executemany(self._sql(sql), rows)

    def fetchall(self):
        return self.raw.fetchall()

    def fetchone(self):
        return self.raw.fetchone()

    def chunks(self, size=FETCH_ROWS):
        """The result, `size` rows at a time (a streaming cursor never holds all of it)."""
        fetch = self.raw.fetchmany
        while True:
            rows = fetch(size)
            if not rows:
                return
            yield rows

    @property
    def rowcount(self):
        return self.raw.rowcount


@functools.lru_cache(maxsize=512)
def _qmark(sql):
    return sql.replace("%s", "?")


def _same(sql):
    return sql


class Database:
    """One connection, opened lazily and reopened after it failed. Not thread-safe by itself:
    the Store serialises every use with its own lock (so one SQLite connection may be used from
    several threads, hence check_same_thread=False)."""

    def __init__(self, url):
        self.url = url if isinstance(url, DbUrl) else DbUrl(url)
        self.kind = self.url.scheme
        self._conn = None
        self._sql = _qmark if self.kind == "sqlite" else _same
        self._max_statement = MAX_STATEMENT

    # -- connecting -----------------------------------------------------------------------------
    def prepare(self):
        """Make sure the database itself exists (MySQL) or its directory does (SQLite)."""
        url = self.url
        if self.kind == "sqlite":
            try:
                os.makedirs(os.path.dirname(url.path), exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of {url.path}: {exc}") from exc
            return
        try:
            server = MySQLdb.connect(**self._mysql_args(database=False))
        except MySQLdb.Error as exc:
            raise StoreError(f"cannot connect to the database server of {url.safe}: {exc}") from exc
        try:
            server.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4")
        except MySQLdb.Error as exc:
            raise StoreError(f"cannot create the database {url.safe}: {exc}") from exc
        finally:
            server.close()

    def _mysql_args(self, database=True):
        url = self.url
        args = dict(host=url.host, port=url.port, user=url.user, password=url.password,
                    charset="utf8mb4", autocommit=True, connect_timeout=10,
                    # A server that stops answering fails the statement instead of hanging it:
                    # the dispatch loop commits assignments itself, under systemd's watchdog.
                    read_timeout=STATEMENT_TIMEOUT, write_timeout=STATEMENT_TIMEOUT)
        if "unix_socket" in url.query:
            args["unix_socket"] = url.query["unix_socket"]
        if database:
            args["database"] = url.database
        return args

    def _open(self):
        url = self.url
        try:
            if self.kind == "mysql":
                # autocommit: reads outside a transaction see fresh data, and every write
                # is an explicit BEGIN ... COMMIT (without it, one fsync per row).
                conn = MySQLdb.connect(**self._mysql_args())
                cur = conn.cursor()
                cur.execute("SELECT @@max_allowed_packet")
                self._max_statement = min(MAX_STATEMENT, int(cur.fetchone()[0]) - 64 * 1024)
                cur.close()
                return conn
            timeout = float(url.query.get("timeout", 10.0))
            # isolation_level=None: the sqlite3 module opens no implicit transactions; we
            # issue BEGIN ourselves.
            conn = sqlite3.connect(url.path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
            # WAL: readers and the writer do not block each other, and a commit is one
            # sequential append.
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except (_DRIVER_ERRORS + (ValueError,)) as exc:
            raise StoreError(f"cannot connect to the database {url.safe}: {exc}") from exc

    def connection(self):
        """The live driver connection, (re)opened when needed."""
        conn = self._conn
        if conn is not None and self.kind == "mysql":
            # A connection the server dropped (restart, wait_timeout, KILL) fails its ping:
            # reopen it rather than fail the call.
            try:
                conn.ping()
            except MySQLdb.Error:
                self._drop()
                conn = None
        if conn is None:
            conn = self._conn = self._open()
        return conn

    def _drop(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:           # already broken: nothing more to release
                pass

    def close(self):
        self._drop()

    # -- transactions ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self, stream=False, what="database operation"):
        """BEGIN ... COMMIT around the block; any failure rolls back and raises StoreError.

        stream=True gives a server-side cursor on MySQL (rows arrive as they are fetched instead
        of being buffered whole in the client); SQLite cursors always step lazily.
        """
        conn = self.connection()
        try:
            raw = conn.cursor(MySQLdb.cursors.SSCursor) if stream and self.kind == "mysql" else conn.cursor()
            if self.kind == "mysql":
                raw.max_stmt_length = self._max_statement
            raw.execute("BEGIN")
        except _DRIVER_ERRORS as exc:
            self._drop()
            raise StoreError(f"{what} failed on {self.url.safe}: {exc}") from exc
        try:
            yield Cursor(raw, self._sql)
            raw.close()
            conn.commit()
        except BaseException as exc:
            self._rollback(conn)
            if isinstance(exc, _STATEMENT_ERRORS):
                raise StoreError(f"{what} failed on {self.url.safe}: {exc}",
                                 refused=refused_data(exc)) from exc
            raise

    def _rollback(self, conn):
        try:
            conn.rollback()
        except Exception:
            # The connection is gone (or unusable): open a fresh one next time.
            self._drop()
            return
        if self.kind == "sqlite":
            return
        # After a lost connection the rollback may "succeed" locally: a failed ping tells.
        try:
            conn.ping()
        except MySQLdb.Error:
            self._drop()

    # -- dialect ---------------------------------------------------------------------------------
    def insert(self, table, columns):
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"

    def upsert(self, table, columns, key="id", keep=(), greatest=()):
        """INSERT that updates the existing row with the same `key` instead.

        Columns in `keep` are written on insert only (they never change); columns in `greatest`
        only ever grow (id counters written by concurrent paths in any order).
        """
        sql = self.insert(table, columns)
        update = [c for c in columns if c != key and c not in keep]
        if self.kind == "mysql":
            sets = [f"{c} = GREATEST({c}, VALUES({c}))" if c in greatest else f"{c} = VALUES({c})"
                    for c in update]
            return f"{sql} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        sets = [f"{c} = MAX({c}, excluded.{c})" if c in greatest else f"{c} = excluded.{c}"
                for c in update]
        return f"{sql} ON CONFLICT({key}) DO UPDATE SET {', '.join(sets)}"
