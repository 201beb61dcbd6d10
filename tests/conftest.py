"""Fixtures shared by the whole suite: throwaway MariaDB and SQLite databases."""

import secrets

import MySQLdb
import pytest

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root"}


@pytest.fixture
def mariadb_url():
    """URL of a fresh MariaDB database on 127.0.0.1:3306, dropped after the test."""
    try:
        server = MySQLdb.connect(**MARIADB)
    except MySQLdb.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable as root without password on "
                    f"{MARIADB['host']}:{MARIADB['port']} ({exc}); scripts/test sets it up",
                    pytrace=False)
    name = f"puli_test_{secrets.token_hex(4)}"
    try:
        with server.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
        with server.cursor() as cursor:
            # A connection left open in a transaction holds a metadata lock that would make
            # DROP wait for lock_wait_timeout (a year by default): fail the teardown instead.
            cursor.execute("SET SESSION lock_wait_timeout = 30")
            cursor.execute(f"DROP DATABASE `{name}`")
    finally:
        server.close()


@pytest.fixture
def tmp_sqlite_url(tmp_path):
    """URL of a SQLite database file (not created yet) in the test's temporary directory."""
    return f"sqlite://{tmp_path / 'puli.sqlite'}"
