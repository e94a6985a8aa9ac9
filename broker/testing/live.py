"""A real broker on a free loopback port: in a thread (``serving``) or as a process (``spawn_broker``).

Servers bind 127.0.0.1 on a port chosen by the kernel and are always torn down; waiting is by
polling a condition with a deadline (``wait_until``), never by sleeping a guessed time.
"""

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
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from broker.config import Settings
from broker.server.app import create_app, server_options
from broker.server.wellknown import WellKnownFront

if TYPE_CHECKING:
    import trustme


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


@contextlib.contextmanager
def serving(
    make: Callable[[str], Settings], *, tls: trustme.CA | None = None
) -> Iterator[LiveBroker]:
    """Run a broker in a thread; the port is bound first so the issuer can name it."""
    sock = free_socket()
    port = sock.getsockname()[1]
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)  # also when the settings or the app cannot be made
        settings = make(url)
        app = create_app(settings)
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


def ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


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


def spawn_broker(
    env: dict[str, str], *, url: str | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """``test-broker serve`` as a real process (for signals and stderr); returns once it answers.

    ``url`` is where it listens, when that is not its issuer (a public issuer behind nginx).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve"],
        env={**os.environ, **env},
        text=True,
        start_new_session=True,
        **popen,
    )
    url = url or env["BROKER_OIDC_ISSUER"]

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
