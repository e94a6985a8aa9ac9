"""The data dir and the SQLite store are private, without tightening directories we do not own."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.errors import KeyStoreError
from broker.main import main
from broker.store import AuditRecord, open_store
from broker.store.files import private_dir
from broker.store.key_records import KeyPolicy
from broker.store.keys import KeyStore
from broker.store.sqlite import DB_FILES

POLICY = KeyPolicy(algorithm="ES256", rsa_bits=2048, max_published=4, reload_seconds=1.0)
NOW = 1_800_000_000


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- private_dir ------------------------------------------------------------------------------


def test_a_shared_directory_is_refused_not_chmodded(tmp_path: Path) -> None:
    shared = tmp_path / "like-tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # what /tmp is
    with pytest.raises(KeyStoreError, match=f"run `chmod 700 {shared}`") as err:
        private_dir(shared)
    assert "BROKER_DATA_DIR" in err.value.message
    assert mode(shared) == 0o1777  # sticky bit and world access untouched


def test_a_group_readable_directory_is_refused(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir(mode=0o750)
    group.chmod(0o750)
    with pytest.raises(KeyStoreError, match="mode 0750"):
        private_dir(group)
    assert mode(group) == 0o750


def test_an_existing_private_directory_is_accepted(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o700)
    assert private_dir(mine) == mine
    assert mode(mine) == 0o700


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(KeyStoreError, match="is not a directory"):
        private_dir(tmp_path / "file")


def test_a_created_directory_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0):
        made = private_dir(tmp_path / "a" / "b")
    assert mode(made) == 0o700


def test_the_key_store_makes_a_new_data_dir_private_not_just_keys(tmp_path: Path) -> None:
    # `keys rotate` before the first `serve` creates the data dir; serve must accept it later.
    data = tmp_path / "new" / "data"
    with umask(0o022):
        KeyStore(data, POLICY).ensure(NOW)
    assert mode(data) == 0o700
    assert mode(data / "keys") == 0o700
    assert private_dir(data) == data


def test_keys_rotate_in_a_shared_data_dir_is_one_line(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = CliRunner().invoke(main, ["keys", "rotate"], env={"BROKER_DATA_DIR": str(shared)})
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {shared} is accessible to other users")
    assert len(result.output.strip().splitlines()) == 1
    assert mode(shared) == 0o1777
    assert not (shared / "keys").exists()


# -- the SQLite store -------------------------------------------------------------------------


def test_the_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    with umask(0o022):
        store = open_store(tmp_path)
        try:
            store.write_audit([AuditRecord(1.0, *[None] * 7, "ok", None)])
            files = [tmp_path / f"broker.sqlite3{s}" for s in ("", "-wal", "-shm")]
            assert all(p.exists() for p in files)  # WAL mode, open connection
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        finally:
            store.close()


def test_a_database_left_0644_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    with umask(0o022):
        open_store(tmp_path).close()
    db = tmp_path / "broker.sqlite3"
    db.chmod(0o644)
    open_store(tmp_path).close()
    assert mode(db) == 0o600


def test_opening_a_database_file_outside_sqlite_fails_the_tests(tmp_path: Path) -> None:
    # The guard of tests/conftest.py: what makes a stray open()/close() of the store impossible
    # to land (it would drop a live connection's locks; broker/store/sqlite.py says why).
    open_store(tmp_path).close()
    for name in DB_FILES:
        with pytest.raises(RuntimeError, match="opened outside SQLite"):
            (tmp_path / name).open("ab")
