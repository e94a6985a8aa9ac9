"""The two minting endpoints: who is calling, may they, record it durably, then answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.callers.claims import MintRequest
from broker.callers.gate import Caller, Gate
from broker.config import Settings
from broker.errors import BrokerError, RateLimited, Unauthorized
from broker.server.audit import AuditLog
from broker.server.metrics import Metrics
from broker.server.mint import Minter, MintResult
from broker.server.ratelimit import CallerLimits
from broker.server.request_input import MintBody, SessionCreateBody, bearer, json_body
from broker.store import AuditRecord

log = logging.getLogger("broker.mint")


class MintApi:
    def __init__(
        self,
        settings: Settings,
        gate: Gate,
        minter: Minter,
        audit: AuditLog,
        metrics: Metrics,
        limits: CallerLimits,
        clock: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.minter = minter
        self.audit = audit
        self.metrics = metrics
        self.limits = limits
        self.clock = clock

    async def session_create(self, request: Request) -> Response:
        assert self.gate.federation is not None  # noqa: S101 - mounted only when enabled
        client = request.client.host if request.client else "-"
        body = await json_body(
            request, SessionCreateBody, self.settings.max_body_bytes, optional=False
        )
        try:
            session = self.gate.federation.create_session(body.auth_token, self.clock())
        except Unauthorized:
            self.limits.charge_failure(client)
            raise
        return JSONResponse({"session": session.bearer, "wallet": session.wallet})

    async def mint(self, request: Request) -> Response:
        attempt = _Attempt(client=request.client.host if request.client else "-")
        try:
            result = await self._mint(request, attempt)
        except BrokerError as err:
            if _counted_not_recorded(attempt, err):
                self.audit.count_refusal(attempt.client, err.code, attempt.started)
            else:
                self.audit.note(attempt.record(err.code))
            self.metrics.mint_total.labels(attempt.kind, err.code).inc()
            raise
        # The token leaves only once its audit record is on disk.
        await self.audit.commit(attempt.record("ok", result))
        self.metrics.mint_total.labels(attempt.kind, "ok").inc()
        log.info(
            "mint ok caller=%s/%s scope=%s jti=%s",
            attempt.kind,
            attempt.caller_id,
            result.scope,
            result.jti,
        )
        return JSONResponse(
            {
                "jwt": result.jwt,
                "wallet": result.scope,
                "expiration": result.expiration,
                "scope": result.scope,
                "sub": result.sub,
                "jti": result.jti,
                "principal_tags": result.principal_tags,
            }
        )

    async def _mint(self, request: Request, attempt: _Attempt) -> MintResult:
        now = self.clock()
        try:
            attempt.caller = self.gate.authenticate(bearer(request), now)
        except Unauthorized:
            self.limits.charge_failure(attempt.client)
            raise
        # An authenticated caller spends its own bucket, never its address's; before the body,
        # so that refused bodies cost the caller like any other attempt.
        self.limits.charge_caller(_limit_key(attempt.caller, attempt.client))
        body = await json_body(request, MintBody, self.settings.max_body_bytes, optional=True)
        attempt.request = self.gate.authorize(attempt.caller, body.scope)
        return self.minter.mint(attempt.request, ttl=body.ttl_seconds, now=now)


def _counted_not_recorded(attempt: _Attempt, err: BrokerError) -> bool:
    """Refusals counted per address and minute instead of one durable row each (README: Audit).

    Before authentication there is nobody to hold to account; and a federation-proof session
    costs nothing to make, so its 429s are as free as junk bearers and are counted the same way.
    """
    if attempt.caller is None:
        return True
    return attempt.caller.kind == "fed" and isinstance(err, RateLimited)


def _limit_key(caller: Caller, client: str) -> str:
    # A federation caller picks its wallet by picking a proof string: limit its address instead.
    return caller.caller_id if caller.credential is not None else f"federation@{client}"


@dataclass
class _Attempt:
    client: str
    started: float = field(default_factory=time.time)
    caller: Caller | None = None
    request: MintRequest | None = None

    @property
    def kind(self) -> str:
        return self.caller.kind if self.caller else "unknown"

    @property
    def caller_id(self) -> str | None:
        return self.caller.caller_id if self.caller else None

    def record(self, result: str, minted: MintResult | None = None) -> AuditRecord:
        return AuditRecord(
            at=self.started,
            caller_kind=self.caller.kind if self.caller else None,
            caller_id=self.caller_id,
            sub=minted.sub if minted else None,
            scope=minted.scope if minted else self.request.scope if self.request else None,
            jti=minted.jti if minted else None,
            kid=minted.kid if minted else None,
            client=self.client,
            result=result,
            error=None if minted else result,
            exp=minted.expiration if minted else None,
        )
