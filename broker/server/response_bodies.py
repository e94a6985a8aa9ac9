"""The JSON bodies the API answers with, as models: the route table (routes.py) names them per
status and the OpenAPI document (openapi.py) publishes their schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

WALLET_PATTERN = r"^0x[0-9a-f]{40}$"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Closed):
    error: str = Field(description="Stable machine code (see the README error table).")
    message: str = Field(description="What went wrong and what to do about it.")
    allowance: str | None = Field(
        None,
        description="On a CI or personal credential's scope refusal: the scope pattern it may "
        "mint, so a client can fit its run scope (e.g. ci/<name>/pr-*/run-*).",
    )


class SessionCreated(_Closed):
    session: str = Field(description="Session bearer for /v1/mint-oidc-jwt.")
    wallet: str = Field(pattern=WALLET_PATTERN)


class Minted(_Closed):
    jwt: str
    wallet: str
    expiration: int = Field(description="Token exp, unix seconds.")
    scope: str
    sub: str
    jti: str
    principal_tags: dict[str, list[str]]


class Exchanged(_Closed):
    """RFC 8693's answer, plus the fields of the mint endpoint's."""

    access_token: str = Field(description="The broker's token (the same as `jwt`).")
    issued_token_type: str = Field(description="Always urn:ietf:params:oauth:token-type:jwt.")
    token_type: str = Field(description="N_A: not an OAuth access token (RFC 8693 2.2.1).")
    expires_in: int = Field(description="Seconds until the token expires.")
    scope: str = Field(description="The scope, built from the job token's claims.")
    jwt: str
    expiration: int = Field(description="Token exp, unix seconds.")
    sub: str
    jti: str
    principal_tags: dict[str, list[str]]


class Health(_Closed):
    status: str


class Ready(_Closed):
    status: str
    checks: dict[str, bool]


class Discovery(BaseModel):
    issuer: str
    jwks_uri: str
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")
    kty: str
    kid: str
    alg: str
    use: str


class Jwks(_Closed):
    keys: list[Jwk]
