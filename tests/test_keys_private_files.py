"""The SQLite store is private: the database and its -wal and -shm are 0600."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from broker import store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- the SQLite store -------------------------------------------------------------------------


def test_the_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    with umask(0o022):
        conn = store.connect(tmp_path)
        try:
            store.write_audit(conn, [store.AuditRecord(1.0, *[None] * 7, "ok", None)])
            files = [tmp_path / f"broker.sqlite3{s}" for s in ("", "-wal", "-shm")]
            assert all(p.exists() for p in files)  # WAL mode, open connection
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        finally:
            conn.close()


def test_a_database_left_0644_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    with umask(0o022):
        store.connect(tmp_path).close()
    db = tmp_path / "broker.sqlite3"
    db.chmod(0o644)
    conn = store.connect(tmp_path)
    conn.close()
    assert mode(db) == 0o600
