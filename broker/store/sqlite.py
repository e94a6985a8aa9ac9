"""SQLite: schema, credentials and audit records. The only module that speaks SQL.

``SqliteStore`` is the ``Store`` (broker/store/protocol.py) on one connection; every
``sqlite3.Error`` leaves it as a ``StoreError``, so nothing outside broker/store/ imports
sqlite3. A running broker holds two: one for the event loop's credential reads, one owned by
the audit writer thread (a connection's transaction is the connection's, not the thread's, so
sharing one would put the loop's reads inside the writer's batch).

WAL mode lets the event loop read credentials while the audit writer thread commits;
``synchronous=FULL`` makes a commit durable before the writer releases the responses waiting
on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

from broker.store.protocol import StoreConflict, StoreError
from broker.store.records import (
    CREDENTIAL_FIELDS,
    DECOY,
    AuditRecord,
    CredentialRow,
    RefusalCount,
    marks_used,
)

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
    """
    -- token exchange: who the CI job token named, and the claims its scope came from (JSON)
    ALTER TABLE audit ADD COLUMN subject TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


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
    """A migrated connection (raises sqlite3 errors: ``open_store`` is the public way in)."""
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
            raise StoreError(
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


_CRED_COLUMNS = ", ".join(CREDENTIAL_FIELDS)
_CRED_MARKS = ", ".join("?" for _ in CREDENTIAL_FIELDS)
_AUDIT_COLUMNS = ", ".join(AuditRecord._fields)
_AUDIT_MARKS = ", ".join("?" for _ in AuditRecord._fields)
_DECOY_VALUES = tuple(getattr(DECOY, name) for name in CREDENTIAL_FIELDS)
# A conflict is a broken uniqueness rule, not any constraint (NOT NULL is a bug, not a conflict).
_CONFLICTS = {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}

P = ParamSpec("P")
R = TypeVar("R")


def _store_errors(method: Callable[P, R]) -> Callable[P, R]:
    """sqlite3's exceptions leave as the Store's own, with SQLite's message."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode in _CONFLICTS:
                raise StoreConflict(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    return wrapper


@_store_errors
def copy_database(source_dir: Path, target_dir: Path) -> dict[str, int]:
    """Copy the database of ``source_dir`` into ``target_dir``, which has none, while a broker
    may be writing it; return the copy's schema version and row counts.

    SQLite's online backup API copies a consistent snapshot page by page; cp beside a live
    broker can copy a page mid-write or leave committed transactions behind in the -wal file,
    and a Python-level open of the file drops every connection's locks (see ``DB_FILES``). The
    copy is checked (``integrity_check``) and left in rollback-journal mode: one self-contained
    file, which a broker turns back to WAL when it opens it.
    """
    source_db, target_db = source_dir / DB_FILE, target_dir / DB_FILE
    if not source_db.is_file():
        raise StoreError(f"{source_db} does not exist")
    if target_db.exists():
        raise StoreError(f"{target_db} exists; copy into a directory without a database")
    # mode=rw: never create a missing source; and no migration, the source stays as it is
    source = sqlite3.connect(f"{source_db.as_uri()}?mode=rw", uri=True, timeout=30)
    try:
        version = source.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{source_db} is schema version {version}, newer than this broker's "
                f"{SCHEMA_VERSION}; upgrade test-broker"
            )
        _create_private(target_db)
        target = sqlite3.connect(target_db, isolation_level=None)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
            problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise StoreError(f"the copy of {source_db} is damaged: {'; '.join(problems)}")
            counts = {"schema_version": version}
            tables = {row[0] for row in target.execute("SELECT name FROM sqlite_master")}
            for table in ("credentials", "audit"):  # absent only from a never-opened file
                query = f"SELECT count(*) FROM {table}"
                counts[table] = target.execute(query).fetchone()[0] if table in tables else 0
        finally:
            target.close()
    finally:
        source.close()
    return counts


@_store_errors
def open_store(data_dir: Path) -> SqliteStore:
    """The database in ``data_dir``, created (0600) and migrated to ``SCHEMA_VERSION``."""
    return SqliteStore(connect(data_dir))


class SqliteStore:
    """A ``Store`` on one connection; one thread at a time, not always the one that opened it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @_store_errors
    def lookup_credential(self, cred_id: str) -> CredentialRow:
        # One statement returns exactly one row in both cases, built by the same code, so the
        # time an authentication takes does not tell whether the id exists.
        found = self._conn.execute(
            f"SELECT {_CRED_COLUMNS} FROM credentials WHERE id = ? "
            f"UNION ALL SELECT {_CRED_MARKS} "
            "WHERE NOT EXISTS (SELECT 1 FROM credentials WHERE id = ?)",
            (cred_id, *_DECOY_VALUES, cred_id),
        ).fetchone()
        return CredentialRow(*found)

    @_store_errors
    def get_credential(self, cred_id: str) -> CredentialRow | None:
        row = self._conn.execute(
            f"SELECT {_CRED_COLUMNS} FROM credentials WHERE id = ?", (cred_id,)
        )
        found = row.fetchone()
        return None if found is None else CredentialRow(*found)

    @_store_errors
    def list_credentials(self) -> list[CredentialRow]:
        rows = self._conn.execute(
            f"SELECT {_CRED_COLUMNS} FROM credentials ORDER BY created_at, id"
        )
        return [CredentialRow(*r) for r in rows]

    @_store_errors
    def insert_credential(self, row: CredentialRow) -> None:
        values = [getattr(row, name) for name in CREDENTIAL_FIELDS]
        self._conn.execute(
            f"INSERT INTO credentials ({_CRED_COLUMNS}) VALUES ({_CRED_MARKS})", values
        )

    @_store_errors
    def update_credential(self, cred_id: str, **changes: object) -> None:
        unknown = sorted(set(changes) - set(CREDENTIAL_FIELDS))
        if unknown:  # names become SQL text below: only the row's own fields may
            raise TypeError(f"credentials have no field {', '.join(unknown)}")
        if not changes:
            return
        sets = ", ".join(f"{name} = ?" for name in changes)
        self._conn.execute(
            f"UPDATE credentials SET {sets} WHERE id = ?", [*changes.values(), cred_id]
        )

    @_store_errors
    def write_audit(
        self, records: Sequence[AuditRecord], refusals: Sequence[RefusalCount] = ()
    ) -> None:
        """One transaction for the whole batch (group commit); marks credentials as used."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({_AUDIT_MARKS})", records
            )
            conn.executemany(
                "UPDATE credentials SET last_used_at = max(coalesce(last_used_at, 0), ?) "
                "WHERE id = ?",
                [(at, cid) for cid, at in marks_used(records)],
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

    @_store_errors
    def read_audit(
        self, *, since: float | None = None, caller: str | None = None
    ) -> list[AuditRecord]:
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if caller is not None:
            where.append("(caller_id = ? OR caller_kind = ?)")
            args += [caller, caller]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit {clause} ORDER BY seq", args)
        return [AuditRecord(*r) for r in rows]

    @_store_errors
    def read_refusals(self, *, since: float | None = None) -> list[RefusalCount]:
        start = -1 if since is None else int(since) // 60 * 60
        rows = self._conn.execute(
            "SELECT minute, client, error, count FROM refusals WHERE minute >= ? "
            "ORDER BY minute, client, error",
            (start,),
        )
        return [RefusalCount(*r) for r in rows]

    @_store_errors
    def max_exp(self, kid: str) -> int | None:
        row = self._conn.execute(
            "SELECT max(exp) FROM audit WHERE kid = ? AND result = 'ok'", (kid,)
        )
        found: int | None = row.fetchone()[0]
        return found

    @_store_errors
    def close(self) -> None:
        # Closing the last connection removes SQLite's -wal/-shm files now, not at GC.
        self._conn.close()
