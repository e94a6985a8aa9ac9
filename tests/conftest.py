"""Shared fixtures: isolated settings, and a real uvicorn broker on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from broker.config import Settings, load_settings
from broker.store.sqlite import DB_FILES
from broker.testing.live import LiveBroker, StartBroker, serving

# The pytest plugin's own tests (tests/testing) run pytest inside pytest.
pytest_plugins = ["pytester"]


def _only_sqlite_opens_its_files(event: str, args: tuple[Any, ...]) -> None:
    """Fail any Python-level open of a SQLite database file, in the product or in a test.

    Closing such a descriptor drops the POSIX locks of every connection in the process (see
    broker/store/sqlite.py), so only SQLite (whose opens raise no audit event) may open them.
    """
    if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        name = os.path.basename(os.fsdecode(args[0]))
        if name in DB_FILES:
            raise RuntimeError(f"{args[0]!r} opened outside SQLite; see broker/store/sqlite.py")


sys.addaudithook(_only_sqlite_opens_its_files)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BROKER_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("BROKER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("key_reload_seconds", 0.05)
        return load_settings(environ={}, **overrides)

    return make


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway CA; brokers served with it are https issuers on loopback."""
    return trustme.CA()


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    """``tls_ca``'s certificate as a PEM file, for --ca-file."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def live_broker(make_settings: Callable[..., Settings]) -> Iterator[StartBroker]:
    with contextlib.ExitStack() as stack:

        def start(
            *, issuer: str | None = None, tls: trustme.CA | None = None, **overrides: Any
        ) -> LiveBroker:
            return stack.enter_context(
                serving(lambda url: make_settings(oidc_issuer=issuer or url, **overrides), tls=tls)
            )

        yield start
