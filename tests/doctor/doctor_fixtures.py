"""Crafted issuers for the breakage a real broker never shows.

``crafted_issuer``: a tiny https issuer serving crafted documents. ``hostile_server``: a raw
loopback TCP server whose answers (dripping, bombs) no well-behaved HTTP server would give.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme

from broker.net.fetch_guard import Guard, remaining


@dataclass
class Doc:
    body: Any  # JSON-encoded unless bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # simulated slowness of this issuer, not synchronisation

    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        doc = self.server.docs.get(self.path, Doc({"error": "not found"}, status=404))
        time.sleep(doc.delay)
        body = doc.payload()
        self.send_response(doc.status)
        for name, value in {"content-type": "application/json", **doc.headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    docs: dict[str, Doc]


@contextlib.contextmanager
def crafted_issuer(
    chain_pem: bytes,
    docs_for: Callable[[str], dict[str, Doc]],
    *,
    tls13_only: bool = False,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Serve ``docs_for(issuer_url)`` over https on a free loopback port; yields the issuer URL.

    ``chain_pem`` is the private key followed by the certificates in the order to serve them.
    ``host`` names the issuer URL (e.g. ``localhost``); the server listens on 127.0.0.1.
    """
    server = _Server(("127.0.0.1", 0), _Handler)
    url = f"https://{host}:{server.server_address[1]}"
    server.docs = docs_for(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with trustme.Blob(chain_pem).tempfile() as path:
        ctx.load_cert_chain(path)
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def standard_docs(issuer: str, jwks: Any) -> dict[str, Doc]:
    """A conformant discovery document pointing at ``jwks``."""
    discovery = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
    }
    return {
        "/.well-known/openid-configuration": Doc(discovery),
        "/.well-known/jwks.json": Doc(jwks),
    }


@dataclass
class Hostile:
    """What a :func:`hostile_server` saw; ``stop`` is set when the test is done with it."""

    port: int
    connections: list[Any] = field(default_factory=list)  # peer addresses, one per connection
    heads: list[bytes] = field(default_factory=list)  # request heads read by read_head
    stop: threading.Event = field(default_factory=threading.Event)

    def read_head(self, conn: socket.socket) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                break
            head += data
        self.heads.append(head)
        return head


Respond = Callable[[socket.socket, Hostile], None]


class _RawServer(socketserver.ThreadingTCPServer):
    block_on_close = True  # server_close() joins every handler: nothing outlives the test
    hostile: Hostile
    respond: Respond


class _RawHandler(socketserver.BaseRequestHandler):
    server: _RawServer

    def handle(self) -> None:
        self.server.hostile.connections.append(self.client_address)
        with contextlib.suppress(OSError):  # the client hung up, as a bounded client does
            self.server.respond(self.request, self.server.hostile)


@contextlib.contextmanager
def hostile_server(respond: Respond) -> Iterator[Hostile]:
    """Hand every connection to a free loopback port to ``respond``; yields what it saw.

    ``respond`` must return soon after ``hostile.stop`` is set (pace with ``stop.wait``).
    """
    server = _RawServer(("127.0.0.1", 0), _RawHandler)
    server.hostile = Hostile(port=server.server_address[1])
    server.respond = respond
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.hostile
    finally:
        server.hostile.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass(frozen=True)
class ToLoopback(Guard):
    """A public name's port 443 connected to a loopback test server (stands in for DNS);
    any other host or port fails the test."""

    port: int = 0
    host: str = "oidc-test.example.com"

    def connect(self, host: str, port: int, *, deadline: float) -> socket.socket:
        assert (host, port) == (self.host, 443)
        return socket.create_connection(("127.0.0.1", self.port), timeout=remaining(deadline))
