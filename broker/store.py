"""SQLite: schema, credentials and audit records. The only module that speaks SQL.

WAL mode lets the event loop read credentials while the audit writer thread commits;
``synchronous=FULL`` makes a commit durable before the writer releases the responses waiting
on it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    previous_hash BLOB,
    previous_valid_until INTEGER,
    scope_pattern TEXT NOT NULL,
    max_ttl INTEGER NOT NULL,
    extra_tags TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
-- one live credential per (kind, name): names are what keeps allowances apart
CREATE UNIQUE INDEX IF NOT EXISTS live_names ON credentials(kind, name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    caller_kind TEXT,
    caller_id TEXT,
    sub TEXT,
    scope TEXT,
    jti TEXT,
    kid TEXT,
    client TEXT,
    result TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
"""


@dataclass(frozen=True)
class CredentialRow:
    id: str
    kind: str
    name: str
    secret_hash: bytes
    previous_hash: bytes | None
    previous_valid_until: int | None
    scope_pattern: str
    max_ttl: int
    extra_tags: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


class AuditRecord(NamedTuple):
    """One mint attempt; a tuple so a batch goes to SQLite without per-field copying."""

    at: float
    caller_kind: str | None
    caller_id: str | None
    sub: str | None
    scope: str | None
    jti: str | None
    kid: str | None
    client: str | None
    result: str
    error: str | None


_CRED_COLUMNS = ", ".join(f.name for f in fields(CredentialRow))
_AUDIT_COLUMNS = ", ".join(AuditRecord._fields)


def _private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing, tighten it if a group or others may read it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


DB_FILE = "broker.sqlite3"


def exists(data_dir: Path) -> bool:
    return (data_dir / DB_FILE).is_file()


def connect(data_dir: Path) -> sqlite3.Connection:
    db = data_dir / DB_FILE
    # SQLite creates files 0644 (less the umask), and its -wal and -shm take the database
    # file's mode; so a 0600 database (an empty file is a valid one) keeps all three private.
    # Not os.umask: it is process-wide, and the audit thread connects while others run.
    _private_file(db)
    for extra in ("-wal", "-shm"):  # left behind by an older version or a crash
        side = db.with_name(db.name + extra)
        if side.exists():
            _private_file(side)
    # Each connection is used by one thread at a time, but not always the one that opened it.
    conn = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    return conn


def get_credential(conn: sqlite3.Connection, cred_id: str) -> CredentialRow | None:
    row = conn.execute(f"SELECT {_CRED_COLUMNS} FROM credentials WHERE id = ?", (cred_id,))
    found = row.fetchone()
    return None if found is None else CredentialRow(*found)


def list_credentials(conn: sqlite3.Connection) -> list[CredentialRow]:
    rows = conn.execute(f"SELECT {_CRED_COLUMNS} FROM credentials ORDER BY created_at, id")
    return [CredentialRow(*r) for r in rows]


def insert_credential(conn: sqlite3.Connection, row: CredentialRow) -> None:
    marks = ", ".join("?" for _ in fields(CredentialRow))
    values = [getattr(row, f.name) for f in fields(CredentialRow)]
    conn.execute(f"INSERT INTO credentials ({_CRED_COLUMNS}) VALUES ({marks})", values)


def update_credential(conn: sqlite3.Connection, cred_id: str, **changes: Any) -> None:
    sets = ", ".join(f"{name} = ?" for name in changes)
    conn.execute(f"UPDATE credentials SET {sets} WHERE id = ?", [*changes.values(), cred_id])


def write_audit(conn: sqlite3.Connection, records: Sequence[AuditRecord]) -> None:
    """One transaction for the whole batch (group commit); marks credentials as used."""
    marks = ", ".join("?" for _ in AuditRecord._fields)
    used = {
        (r.caller_id, int(r.at))
        for r in records
        if r.result == "ok" and r.caller_kind in ("ci", "dev") and r.caller_id
    }
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({marks})", records)
        conn.executemany(
            "UPDATE credentials SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?",
            [(at, cid) for cid, at in used],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def read_audit(
    conn: sqlite3.Connection, *, since: float | None = None, caller: str | None = None
) -> list[AuditRecord]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if caller is not None:
        where.append("(caller_id = ? OR caller_kind = ?)")
        args += [caller, caller]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit {clause} ORDER BY seq", args)
    return [AuditRecord(*r) for r in rows]


def max_exp(conn: sqlite3.Connection, kid: str) -> int | None:
    """The largest exp the audit shows signed with ``kid``; None: none known.

    A placeholder: audit rows carry no exp yet, so nothing is known.
    """
    return None
