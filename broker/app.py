"""``create_app(settings)``: the ASGI application.

Two layers: a tiny ASGI front serves the two well-known documents from precomputed bytes (AWS STS
fetches them; nothing else should sit on that path), and Starlette serves the rest. Routes of a
caller kind that is not enabled are not mounted at all, so they answer exactly like unknown routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from broker import openapi
from broker.config import Settings
from broker.discovery import (
    CACHE_CONTROL,
    DISCOVERY_PATH,
    JWKS_PATH,
    StaticDocument,
    discovery_document,
)
from broker.errors import (
    BrokerError,
    MethodNotAllowed,
    NotFound,
    NotReady,
    ScopeNotAllowed,
)
from broker.federation import FederationProof, load_secret
from broker.files import private_dir
from broker.keyring import KeyRing
from broker.keys import KeyPolicy, KeyStore
from broker.mint import Minter, MintRequest
from broker.request_input import MintBody, SessionCreateBody, bearer, json_body

log = logging.getLogger("broker")
Clock = Callable[[], int]


def _now() -> int:
    return int(time.time())


def key_store(settings: Settings) -> KeyStore:
    policy = KeyPolicy(
        algorithm=settings.key_algorithm,
        rsa_bits=settings.rsa_key_bits,
        max_published=settings.max_published_keys,
        max_token_ttl=settings.max_token_ttl_seconds,
        reload_seconds=settings.key_reload_seconds,
    )
    return KeyStore(settings.data_dir, policy)


def error_response(err: BrokerError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


NOT_FOUND = NotFound("no such route; the API is described at /openapi.json")


class Broker:
    """Everything a running broker holds, built once from Settings."""

    def __init__(self, settings: Settings, clock: Clock = _now) -> None:
        self.settings = settings
        self.clock = clock
        private_dir(settings.data_dir)
        store = key_store(settings)
        store.ensure(clock())
        self.ring = KeyRing(store, clock())
        self.discovery = discovery_document(settings)
        self.minter = Minter(settings, self.ring)
        self.federation = (
            FederationProof(load_secret(settings.data_dir), settings.session_ttl_seconds)
            if settings.federation_enabled
            else None
        )

    @property
    def minting_enabled(self) -> bool:
        return self.federation is not None

    # -- endpoints ---------------------------------------------------------------------------

    async def session_create(self, request: Request) -> Response:
        assert self.federation is not None  # noqa: S101 - route mounted only when enabled
        body = await json_body(
            request, SessionCreateBody, self.settings.max_body_bytes, optional=False
        )
        session = self.federation.create_session(body.auth_token, self.clock())
        return JSONResponse({"session": session.bearer, "wallet": session.wallet})

    async def mint(self, request: Request) -> Response:
        assert self.federation is not None  # noqa: S101 - route mounted only when enabled
        token = bearer(request)
        body = await json_body(request, MintBody, self.settings.max_body_bytes, optional=True)
        now = self.clock()
        session = self.federation.resolve(token, now)
        if body.scope is not None and body.scope != session.wallet:
            raise ScopeNotAllowed(
                f"a federation-proof session may only mint its own wallet {session.wallet}; "
                "omit 'scope' or send that value"
            )
        result = self.minter.mint(
            MintRequest(
                kind="fed",
                caller_id=session.wallet,
                scope=session.wallet,
                max_ttl=self.settings.max_token_ttl_seconds,
            ),
            ttl=body.ttl_seconds,
            now=now,
        )
        return JSONResponse(
            {
                "jwt": result.jwt,
                "wallet": session.wallet,
                "expiration": result.expiration,
                "scope": result.scope,
                "sub": result.sub,
                "jti": result.jti,
                "principal_tags": result.principal_tags,
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def readiness(self) -> dict[str, bool]:
        return {"keys_loaded": self._keys_loaded(), "data_dir_writable": self._data_dir_writable()}

    def _keys_loaded(self) -> bool:
        snapshot = self.ring.snapshot
        return snapshot.active.kid in snapshot.private

    def _data_dir_writable(self) -> bool:
        try:
            with tempfile.TemporaryFile(dir=self.settings.data_dir):
                return True
        except OSError:
            return False

    async def readyz(self, request: Request) -> Response:
        checks = self.readiness()
        ready = all(checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else NotReady.status)

    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(openapi.document(self.settings, minting=self.minting_enabled))

    def routes(self) -> list[Route]:
        routes = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/openapi.json", self.openapi_json, methods=["GET"]),
        ]
        if self.federation is not None:
            routes += [
                Route("/session/create", self.session_create, methods=["POST"]),
                Route("/v1/mint-oidc-jwt", self.mint, methods=["POST"]),
            ]
        return routes

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(self._reload_keys())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reload_keys(self) -> None:
        # A timer, not synchronisation: the CLI may rotate keys at any moment.
        while True:
            await asyncio.sleep(self.settings.key_reload_seconds)
            self.ring.refresh(self.clock())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        err = MethodNotAllowed(f"{request.method} is not allowed here; use {allow}")
        return error_response(err, {"Allow": allow})
    if exc.status_code == 404:
        return error_response(NOT_FOUND)
    return JSONResponse({"error": "bad_request", "message": exc.detail}, exc.status_code)


async def _broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)  # noqa: S101 - registered for BrokerError only
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc, headers)


class WellKnownFront:
    """Serves discovery and JWKS straight from bytes; passes everything else to Starlette."""

    def __init__(self, broker: Broker, inner: Starlette) -> None:
        self.broker = broker
        self.inner = inner

    def _document(self, path: str) -> StaticDocument | None:
        if path == DISCOVERY_PATH:
            return self.broker.discovery
        if path == JWKS_PATH:
            return self.broker.ring.jwks
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        doc = self._document(scope["path"]) if scope["type"] == "http" else None
        if doc is None:
            await self.inner(scope, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            err = MethodNotAllowed(f"{method} is not allowed here; use GET, HEAD")
            await error_response(err, {"Allow": "GET, HEAD"})(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", CACHE_CONTROL.encode()),
            (b"etag", doc.etag.encode()),
        ]
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        if if_none_match is not None and doc.matches(if_none_match.decode("latin-1")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(doc.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else doc.body})


def create_app(settings: Settings, clock: Clock = _now) -> WellKnownFront:
    broker = Broker(settings, clock)
    inner = Starlette(
        routes=broker.routes(),
        exception_handlers={HTTPException: _http_error, BrokerError: _broker_error},
        lifespan=broker.lifespan,
    )
    inner.router.redirect_slashes = False  # STS follows no redirects; neither should anyone
    if settings.open_federation_on_public_issuer:
        log.warning(
            "open federation-proof minting is ON for public issuer %s: anyone who can reach "
            "this broker can mint tokens for a mock wallet (allow_open_federation_proof = true)",
            settings.oidc_issuer,
        )
    log.info(
        "issuer %s; minting %s; data in %s",
        settings.oidc_issuer,
        "federation-proof" if broker.minting_enabled else "disabled (inert)",
        os.path.abspath(settings.data_dir),
    )
    return WellKnownFront(broker, inner)
