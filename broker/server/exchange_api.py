"""``POST /v1/token-exchange``: a trusted CI job token in, a token for its claims' scope out.

The job token is the credential: no bearer. Verification is broker/callers/exchange.py with the
issuer's keys from broker/server/issuer_keys.py; minting, audit and rate limits are the mint
endpoint's. Every attempt that carries a token is recorded with the token's iss, sub, jti and the
claims its scope came from (refused: the claims its table looks at, marked unverified); refused attempts cost
the client address its failed-authentication budget, as a bad bearer does, which also bounds how
fast they can add audit rows. Requests with no token at all, 429s, and 503s while a provider's
keys cannot be fetched (any token naming it gets that far unverified, at no cost) are counted per
address and minute like the mint endpoint's junk bearers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.callers import exchange
from broker.callers.claims import MintRequest
from broker.callers.scopes import check_scope
from broker.config import Settings
from broker.config.trusted_issuers import TrustedIssuer
from broker.errors import (
    BrokerError,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    IssuerUnavailable,
    RateLimited,
    UnsupportedGrantType,
)
from broker.server.audit import AuditLog
from broker.server.issuer_keys import IssuerKeys
from broker.server.metrics import Metrics
from broker.server.mint import Minter, MintResult
from broker.server.ratelimit import CallerLimits
from broker.server.request_input import (
    GRANT_TYPE,
    JWT_TOKEN_TYPE,
    SUBJECT_TOKEN_TYPES,
    ExchangeBody,
    exchange_body,
)
from broker.store import AuditRecord

log = logging.getLogger("broker.exchange")
CALLER_KIND = "exchange"  # the audit's caller kind; the token's caller tag stays "ci"
UNTRUSTED = "untrusted"  # the metric's issuer label for any issuer not configured


class ExchangeApi:
    def __init__(
        self,
        settings: Settings,
        minter: Minter,
        audit: AuditLog,
        metrics: Metrics,
        limits: CallerLimits,
        keys: IssuerKeys,
        clock: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.minter = minter
        self.audit = audit
        self.metrics = metrics
        self.limits = limits
        self.keys = keys
        self.clock = clock

    async def token_exchange(self, request: Request) -> Response:
        attempt = _Attempt(client=request.client.host if request.client else "-")
        try:
            result = await self._exchange(request, attempt)
        except BrokerError as err:
            # Until the provider's signature verifies, the claims are anyone's words: counted
            # per address and minute, like junk bearers, never a durable row each.
            if not attempt.signed or isinstance(err, RateLimited | IssuerUnavailable):
                self.audit.count_refusal(attempt.client, err.code, attempt.started)
            else:
                self.audit.note(attempt.record(err.code))
            self.metrics.exchange_total.labels(attempt.issuer, err.code).inc()
            raise
        await self.audit.commit(attempt.record("ok", result))  # durable before it leaves
        self.metrics.exchange_total.labels(attempt.issuer, "ok").inc()
        log.info("exchange ok issuer=%s scope=%s jti=%s", attempt.issuer, result.scope, result.jti)
        return JSONResponse(
            {
                "access_token": result.jwt,
                "issued_token_type": JWT_TOKEN_TYPE,
                "token_type": "N_A",
                "expires_in": max(0, result.expiration - self.clock()),
                "scope": result.scope,
                "jwt": result.jwt,
                "expiration": result.expiration,
                "sub": result.sub,
                "jti": result.jti,
                "principal_tags": result.principal_tags,
            }
        )

    async def _exchange(self, request: Request, attempt: _Attempt) -> MintResult:
        body = await exchange_body(request, self.settings.max_body_bytes)
        _check_types(body)
        now = self.clock()
        try:
            attempt.token = exchange.read(body.subject_token)
            table = exchange.trusted_table(
                attempt.token, self.settings.trusted_issuers, self.settings.oidc_issuer
            )
            attempt.issuer, attempt.table = table.issuer_url, table
            alg, kid = exchange.signing_alg(attempt.token)
            key = await self.keys.key(table, kid)
            exchange.verify_signature(attempt.token, key, alg)
            attempt.signed = True
            grant = exchange.grant_for(attempt.token, table, now)
        except (InvalidGrant, InvalidRequest):
            self.limits.charge_failure(attempt.client)
            raise
        attempt.grant = grant
        # One bucket per job identity, as a credential has its own.
        self.limits.charge_caller(f"{table.issuer_url} {attempt.token.claim('sub')}")
        scope = _narrowed(grant.scope, body.scope)
        attempt.scope = scope
        req = MintRequest(
            kind="ci",
            caller_id=table.issuer_url,
            scope=scope,
            max_ttl=min(grant.max_ttl, self.settings.max_token_ttl_seconds),
        )
        return self.minter.mint(req, ttl=body.ttl_seconds, now=now)


def _check_types(body: ExchangeBody) -> None:
    if body.grant_type != GRANT_TYPE:
        raise UnsupportedGrantType(f"grant_type must be {GRANT_TYPE}")
    if body.subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest(f"subject_token_type must be {JWT_TOKEN_TYPE}")
    if body.requested_token_type not in (None, JWT_TOKEN_TYPE):
        raise InvalidRequest(f"requested_token_type can only be {JWT_TOKEN_TYPE}")


def _narrowed(granted: str, asked: str | None) -> str:
    """The asked scope if it is the granted one or below it; refused, never narrowed silently."""
    if asked is None or asked == granted:
        return granted
    if asked.startswith(granted + "/"):
        return check_scope(asked)
    raise InvalidScope(
        f"scope {asked[:120]!r} is not {granted!r} or below it; the job token gives only that"
    )


@dataclass
class _Attempt:
    client: str
    started: float = field(default_factory=time.time)
    token: exchange.SubjectToken | None = None
    issuer: str = UNTRUSTED
    table: TrustedIssuer | None = None
    signed: bool = False  # the token's signature verified with its provider's key
    grant: exchange.Grant | None = None
    scope: str | None = None

    def record(self, result: str, minted: MintResult | None = None) -> AuditRecord:
        assert self.token is not None  # noqa: S101 - recorded only once a token was read
        if self.grant is not None:
            subject = self.token.audit(self.grant.used, verified=True)
        else:
            looked = self.token.looked_at(self.table) if self.table else None
            subject = self.token.audit(looked, verified=False)
        return AuditRecord(
            at=self.started,
            caller_kind=CALLER_KIND,
            caller_id=self.issuer,
            sub=minted.sub if minted else None,
            scope=minted.scope if minted else self.scope,
            jti=minted.jti if minted else None,
            kid=minted.kid if minted else None,
            client=self.client,
            result=result,
            error=None if minted else result,
            exp=minted.expiration if minted else None,
            subject=subject,
        )
