"""Shared fixtures: isolated settings, and a real uvicorn broker on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from broker.config import Settings, load_settings
from broker.server.app import WellKnownFront, create_app, server_options
from broker.store.sqlite import DB_FILES


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


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LiveBroker:
    url: str
    settings: Settings
    app: WellKnownFront
    client: httpx.Client


StartBroker = Callable[..., LiveBroker]


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway CA; brokers served with it are https issuers on loopback."""
    return trustme.CA()


@contextlib.contextmanager
def serving(
    make: Callable[[str], Settings], *, tls: trustme.CA | None = None
) -> Iterator[LiveBroker]:
    """Run a broker in a thread; the port is bound first so the issuer can name it."""
    sock = free_socket()
    port = sock.getsockname()[1]
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    settings = make(url)
    app = create_app(settings)
    with contextlib.ExitStack() as stack:
        ssl_files: dict[str, Any] = {}
        verify: Any = True
        if tls is not None:
            pem = tls.issue_cert("127.0.0.1").private_key_and_cert_chain_pem
            chain = str(stack.enter_context(pem.tempfile()))
            ssl_files = {"ssl_keyfile": chain, "ssl_certfile": chain}
            verify = ssl_context(tls)
        options = server_options(settings)
        config = uvicorn.Config(app, log_level="warning", **options, **ssl_files)
        server = _Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            if not server.ready.wait(10):
                raise RuntimeError("broker did not start within 10 s")
            with httpx.Client(base_url=url, timeout=10, verify=verify) as client:
                yield LiveBroker(url=url, settings=settings, app=app, client=client)
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


def ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


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


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition (the broker's own reload timer drives it) with a hard deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def free_loopback_url() -> str:
    """A URL whose port was free a moment ago (for brokers that bind it themselves)."""
    with contextlib.closing(free_socket()) as sock:
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def spawn_broker(env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """``test-broker serve`` as a real process (for signals and stderr); returns once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve"],
        env={**os.environ, **env},
        text=True,
        start_new_session=True,
        **popen,
    )
    url = env["BROKER_OIDC_ISSUER"]

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: up() or proc.poll() is not None, timeout=20)
    except BaseException:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"broker exited with {proc.returncode} before answering")
    return proc
