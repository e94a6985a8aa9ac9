"""Crash-safe private files: 0700 directories, 0600 files, atomic replace, fsync everywhere."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from broker.errors import KeyStoreError


def private_dir(path: Path) -> Path:
    """Create a directory only this user can enter, or accept an existing one that is so.

    An existing directory is never chmodded: it may be shared (BROKER_DATA_DIR=/tmp would lose
    its sticky bit and mode 1777), so a group- or world-accessible one is refused instead.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    else:
        path.chmod(0o700)  # exact, whatever the umask; we created it, so it is ours to set
        return path
    if not path.is_dir():
        raise KeyStoreError(f"{path} exists but is not a directory; remove it or choose another")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyStoreError(
            f"{path} is accessible to other users (mode {mode:04o}) and would hold private keys; "
            f"run `chmod 700 {path}` if it is this broker's own directory, "
            "or set data_dir (BROKER_DATA_DIR) to a new path, which is created 0700"
        )
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_temp(path: Path, data: bytes, mode: int = 0o600) -> str:
    """A fsynced temp file beside ``path`` with ``mode`` (mkstemp creates it 0600, and never
    through a planted symlink: O_EXCL with a random name)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != 0o600:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` so that readers see the old or the new bytes, never a torn file."""
    tmp = _durable_temp(path, data, mode)
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
