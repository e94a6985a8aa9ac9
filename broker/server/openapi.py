"""The OpenAPI 3.1 document served at /openapi.json, built from the same models the API uses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broker import __version__
from broker.config import Settings
from broker.server.request_input import MintBody, SessionCreateBody
from broker.server.response_bodies import (
    Discovery,
    ErrorBody,
    Health,
    Jwk,
    Jwks,
    Minted,
    Ready,
    SessionCreated,
)

_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    SessionCreated,
    Minted,
    Health,
    Ready,
    Discovery,
    Jwk,
    Jwks,
    SessionCreateBody,
    MintBody,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(ErrorBody, "Error") for s in statuses}


def _static(model: type[BaseModel], summary: str) -> dict[str, Any]:
    op = {
        "summary": summary,
        "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {"200": _json(model, summary), "304": {"description": "Not modified"}},
    }
    return {"get": op}


def _get(model: type[BaseModel], summary: str, **more: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": _json(model, summary), **more}}}


def document(settings: Settings, *, minting: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/.well-known/openid-configuration": _static(Discovery, "OpenID discovery document"),
        "/.well-known/jwks.json": _static(Jwks, "Published signing keys"),
        "/healthz": _get(Health, "Liveness"),
        "/readyz": _get(
            Ready, "Readiness: keys loaded, data dir writable", **{"503": _json(Ready, "Not ready")}
        ),
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    if minting:
        paths["/session/create"] = {
            "post": {
                "summary": "Create a federation-proof session (upstream mock wire format)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(SessionCreateBody)}},
                },
                "responses": {"200": _json(SessionCreated, "Session")}
                | _errors(400, 401, 413, 415, 429),
            }
        }
        paths["/v1/mint-oidc-jwt"] = {
            "post": {
                "summary": "Mint a web-identity token for AWS STS",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(MintBody)}},
                },
                "responses": {"200": _json(Minted, "Token")}
                | _errors(400, 401, 403, 413, 415, 429, 503),
            }
        }
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # The model allows the hard cap; this broker's configured cap is what callers may ask for.
    ttl = schemas["MintBody"]["properties"]["ttl_seconds"]["anyOf"][0]
    ttl["maximum"] = settings.max_token_ttl_seconds
    return {
        "openapi": "3.1.0",
        "info": {"title": "oidc-test-broker", "version": __version__},
        "servers": [{"url": settings.oidc_issuer}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
