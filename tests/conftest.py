"""Fixtures shared by the whole suite: throwaway MariaDB and SQLite databases, and a guard that
no test writes into a Puli installation of this host."""

import os
import secrets

import MySQLdb
import pytest

from processes import MARIADB, mariadb_database_url


# Where an installed Puli keeps its state and logs (the appliance checks install one for a while).
INSTALLED_STATE = ("/var/lib/puli", "/var/log/puli")


def _root_owned(paths):
    found = set()
    for top in paths:
        for directory, _, files in os.walk(top):
            for name in (directory, *(os.path.join(directory, f) for f in files)):
                try:
                    if os.lstat(name).st_uid == 0:
                        found.add(name)
                except FileNotFoundError:
                    pass
    return found


@pytest.fixture(autouse=True)
def leaves_installations_alone(request):
    """A test's daemons must never read the host's /etc/puli settings: one that did would write
    its log and files into the installation, owned by root, where the installed service (the
    puli user) can no longer open them. Files of an installation belong to puli; a new one of
    root's there is this test's doing."""
    if request.node.get_closest_marker("appliance"):
        yield
        return
    before = _root_owned(INSTALLED_STATE)
    yield
    added = sorted(_root_owned(INSTALLED_STATE) - before)
    assert not added, (f"the test wrote into a Puli installation of this host: {', '.join(added[:5])} "
                       "(start its daemons with --config, never the host's /etc/puli settings)")


@pytest.fixture
def mariadb_url():
    """URL of a fresh MariaDB database on 127.0.0.1:3306, dropped after the test."""
    try:
        server = MySQLdb.connect(**MARIADB)
    except MySQLdb.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable as root without password on "
                    f"{MARIADB['host']}:{MARIADB['port']} ({exc}); scripts/test finds or starts one "
                    "(PULI_TEST_MARIADB=host:port names another)",
                    pytrace=False)
    name = f"puli_test_{secrets.token_hex(4)}"
    try:
        with server.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield mariadb_database_url(name)
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
