"""Reading what a caller sends, defensively: the bearer header and a small JSON body.

Every failure is a BrokerError with a stable code, so bad input never turns into a 5xx.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

from broker.callers.scopes import MAX_SCOPE, SCOPE_PATTERN
from broker.config import MIN_TOKEN_TTL, TTL_HARD_CAP
from broker.errors import (
    BodyTooLarge,
    ClientDisconnected,
    InvalidJson,
    InvalidRequest,
    Unauthorized,
    UnsupportedMediaType,
)

# RFC 6750 b64token; the scheme is case-insensitive.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
_MAX_BEARER = 512
_DECIMAL = re.compile(r"[0-9]{1,18}")

M = TypeVar("M", bound=BaseModel)


class StrictBody(BaseModel):
    """Request bodies: unknown fields and type coercion ("5" for 5) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SessionCreateBody(StrictBody):
    auth_token: str = Field(max_length=4096, description="The federation proof string.")


def _json_integer(value: object) -> object:
    # JSON Schema's "integer" includes 300.0; it does not include "300" or true.
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")  # noqa: TRY004 - pydantic wants ValueError
    return value


TtlSeconds = Annotated[
    int, Field(strict=False, ge=MIN_TOKEN_TTL, le=TTL_HARD_CAP), BeforeValidator(_json_integer)
]


class MintBody(StrictBody):
    # The pattern is documented, not validated here: check_scope answers scope_malformed.
    scope: str | None = Field(
        None,
        max_length=MAX_SCOPE,
        description="Requested scope (CI, dev).",
        json_schema_extra={"pattern": SCOPE_PATTERN},
    )
    ttl_seconds: TtlSeconds | None = Field(None, description="Requested token lifetime in seconds.")


GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type name
# GitLab and GitHub job tokens are OIDC ID tokens; RFC 8693 names that type too.
SUBJECT_TOKEN_TYPES = (JWT_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:id_token")
FORM = "application/x-www-form-urlencoded"


class ExchangeBody(StrictBody):
    """RFC 8693 token exchange; form-encoded as the RFC says, or the same fields as JSON."""

    grant_type: str = Field(max_length=128, json_schema_extra={"enum": [GRANT_TYPE]})
    subject_token: str = Field(description="The CI job's OIDC token (GitHub Actions, GitLab).")
    subject_token_type: str = Field(
        max_length=128, json_schema_extra={"enum": list(SUBJECT_TOKEN_TYPES)}
    )
    requested_token_type: str | None = Field(
        None, max_length=128, json_schema_extra={"enum": [JWT_TOKEN_TYPE]}
    )
    scope: str | None = Field(
        None,
        max_length=MAX_SCOPE,
        description="The scope the job token gives, or a prefix below it; default: that scope.",
        json_schema_extra={"pattern": SCOPE_PATTERN},
    )
    ttl_seconds: TtlSeconds | None = Field(None, description="Requested token lifetime.")


async def exchange_body(request: Request, max_bytes: int) -> ExchangeBody:
    """The exchange's fields from a form body (RFC 8693) or a JSON object."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (FORM, "application/json"):
        raise UnsupportedMediaType(
            f"send the body as 'Content-Type: {FORM}' (RFC 8693) or as JSON "
            f"(got {media or 'none'!r})"
        )
    if media != FORM:
        return await json_body(request, ExchangeBody, max_bytes, optional=False)
    raw = await read_body(request, max_bytes)
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not application/x-www-form-urlencoded") from None
    fields: dict[str, object] = {}
    for name, value in pairs:
        if name in fields:  # RFC 6749 3.2: a parameter must not be sent more than once
            raise InvalidRequest(f"parameter {name!r} is sent more than once")
        fields[name] = value
    ttl = fields.get("ttl_seconds")
    if isinstance(ttl, str) and _DECIMAL.fullmatch(ttl):
        fields["ttl_seconds"] = int(ttl)
    return _validated(ExchangeBody, fields)


def bearer(request: Request) -> str:
    value = request.headers.get("authorization", "")
    match = _BEARER.fullmatch(value) if len(value) <= _MAX_BEARER else None
    if match is None:
        raise Unauthorized()
    return match.group(1)


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DECIMAL.fullmatch(declared):  # str.isdigit() also takes "²" and 5000 digits
            raise InvalidRequest("Content-Length must be a decimal number of bytes")
        if int(declared) > max_bytes:
            raise BodyTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:  # chunked uploads declare no length
                raise BodyTooLarge(f"request body exceeds the {max_bytes}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody will read the answer, but the attempt is still recorded
        raise ClientDisconnected("the client closed the connection mid-body") from None
    return b"".join(chunks)


async def json_body(request: Request, model: type[M], max_bytes: int, *, optional: bool) -> M:
    """Parse and validate a JSON object body; an absent body is ``model()`` when optional.

    Absent means no bytes at all: whitespace alone is not JSON, so it is judged like any body.
    """
    raw = await read_body(request, max_bytes)
    if not raw:
        if optional:
            return model()
        raise InvalidRequest("a JSON body is required; see /openapi.json for its fields")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"send the body as 'Content-Type: application/json' (got {media or 'none'!r})"
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return _validated(model, data)


def _validated(model: type[M], data: dict[str, object]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "extra_forbidden":
            raise InvalidRequest(f"unknown field {where!r}; allowed: {_fields(model)}") from None
        if err["type"] == "missing":
            raise InvalidRequest(f"field {where!r} is required") from None
        raise InvalidRequest(f"field {where!r}: {err['msg']}") from None


def _fields(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields) or "none"
