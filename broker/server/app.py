"""``create_app(settings)``: the ASGI application.

Two layers: a tiny ASGI front serves the two well-known documents from precomputed bytes (AWS STS
fetches them; nothing else should sit on that path), and Starlette serves the rest. Both are built
from the route table (routes.py), as /openapi.json is. Routes of a caller kind that is not enabled
are not mounted at all, so they answer exactly like unknown routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.callers.federation import FederationProof, load_secret
from broker.callers.gate import Gate
from broker.config import Settings
from broker.errors import (
    BrokerError,
    IssuerNotConformant,
    MethodNotAllowed,
    NotFound,
    NotReady,
    RateLimited,
    Unauthorized,
)
from broker.server import openapi, routes
from broker.server.audit import AuditLog
from broker.server.discovery import StaticDocument, discovery_document
from broker.server.exchange_api import ExchangeApi
from broker.server.http_limits import HttpLimits, protocol_class
from broker.server.issuer_keys import IssuerKeys
from broker.server.keyring import KeyRing
from broker.server.logs import new_request_id, request_id
from broker.server.metrics import CONTENT_TYPE, Metrics
from broker.server.mint import Minter
from broker.server.mint_api import MintApi
from broker.server.ratelimit import CallerLimits
from broker.server.routes import Layer
from broker.server.self_check import is_fatal, self_check
from broker.server.wellknown import WellKnownFront
from broker.store import Store, open_store
from broker.store.files import private_dir
from broker.store.keys import KeyStore
from broker.sts.catalogue import Severity

log = logging.getLogger("broker")
Clock = Callable[[], int]
Endpoint = Callable[[Request], Awaitable[Response]]


def _now() -> int:
    return int(time.time())


def error_response(err: BrokerError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


NOT_FOUND = NotFound("no such route; the API is described at /openapi.json")


class Broker:
    """Everything a running broker holds, built once from Settings."""

    def __init__(self, settings: Settings, clock: Clock = _now) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        private_dir(settings.data_dir)
        store = KeyStore.for_settings(settings)
        store.ensure(clock())
        self.ring = KeyRing(store, clock())
        self.discovery = discovery_document(settings, self.ring.algorithms)
        federation = (
            FederationProof(load_secret(settings.data_dir), settings.session_ttl_seconds)
            if settings.federation_enabled
            else None
        )
        # Two stores on one database: this one for credential reads on the event loop, and the
        # audit writer's own (broker/store/sqlite.py says why not one).
        self.store: Store | None = (
            open_store(settings.data_dir) if settings.credential_minting else None
        )
        self.gate = Gate(settings, federation, self.store)
        # The writer's store is opened now, not in the lifespan: a database that cannot be
        # opened refuses `serve` with one line, not a traceback from inside uvicorn.
        writer = open_store(settings.data_dir) if self.minting_enabled else None
        self.audit = AuditLog(
            (lambda: writer)
            if writer is not None
            else functools.partial(open_store, settings.data_dir)
        )
        self.conformant = self._self_check(at_start=True)
        minter = Minter(settings, self.ring)
        limits = CallerLimits(settings)
        self.api = MintApi(settings, self.gate, minter, self.audit, self.metrics, limits, clock)
        self.exchange = ExchangeApi(
            settings, minter, self.audit, self.metrics, limits, IssuerKeys(), clock
        )

    def _self_check(self, *, at_start: bool) -> bool:
        """Run doctor's issuer rules on our own documents: fatal refuses start, rest warns."""
        findings = self_check(
            json.loads(self.discovery.body),
            json.loads(self.ring.jwks.body),
            self.settings.oidc_issuer,
        )
        fatal = [f for f in findings if is_fatal(f)]
        for f in findings:
            # House notes on a loopback issuer ("AWS cannot reach it") are expected, not news.
            quiet = self.settings.issuer_is_loopback and f.severity is Severity.HOUSE
            level = logging.ERROR if is_fatal(f) else logging.INFO if quiet else logging.WARNING
            log.log(level, "self-check %s: %s (%s)", f.rule, f.detail, f.fix)
        if fatal and at_start:
            raise IssuerNotConformant(
                "refusing to start: AWS STS would reject this issuer: "
                + "; ".join(f"{f.rule}: {f.detail}" for f in fatal)
            )
        return not fatal

    @property
    def minting_enabled(self) -> bool:
        return bool(self.settings.minting_kinds)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def readiness(self) -> dict[str, bool]:
        return {
            "keys_loaded": self._keys_loaded(),
            "data_dir_writable": self._data_dir_writable(),
            "sts_conformance": self.conformant,
        }

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
        return JSONResponse(openapi.document(self.settings))

    async def metrics_text(self, request: Request) -> Response:
        self.metrics.published_keys.set(len(self.ring.snapshot.published(self.clock())))
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def endpoints(self) -> dict[str, Endpoint]:
        """The handler of each endpoint name in the route table (routes.py)."""
        return {
            "healthz": self.healthz,
            "readyz": self.readyz,
            "metrics": self.metrics_text,
            "openapi": self.openapi_json,
            "session_create": self.api.session_create,
            "mint": self.api.mint,
            "token_exchange": self.exchange.token_exchange,
        }

    def documents(self) -> dict[str, Callable[[], StaticDocument]]:
        """The current document of each well-known endpoint name in the route table."""
        return {"discovery": lambda: self.discovery, "jwks": lambda: self.ring.jwks}

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.minting_enabled:
            self.audit.start(asyncio.get_running_loop())
        task = asyncio.create_task(self._reload_keys())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.audit.stop()
            if self.store is not None:  # closing removes SQLite's -wal/-shm files now, not at GC
                self.store.close()

    def _publish_discovery(self) -> None:
        # Discovery lists the algs of the published keys (keyring.py); a key_algorithm switch
        # publishes a new-alg key next to the old ones, and the last old key leaving drops its alg.
        document = discovery_document(self.settings, self.ring.algorithms)
        if document != self.discovery:
            self.discovery = document
            log.info("discovery now lists algorithms %s", list(self.ring.algorithms))

    async def _reload_keys(self) -> None:
        # A timer, not synchronisation: the CLI may rotate keys at any moment.
        while True:
            await asyncio.sleep(self.settings.key_reload_seconds)
            try:
                if self.ring.refresh(self.clock()):
                    self._publish_discovery()
                    self.conformant = self._self_check(at_start=False)
            except Exception:  # a dead reloader would silently ignore `keys remove`
                log.exception("key reload failed; keeping the published keys, retrying")


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
    return broker_error_response(exc)


def broker_error_response(exc: BrokerError) -> Response:
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(exc, headers)


class _Observed:
    """Request id and per-route latency for everything past the well-known front.

    ``direct`` endpoints (the mint route) are called here without Starlette's router and
    middleware stack: measured, those layers were a quarter of a mint's time on the loop.
    They raise only BrokerError for bad input, rendered exactly as Starlette's handler does;
    other methods on their path still go through Starlette (405 with Allow).
    """

    def __init__(
        self,
        inner: ASGIApp,
        routes: list[Route],
        metrics: Metrics,
        direct: dict[tuple[str, str], Endpoint],
    ) -> None:
        self.inner = inner
        self.paths = {r.path for r in routes}
        self.histogram = metrics.request_seconds
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        token = request_id.set(new_request_id())
        endpoint = self.direct.get((scope["path"], scope["method"]))
        try:
            if endpoint is None:
                await self.inner(scope, receive, send)
            else:
                try:
                    response = await endpoint(Request(scope, receive, send))
                except BrokerError as exc:
                    response = broker_error_response(exc)
                await response(scope, receive, send)
        finally:
            request_id.reset(token)
            route = scope["path"] if scope["path"] in self.paths else "other"
            self.histogram.labels(route).observe(time.perf_counter() - started)


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of every broker server: `serve` and the tests' live brokers."""
    return {
        "access_log": False,  # halves throughput on the discovery path (docs/performance.md)
        "server_header": False,
        "date_header": False,
        # Only a named proxy may say who the client is: rate limits and audit key on it.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies or None,
        # uvicorn bounds neither header size nor header/body time for httptools (http_limits.py).
        "http": protocol_class(HttpLimits.from_settings(settings)),
    }


@dataclass(frozen=True)
class Mounted:
    """The route table's mounted selection, split by the layer that answers each route."""

    starlette: list[Route]
    direct: dict[tuple[str, str], Endpoint]
    well_known: dict[str, tuple[str, Callable[[], StaticDocument]]]


def mount(broker: Broker) -> Mounted:
    handlers = broker.endpoints()
    documents = broker.documents()
    mounted = Mounted(starlette=[], direct={}, well_known={})
    for spec in routes.mounted(broker.settings):
        if spec.layer is Layer.WELL_KNOWN:
            mounted.well_known[spec.path] = (spec.endpoint, documents[spec.endpoint])
            continue
        handler = handlers[spec.endpoint]
        mounted.starlette.append(Route(spec.path, handler, methods=list(spec.methods)))
        if spec.layer is Layer.DIRECT:
            mounted.direct.update({(spec.path, method): handler for method in spec.methods})
    return mounted


def create_app(settings: Settings, clock: Clock = _now) -> WellKnownFront:
    broker = Broker(settings, clock)
    mounted = mount(broker)
    inner = Starlette(
        routes=mounted.starlette,
        exception_handlers={HTTPException: _http_error, BrokerError: _broker_error},
        lifespan=broker.lifespan,
    )
    inner.router.redirect_slashes = False  # STS follows no redirects; neither should anyone
    if settings.open_federation_on_public_issuer:
        log.warning(
            "open federation-proof minting is ON for issuer %s listening on %s: anyone who can "
            "reach this broker can mint tokens for a mock wallet (allow_open_federation_proof)",
            settings.oidc_issuer,
            settings.listen_address[0],
        )
    if settings.seaweedfs_tags_claim and not settings.issuer_is_loopback:
        log.warning(
            "seaweedfs_tags_claim is ON for public issuer %s: tokens carry the flat "
            "https://aws.amazon.com/tags/principal_tags claim, whose effect on AWS STS is "
            "unverified (see deploy/seaweedfs.md)",
            settings.oidc_issuer,
        )
    if not settings.rate_limits:
        log.warning("rate limits are OFF (rate_limits = false): only for benchmarks and load tests")
    log.info(
        "issuer %s; minting %s; data in %s",
        settings.oidc_issuer,
        ", ".join(settings.minting_kinds) or "disabled (inert)",
        os.path.abspath(settings.data_dir),
    )
    observed = _Observed(inner, mounted.starlette, broker.metrics, mounted.direct)
    return WellKnownFront(mounted.well_known, observed, broker.metrics)
