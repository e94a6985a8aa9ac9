"""Back up a data dir beside a running broker, and restore one into an empty data dir.

A backup is a directory laid out like a data dir: the database (copied with SQLite's online
backup API by :func:`broker.store.sqlite.copy_database`, never with cp: see there), the keys
(copied under the key store's lock, so states and PEM files agree) and the other private files
(the federation-proof secret). It is written under a temporary name and renamed into place, so
a backup directory that exists is complete. Restoring copies the same way into a data dir that
holds no broker state yet, then opens the database once, which migrates an older backup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from broker.errors import ConfigError, InputFileError
from broker.store.files import atomic_write, private_dir
from broker.store.key_records import KeyPolicy
from broker.store.keys import STATE_FILE, KeyStore
from broker.store.sqlite import DB_FILE, DB_FILES, copy_database, exists, open_store


@dataclass(frozen=True, kw_only=True)
class Copied:
    """What a backup or a restore copied."""

    path: str
    schema_version: int
    credentials: int
    audit_records: int
    kids: list[str]
    files: list[str]  # other private files of the data dir, e.g. federation.key


def _other_files(source: Path) -> list[Path]:
    # Dot files are temporaries and locks; the database files are SQLite's alone to read.
    return sorted(
        f
        for f in source.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.name not in DB_FILES
    )


def _copy(source: Path, target: Path, keys: KeyPolicy) -> Copied:
    counts = copy_database(source, target)
    records = KeyStore(source, keys).copy_to(KeyStore(target, keys))
    others = _other_files(source)
    for f in others:
        atomic_write(target / f.name, f.read_bytes())
    return Copied(
        path=str(target),
        schema_version=counts["schema_version"],
        credentials=counts["credentials"],
        audit_records=counts["audit"],
        kids=[r.kid for r in records],
        files=[f.name for f in others],
    )


def backup(data_dir: Path, dest: Path, keys: KeyPolicy) -> Copied:
    """Copy ``data_dir`` to the new directory ``dest`` (0700), consistently, while it is in use."""
    if not exists(data_dir):
        raise ConfigError(
            f"no broker database in {str(data_dir)!r}: check --config / BROKER_DATA_DIR"
        )
    if dest.exists() or dest.is_symlink():
        raise ConfigError(f"{str(dest)!r} exists; give a new directory for the backup")
    partial = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))  # 0700
    try:
        copied = _copy(data_dir, partial, keys)
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return replace(copied, path=str(dest))


def restore(source: Path, data_dir: Path, keys: KeyPolicy) -> Copied:
    """Copy the backup ``source`` into ``data_dir``, which must hold no broker state yet."""
    if not exists(source):
        raise InputFileError(f"{str(source)!r} is not a test-broker backup: it has no {DB_FILE}")
    private_dir(data_dir)
    held = [
        name
        for name in (*DB_FILES, f"keys/{STATE_FILE}", *(f.name for f in _other_files(source)))
        if (data_dir / name).exists()
    ]
    if held:
        raise ConfigError(
            f"{str(data_dir)!r} already holds {', '.join(held)}: stop the broker, move the data "
            "dir aside (mv DIR DIR.old) and restore into an empty one"
        )
    copied = _copy(source, data_dir, keys)
    open_store(data_dir).close()  # WAL mode again, and an older backup migrated
    return copied
