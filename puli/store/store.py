"""The Store: what the dispatcher calls to persist the farm (submissions, write-behind, restore)."""
import logging
import threading
import time

from . import access, archive, restore, rows as _rows
from .connection import Database, DbUrl, StoreError
from .tables import create_schema
from .writes import Writer

log = logging.getLogger("puli.store")


class Store:
    """The farm's database. Every call is serialised by one lock (one connection, one writer);
    `snapshot` alone touches no database and runs under the caller's farm lock."""

    def __init__(self, db_url, clean=False):
        url = DbUrl(db_url)
        self.url = url.safe
        self._lock = threading.Lock()
        self._db = Database(url)
        self._db.prepare()
        create_schema(url, clean=clean)
        self._writer = Writer(self._db)
        with self._lock:
            self._db.connection()       # fail now, with a clear message, if it cannot work

    # -- restore ---------------------------------------------------------------------------------
    def load(self, farm, now):
        """Restore every live job, command, render node, pool, share and license into `farm`."""
        started = time.perf_counter()
        with self._lock, self._db.transaction(stream=True, what="restoring the farm") as cur:
            restore.load(cur, farm, now)
        log.info("restored %d jobs, %d commands, %d render nodes in %.1f s",
                 len(farm.root.children), len(farm.commands), len(farm.render_nodes),
                 time.perf_counter() - started)

    # -- writes ----------------------------------------------------------------------------------
    def insert_job(self, job):
        """Commit a freshly built job (nodes, commands, dependencies, pool share, counters)
        before it is published; all or nothing. Raises StoreError."""
        rows = _rows.job_rows(job)
        with self._lock:
            self._writer.insert_job(rows)

    def snapshot(self, farm, dirty):
        """Under the farm lock: what `dirty` names, as plain rows (no I/O)."""
        return _rows.snapshot(farm, dirty)

    def write(self, rows):
        """Outside the farm lock: write a snapshot in one transaction.

        Returns the rows the database refused, as (kind, key, reason), when it refused some:
        the snapshot is then written again in parts until only those are left out, so that one
        bad row never holds the others back. Raises StoreError when the database cannot be
        reached; the caller keeps the dirty set and tries again later (on a fresh connection).
        """
        with self._lock:
            try:
                self._writer.write(rows)
                return []
            except StoreError as exc:
                if not exc.refused:
                    raise
            refused = []
            self._isolate(self._writer.units(rows), refused)
            return refused

    def _isolate(self, units, refused):
        """Write `units`, halving them where the database refuses, down to single rows: about
        two passes over the rows plus a few transactions per refused one."""
        try:
            self._writer.write_units(units)
        except StoreError as exc:
            if not exc.refused:
                raise
            if len(units) == 1:
                kind, key, _ = units[0]
                refused.append((kind, key, str(exc)))
                return
            half = len(units) // 2
            self._isolate(units[:half], refused)
            self._isolate(units[half:], refused)

    # -- tokens and the audit trail: committed before the caller answers --------------------
    def create_token(self, digest, user, role, node, created, expires):
        """A new token's row (a dict, see access.py); a digest already known: StoreError."""
        with self._lock, self._db.transaction(what="saving a token") as cur:
            return access.insert_token(cur, digest, user, role, node, created, expires)

    def find_token(self, digest):
        with self._lock, self._db.transaction(what="looking a token up") as cur:
            return access.find_token(cur, digest)

    def list_tokens(self):
        with self._lock, self._db.transaction(what="listing tokens") as cur:
            return access.list_tokens(cur)

    def revoke_tokens(self, ids=(), user=None):
        with self._lock, self._db.transaction(what="revoking tokens") as cur:
            return access.revoke_tokens(cur, ids, user)

    def write_access(self, last_used, audit):
        """Outside the farm lock: when tokens were last used, and new audit records."""
        with self._lock, self._db.transaction(what="writing the audit trail") as cur:
            access.touch_tokens(cur, last_used)
            access.insert_audit(cur, audit)

    def read_audit(self, **filters):
        with self._lock, self._db.transaction(what="reading the audit trail") as cur:
            return access.read_audit(cur, **filters)

    def purge_audit(self, before):
        with self._lock, self._db.transaction(what="purging the audit trail") as cur:
            access.purge_audit(cur, before)

    # -- archive ---------------------------------------------------------------------------------
    def archived_node(self, node_id):
        """An archived node as a dict (None when there is no archived node with that id)."""
        with self._lock, self._db.transaction(what="reading an archived node") as cur:
            return archive.archived_node(cur, node_id)

    def archived_jobs(self, limit=100, offset=0):
        """Archived jobs as dicts, newest first."""
        with self._lock, self._db.transaction(what="reading archived jobs") as cur:
            return archive.archived_jobs(cur, limit, offset)

    def close(self):
        with self._lock:
            self._db.close()


def open_store(db_url, clean=False):
    """Connect to `db_url` (sqlite:///abs/path or mysql://user:pw@host[:port]/db), creating the
    database and its tables when missing (dropping them first with clean=True)."""
    return Store(db_url, clean=clean)


__all__ = ["Store", "StoreError", "open_store"]
