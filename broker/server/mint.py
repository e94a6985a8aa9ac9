"""Sign a caller's claims (broker/callers/claims.py) with the active key, after every STS rule."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from joserfc import jwt

from broker.callers.claims import VERIFIER_CLOCK_LAG_SECONDS, MintRequest, token_claims
from broker.config import TTL_HARD_CAP, Settings
from broker.errors import StsRuleViolation, TtlTooLong
from broker.server.keyring import KeyRing
from broker.sts import catalogue as sts_catalogue
from broker.sts import token_rules as sts_rules
from broker.sts.tags import TAGS_CLAIM


@dataclass(frozen=True, kw_only=True)
class MintResult:
    jwt: str
    scope: str
    sub: str
    jti: str
    kid: str
    issued_at: int
    expiration: int
    principal_tags: dict[str, list[str]]


class Minter:
    def __init__(self, settings: Settings, ring: KeyRing) -> None:
        self._settings = settings
        self._ring = ring
        self._audiences = (settings.audience,)
        # exp - iat is the TTL plus the backdating, and never above STS's 1 h ("Token too old").
        self._max_lifetime = min(
            settings.max_token_ttl_seconds + VERIFIER_CLOCK_LAG_SECONDS, TTL_HARD_CAP
        )
        # jti must be unique, not secret: 96 random bits per process plus a counter.
        self._jti_prefix = secrets.token_urlsafe(12)
        self._jti_counter = itertools.count(1)

    def mint(self, req: MintRequest, *, ttl: int | None, now: int) -> MintResult:
        if ttl is None:  # the default never exceeds what this caller may have
            ttl = min(self._settings.token_ttl_seconds, req.max_ttl)
        if ttl > req.max_ttl:
            raise TtlTooLong(
                f"ttl_seconds {ttl} is above the {req.max_ttl} s this caller may have; ask for less"
            )
        snapshot = self._ring.snapshot
        active = snapshot.active
        header = {"alg": active.alg, "kid": active.kid, "typ": "JWT"}
        jti = f"{self._jti_prefix}{next(self._jti_counter):x}"
        claims = token_claims(self._settings, req, ttl, now, jti)
        token = jwt.encode(header, claims, snapshot.signing_key, algorithms=[active.alg])
        self._ring.note_signed(active.kid, claims["exp"])  # keeps the key published (keyring.py)
        findings = sts_rules.check_token(
            header,
            claims,
            token_length=len(token),
            issuer=self._settings.oidc_issuer,
            audiences=self._audiences,
            now=now,
            max_lifetime=self._max_lifetime,
        )
        for role_arn in self._settings.role_arns:
            findings += sts_rules.check_roles_claim(claims, role_arn=role_arn)
        findings = sts_catalogue.blocking(findings)
        if findings:
            first = findings[0]
            raise StsRuleViolation(
                f"refusing to mint a token AWS STS would not accept: rule {first.rule}: "
                f"{first.detail} ({first.fix})"
            )
        tags = claims[TAGS_CLAIM]["principal_tags"]
        return MintResult(
            jwt=token,
            scope=req.scope,
            sub=claims["sub"],
            jti=claims["jti"],
            kid=active.kid,
            issued_at=now,
            expiration=claims["exp"],
            principal_tags=tags,
        )
