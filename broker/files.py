"""Crash-safe private files: 0700 directories, 0600 files, atomic replace, fsync everywhere."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create (or tighten) a directory only this user can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_temp(path: Path, data: bytes) -> str:
    """A fsynced 0600 temp file beside ``path`` (mkstemp creates it 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` so that readers see the old or the new bytes, never a torn file."""
    tmp = _durable_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def create_once(path: Path, data: bytes) -> bytes:
    """Create ``path`` with ``data`` unless it exists; return what the file holds either way.

    link(2) fails on an existing name, so two processes starting at once agree on one content.
    """
    if not path.exists():
        tmp = _durable_temp(path, data)
        try:
            os.link(tmp, path)
            _fsync_dir(path.parent)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_bytes()
