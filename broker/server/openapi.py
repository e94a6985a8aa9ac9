"""The OpenAPI 3.1 document served at /openapi.json, built from the route table (routes.py).

It documents ``routes.mounted(settings)``, the same selection app.py mounts, and the schemas of
the models those routes take and answer with, so it never lists a route that answers 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from broker import __version__
from broker.config import Settings
from broker.server import routes
from broker.server.request_input import FORM, MintBody
from broker.server.routes import Reply, RouteSpec


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _reply(reply: Reply, summary: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description or summary}
    if reply.body is not None:
        body = reply.body
        schema = _ref(body) if isinstance(body, type) else dict(body)
        out["content"] = {reply.media_type: {"schema": schema}}
    return out


def _operation(route: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary}
    if route.etag:
        op["parameters"] = [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}]
    if route.bearer:
        op["security"] = [{"bearer": []}]
    if route.request is not None:
        media = (FORM, "application/json") if route.form else ("application/json",)
        op["requestBody"] = {
            "required": route.request_required,
            "content": {m: {"schema": _ref(route.request)} for m in media},
        }
    responses = {str(status): _reply(r, route.summary) for status, r in route.responses.items()}
    if route.etag:
        responses["304"] = {"description": "Not modified"}
    op["responses"] = responses
    return op


def _models(mounted: tuple[RouteSpec, ...]) -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    for route in mounted:
        bodies = [r.body for r in route.responses.values()] + [route.request]
        for body in bodies:
            if isinstance(body, type) and body not in seen:
                seen.add(body)
                yield body


def document(settings: Settings) -> dict[str, Any]:
    mounted = routes.mounted(settings)
    paths: dict[str, Any] = {}
    for route in mounted:
        for method in route.methods:
            paths.setdefault(route.path, {})[method.lower()] = _operation(route)
    schemas: dict[str, Any] = {}
    for model in _models(mounted):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    if MintBody.__name__ in schemas:
        # The model allows the hard cap; this broker's configured cap is what callers may ask for.
        ttl = schemas[MintBody.__name__]["properties"]["ttl_seconds"]["anyOf"][0]
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
