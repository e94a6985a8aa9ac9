"""The ASGI front: discovery and JWKS straight from precomputed bytes; the rest to Starlette.

AWS STS fetches these two documents; nothing but a counter and a clock read sits on the path
(docs/performance.md: every middleware layer costs a visible share of ~30 µs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.errors import MethodNotAllowed
from broker.server.discovery import CACHE_CONTROL, StaticDocument
from broker.server.metrics import Metrics

_CACHE_CONTROL = CACHE_CONTROL.encode()
_JSON = b"application/json"


class WellKnownFront:
    """``documents`` maps each path to its name (the metrics label) and its current document."""

    def __init__(
        self,
        documents: dict[str, tuple[str, Callable[[], StaticDocument]]],
        inner: ASGIApp,
        metrics: Metrics,
    ) -> None:
        self.documents = documents
        self.inner = inner
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.documents.get(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.inner(scope, receive, send)
            return
        name, current = found
        started = time.perf_counter()
        status = await self._serve(current(), scope, receive, send)
        m = self._metrics
        m.wellknown_fetch_total.labels(name, str(status)).inc()
        m.wellknown_seconds.labels(name).observe(time.perf_counter() - started)
        m.wellknown_last_fetch.labels(name).set(time.time())

    @staticmethod
    async def _serve(doc: StaticDocument, scope: Scope, receive: Receive, send: Send) -> int:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            err = MethodNotAllowed(f"{method} is not allowed here; use GET, HEAD")
            response = JSONResponse(err.body(), err.status, headers={"Allow": "GET, HEAD"})
            await response(scope, receive, send)
            return err.status
        headers = [
            (b"content-type", _JSON),
            (b"cache-control", _CACHE_CONTROL),
            (b"etag", doc.etag.encode()),
        ]
        # Several header lines are one comma-separated list (RFC 9110 5.3).
        if_none_match = b",".join(v for k, v in scope["headers"] if k == b"if-none-match")
        if if_none_match and doc.matches(if_none_match.decode("latin-1")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return 304
        headers.append((b"content-length", str(len(doc.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else doc.body})
        return 200
