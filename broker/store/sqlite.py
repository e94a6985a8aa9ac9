"""SQLite: schema, credentials and audit records. The only module that speaks SQL.

WAL mode lets the event loop read credentials while the audit writer thread commits;
``synchronous=FULL`` makes a commit durable before the writer releases the responses waiting
on it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

# Migrations by PRAGMA user_version: step N takes a database from version N to N + 1. Version 0
# is both a new file and one written before versions existed (its CREATEs are IF NOT EXISTS).
MIGRATIONS: tuple[str, ...] = (
    """
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
    CREATE UNIQUE INDEX IF NOT EXISTS live_names ON credentials(kind, name)
        WHERE revoked_at IS NULL;
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
    """,
    """
    -- a token's exp, so a retiring key stays published until the last token it signed expires
    ALTER TABLE audit ADD COLUMN exp INTEGER;
    CREATE INDEX audit_kid_exp ON audit(kid, exp);
    -- refusals before authentication, counted per client address and minute (README: audit)
    CREATE TABLE refusals (
        minute INTEGER NOT NULL,
        client TEXT NOT NULL,
        error TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (minute, client, error)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


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
    exp: int | None = None


@dataclass(frozen=True)
class RefusalCount:
    """Refusals before authentication of one client address, error and minute."""

    minute: int  # unix seconds at the start of the minute
    client: str
    error: str
    count: int


_CRED_COLUMNS = ", ".join(f.name for f in fields(CredentialRow))
_AUDIT_COLUMNS = ", ".join(AuditRecord._fields)


DB_FILE = "broker.sqlite3"
# Every name SQLite gives the database's files. Only SQLite may open them: closing ANY descriptor
# of a file drops every POSIX lock this process holds on it, so a stray open()/close() beside a
# live connection makes other processes believe it is gone, and the last of them deletes the live
# WAL (sqlite.org/howtocorrupt.html, 2.2). tests/conftest.py fails any Python-level open of them.
DB_FILES = tuple(DB_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal"))


def exists(data_dir: Path) -> bool:
    return (data_dir / DB_FILE).is_file()


def _create_private(db: Path) -> None:
    """Create an empty (valid) database file 0600 without ever holding a descriptor of it.

    SQLite creates files 0644 less the umask, and gives -wal and -shm the database file's mode,
    so a 0600 database keeps all three private. The empty file is written under a temporary name
    and linked into place: link(2) fails on an existing name, and no descriptor of the database
    is opened or closed by this process (not os.umask: it is process-wide, and threads connect).
    """
    fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=".new-database.")
    os.close(fd)
    try:
        os.link(tmp, db)
    except FileExistsError:
        pass  # another process created it meanwhile; it is SQLite's to open now
    finally:
        os.unlink(tmp)


def _tighten(db: Path) -> None:
    """A database (or -wal/-shm) left group/world-readable by an older version becomes 0600.

    chmod(2) by path: it opens no descriptor, so it cannot drop a live connection's locks.
    """
    for name in DB_FILES:
        path = db.with_name(name)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def connect(data_dir: Path) -> sqlite3.Connection:
    db = data_dir / DB_FILE
    if not db.exists():
        _create_private(db)
    _tighten(db)
    # Each connection is used by one thread at a time, but not always the one that opened it.
    conn = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:  # the usual case: no write lock taken
        return
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others then see the new version
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the database is schema version {version}, newer than this broker's "
                f"{SCHEMA_VERSION}; upgrade test-broker"
            )
        for step in MIGRATIONS[version:]:
            for statement in _statements(step):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# What an unknown id finds: no kind matches it, so nothing authenticates against it.
DECOY = CredentialRow(
    id="",
    kind="",
    name="",
    secret_hash=bytes(32),
    previous_hash=None,
    previous_valid_until=None,
    scope_pattern="",
    max_ttl=0,
    extra_tags="{}",
    created_at=0,
    expires_at=None,
    revoked_at=0,
    last_used_at=None,
)
_DECOY_MARKS = ", ".join("?" for _ in fields(CredentialRow))
_DECOY_VALUES = tuple(getattr(DECOY, f.name) for f in fields(CredentialRow))


def lookup_credential(conn: sqlite3.Connection, cred_id: str) -> CredentialRow:
    """The row of ``cred_id``, or ``DECOY``, by the same work either way.

    One statement returns exactly one row in both cases, built by the same code, so the time an
    authentication takes does not tell whether the id exists.
    """
    found = conn.execute(
        f"SELECT {_CRED_COLUMNS} FROM credentials WHERE id = ? "
        f"UNION ALL SELECT {_DECOY_MARKS} "
        "WHERE NOT EXISTS (SELECT 1 FROM credentials WHERE id = ?)",
        (cred_id, *_DECOY_VALUES, cred_id),
    ).fetchone()
    return CredentialRow(*found)


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


def write_audit(
    conn: sqlite3.Connection,
    records: Sequence[AuditRecord],
    refusals: Sequence[RefusalCount] = (),
) -> None:
    """One transaction for the whole batch (group commit); marks credentials as used.

    ``refusals`` are added to the counts already stored for their (minute, client, error).
    """
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
        conn.executemany(
            "INSERT INTO refusals (minute, client, error, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (minute, client, error) DO UPDATE SET count = count + excluded.count",
            [(r.minute, r.client, r.error, r.count) for r in refusals],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def max_exp(conn: sqlite3.Connection, kid: str) -> int | None:
    """The latest exp of any token handed out signed by ``kid`` (every one has its record)."""
    row = conn.execute("SELECT max(exp) FROM audit WHERE kid = ? AND result = 'ok'", (kid,))
    found: int | None = row.fetchone()[0]
    return found


def read_refusals(conn: sqlite3.Connection, *, since: float | None = None) -> list[RefusalCount]:
    start = -1 if since is None else int(since) // 60 * 60
    rows = conn.execute(
        "SELECT minute, client, error, count FROM refusals WHERE minute >= ? "
        "ORDER BY minute, client, error",
        (start,),
    )
    return [RefusalCount(*r) for r in rows]


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
