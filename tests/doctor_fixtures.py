"""A tiny https issuer serving crafted documents, for the issuer breakage a real broker never shows."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme


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
) -> Iterator[str]:
    """Serve ``docs_for(issuer_url)`` over https on a free loopback port; yields the issuer URL.

    ``chain_pem`` is the private key followed by the certificates in the order to serve them.
    """
    server = _Server(("127.0.0.1", 0), _Handler)
    url = f"https://127.0.0.1:{server.server_address[1]}"
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
