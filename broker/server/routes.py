"""The one route table: the ASGI app mounts it and /openapi.json documents it.

Each ``RouteSpec`` says where a route is served, when it exists (a predicate over the enabled
caller kinds), what it takes and what it answers per status. ``mounted(settings)`` is the only
selection: app.py builds its Starlette routes, its direct-endpoint map and the well-known front's
paths from it, and openapi.py its paths and schemas, so the document cannot list a route that
answers 404 (an unmounted route answers exactly like an unknown one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from broker.config import Settings
from broker.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from broker.server.request_input import ExchangeBody, MintBody, SessionCreateBody
from broker.server.response_bodies import (
    Discovery,
    ErrorBody,
    Exchanged,
    Health,
    Jwks,
    Minted,
    Ready,
    SessionCreated,
)
from broker.sts.oidc import DISCOVERY_PATH, JWKS_PATH

# The enabled caller kinds, named as Settings.minting_kinds names them; empty means inert.
Kinds = frozenset[str]
FEDERATION_PROOF = "federation-proof"
CREDENTIALS = "credentials"
TOKEN_EXCHANGE = "token-exchange"  # noqa: S105 - a caller kind

METRICS_MEDIA_TYPE = METRICS_CONTENT_TYPE.split(";")[0]  # "text/plain"; parameters vary by version


def always(kinds: Kinds) -> bool:
    return True


def federation_proof(kinds: Kinds) -> bool:
    return FEDERATION_PROOF in kinds


def any_minter(kinds: Kinds) -> bool:
    """A bearer kind: federation-proof sessions or credentials (the mint endpoint's callers)."""
    return bool(kinds - {TOKEN_EXCHANGE})


def token_exchange(kinds: Kinds) -> bool:
    return TOKEN_EXCHANGE in kinds


class Layer(enum.Enum):
    """Which part of the app (app.create_app) answers a route."""

    WELL_KNOWN = "well-known"  # wellknown.py's front, precomputed bytes (GET, and HEAD)
    STARLETTE = "starlette"  # Starlette's router (a GET route answers HEAD too)
    # Called by app._Observed past Starlette's router and middleware (the mint hot path), and
    # mounted in Starlette as well, so its other methods get 405 with Allow.
    DIRECT = "direct"


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One documented response: a body model, a bare JSON schema, or no body at all."""

    body: type[BaseModel] | Mapping[str, Any] | None = None
    description: str | None = None  # None: the route's summary
    media_type: str = "application/json"


def errors(*statuses: int) -> dict[int, Reply]:
    return {status: Reply(body=ErrorBody, description="Error") for status in statuses}


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    path: str
    methods: tuple[str, ...]
    endpoint: str  # the handler's name in app.py's endpoint map (and the well-known metric name)
    summary: str
    responses: Mapping[int, Reply]
    when: Callable[[Kinds], bool] = always
    layer: Layer = Layer.STARLETTE
    request: type[BaseModel] | None = None
    request_required: bool = False
    form: bool = False  # the body may also be application/x-www-form-urlencoded
    bearer: bool = False  # Authorization: Bearer <session or secret>
    etag: bool = False  # strong ETag: takes If-None-Match, may answer 304


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        path=DISCOVERY_PATH,
        methods=("GET",),
        endpoint="discovery",
        layer=Layer.WELL_KNOWN,
        etag=True,
        summary="OpenID discovery document",
        responses={200: Reply(body=Discovery)},
    ),
    RouteSpec(
        path=JWKS_PATH,
        methods=("GET",),
        endpoint="jwks",
        layer=Layer.WELL_KNOWN,
        etag=True,
        summary="Published signing keys",
        responses={200: Reply(body=Jwks)},
    ),
    RouteSpec(
        path="/healthz",
        methods=("GET",),
        endpoint="healthz",
        summary="Liveness",
        responses={200: Reply(body=Health)},
    ),
    RouteSpec(
        path="/readyz",
        methods=("GET",),
        endpoint="readyz",
        summary="Readiness: keys loaded, data dir writable, STS conformance",
        responses={200: Reply(body=Ready), 503: Reply(body=Ready, description="Not ready")},
    ),
    RouteSpec(
        path="/metrics",
        methods=("GET",),
        endpoint="metrics",
        summary="Prometheus metrics",
        responses={200: Reply(body={"type": "string"}, media_type=METRICS_MEDIA_TYPE)},
    ),
    RouteSpec(
        path="/openapi.json",
        methods=("GET",),
        endpoint="openapi",
        summary="This document",
        responses={200: Reply(body={"type": "object"}, description="OpenAPI document")},
    ),
    RouteSpec(
        path="/session/create",
        methods=("POST",),
        endpoint="session_create",
        when=federation_proof,
        summary="Create a federation-proof session (upstream mock wire format)",
        request=SessionCreateBody,
        request_required=True,
        responses={200: Reply(body=SessionCreated, description="Session")}
        | errors(400, 401, 413, 415, 429),
    ),
    RouteSpec(
        path="/v1/mint-oidc-jwt",
        methods=("POST",),
        endpoint="mint",
        when=any_minter,
        layer=Layer.DIRECT,
        summary="Mint a web-identity token for AWS STS",
        bearer=True,
        request=MintBody,
        responses={200: Reply(body=Minted, description="Token")}
        | errors(400, 401, 403, 413, 415, 429, 503),
    ),
    RouteSpec(
        path="/v1/token-exchange",
        methods=("POST",),
        endpoint="token_exchange",
        when=token_exchange,
        summary="Exchange a trusted CI provider's job token for a token (RFC 8693)",
        request=ExchangeBody,
        request_required=True,
        form=True,
        responses={200: Reply(body=Exchanged, description="Token")}
        | errors(400, 413, 415, 429, 503),
    ),
)


def enabled_kinds(settings: Settings) -> Kinds:
    return frozenset(settings.minting_kinds)


def mounted(settings: Settings) -> tuple[RouteSpec, ...]:
    """The routes this broker serves, in table order: exactly what /openapi.json lists."""
    kinds = enabled_kinds(settings)
    return tuple(route for route in ROUTES if route.when(kinds))
