"""Tokens and the audit trail in the database: who may call the dispatcher, and who did what.

Tokens are kept as their SHA-256 only; a row is a dict with the token's id, user, role, node,
created, lastUsed, expires and revoked. Audit rows are appended in batches by the flusher and
read back newest first.
"""
import json

from ..model.limits import BIGINT_MAX

TOKEN_COLUMNS = ("id", "digest", "user", "role", "node", "created", "last_used", "expires", "revoked")
AUDIT_COLUMNS = ("time", "user", "role", "method", "route", "path", "targets", "jobs", "status", "outcome")


def token_row(row):
    """A tokens row as the dict the dispatcher keeps."""
    token_id, digest, user, role, node, created, last_used, expires, revoked = row
    return {"id": token_id, "digest": digest, "user": user, "role": role, "node": node,
            "created": created, "lastUsed": last_used, "expires": expires, "revoked": bool(revoked)}


def insert_token(cur, digest, user, role, node, created, expires):
    cur.execute(f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS[1:])}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (digest, user, role, node, created, None, expires, 0))
    return find_token(cur, digest)


def find_token(cur, digest):
    row = cur.execute(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens WHERE digest = %s", (digest,)).fetchone()
    return token_row(row) if row else None


def list_tokens(cur):
    return [token_row(r) for r in cur.execute(
        f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens ORDER BY id").fetchall()]


def revoke_tokens(cur, ids=(), user=None):
    """Revoke tokens by id, or every token of `user`; the ids revoked."""
    if user is not None:
        rows = cur.execute("SELECT id FROM tokens WHERE user = %s AND revoked = 0", (user,)).fetchall()
        ids = [r[0] for r in rows]
    done = []
    for token_id in ids:
        if not 0 < token_id <= BIGINT_MAX:
            continue                    # no row has it; the database would refuse the query
        cur.execute("UPDATE tokens SET revoked = 1 WHERE id = %s AND revoked = 0", (token_id,))
        if cur.rowcount:
            done.append(token_id)
    return done


def touch_tokens(cur, last_used):
    """{token id: time} of the tokens used since the last write."""
    cur.executemany("UPDATE tokens SET last_used = %s WHERE id = %s",
                    [(when, token_id) for token_id, when in last_used.items()])


def insert_audit(cur, records):
    """Audit records (dicts, see dispatcher/audit.py) appended as rows."""
    rows = []
    for r in records:
        jobs = r["targets"].get("jobs") or []
        rows.append((r["time"], r["user"], r["role"], r["method"], r["route"], r["path"],
                     json.dumps(r["targets"], separators=(",", ":")),
                     "," + ",".join(map(str, jobs)) + "," if jobs else None, r["status"], r["outcome"]))
    marks = ", ".join(["%s"] * len(AUDIT_COLUMNS))
    cur.executemany(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({marks})", rows)


def read_audit(cur, user=None, since=None, job=None, limit=100):
    """Audit records, newest first, filtered by user, time and job."""
    where, params = [], []
    if user is not None:
        where.append("user = %s")
        params.append(user)
    if since is not None:
        where.append("time >= %s")
        params.append(since)
    if job is not None:
        where.append("jobs LIKE %s")
        params.append(f"%,{int(job)},%")
    sql = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(int(limit))
    out = []
    for (time, user_, role, method, route, path, targets, _jobs, status, outcome) in cur.execute(sql, params).fetchall():
        out.append({"time": time, "user": user_, "role": role, "method": method, "route": route,
                    "path": path, "targets": json.loads(targets) if targets else {}, "status": status,
                    "outcome": outcome})
    return out


def purge_audit(cur, before):
    cur.execute("DELETE FROM audit WHERE time < %s", (before,))
