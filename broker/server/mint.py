"""Build a token's claims and tags for a caller and scope, check every STS rule, sign it."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from joserfc import jwt
from joserfc.jwk import ECKey

from broker.config import TTL_HARD_CAP, Settings
from broker.errors import StsRuleViolation, TtlTooLong
from broker.server.keyring import KeyRing
from broker.sts import catalogue as sts_catalogue
from broker.sts import token_rules as sts_rules
from broker.sts.catalogue import ROLES_CLAIM, Finding
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM, TAGS_CLAIM

CallerKind = Literal["fed", "ci", "dev"]
# iat and nbf are backdated by this much, so a verifier whose clock lags ours by up to it still
# accepts a fresh token (PyJWT checks both with no leeway). exp stays mint time + the asked TTL.
VERIFIER_CLOCK_LAG_SECONDS = 30


def backdate(ttl: int) -> int:
    """How far iat and nbf go back: the full lag, unless exp - iat would pass STS's 1 h."""
    return max(0, min(VERIFIER_CLOCK_LAG_SECONDS, TTL_HARD_CAP - ttl))


@dataclass(frozen=True, kw_only=True)
class MintRequest:
    """What one caller may have: who it is, the (already allowed) scope, its TTL ceiling."""

    kind: CallerKind
    caller_id: str
    scope: str
    max_ttl: int
    extra_tags: Mapping[str, str] = field(default_factory=dict)


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


def token_claims(s: Settings, req: MintRequest, ttl: int, now: int, jti: str) -> dict[str, Any]:
    """The claims of one token (header and signature aside)."""
    tags = {s.scope_tag: [req.scope], s.caller_tag: [req.kind]}
    # An extra tag never replaces the broker's own (a case variant fails tags.duplicate_keys).
    tags.update({k: [v] for k, v in req.extra_tags.items() if k not in tags})
    issued = now - backdate(ttl)
    claims = {
        "iss": s.oidc_issuer,
        "sub": s.sub_template.replace("{scope}", req.scope),
        "aud": s.audience,
        "iat": issued,
        "nbf": issued,
        "exp": now + ttl,
        "jti": jti,
        # Upstream scripts decode the scope (their wallet) from this top-level claim.
        s.scope_tag: req.scope,
        TAGS_CLAIM: {"principal_tags": tags, "transitive_tag_keys": [s.scope_tag]},
    }
    if s.test_role_arn:
        # STS enforces the pin before the trust policy: even a production role that wrongly
        # trusted this issuer cannot be assumed with these tokens.
        claims[ROLES_CLAIM] = [s.test_role_arn]
    if s.seaweedfs_tags_claim:
        claims[SEAWEEDFS_TAGS_CLAIM] = tags
    return claims


_JTI_LENGTH = 17  # Minter: 16 characters of prefix and at least one hex digit


def issue_findings(settings: Settings, req: MintRequest, now: int) -> list[Finding]:
    """The STS rules that even the smallest token for ``req``'s caller would break.

    Checked when a credential is issued, so one that every mint would refuse (60 tags, say) is
    refused then, not at each mint. The smallest token: the shortest TTL and ``req.scope`` (the
    caller's home, which every scope it may have contains). Signed with a throwaway ES256 key; the
    length is corrected to the configured algorithm's signature.
    """
    claims = token_claims(settings, req, 60, now, "j" * _JTI_LENGTH)
    header = {"alg": settings.key_algorithm, "kid": "k" * 43, "typ": "JWT"}
    throwaway = ECKey.generate_key("P-256", private=True)
    token = jwt.encode(header | {"alg": "ES256"}, claims, throwaway, algorithms=["ES256"])
    # A compact JWS signature: ES256 is r || s (64 bytes), RS256 as long as the modulus.
    signature = 64 if settings.key_algorithm == "ES256" else settings.rsa_key_bits // 8
    length = token.rindex(".") + 1 + math.ceil(signature * 4 / 3)
    findings = sts_rules.check_token(
        header,
        claims,
        token_length=length,
        issuer=settings.oidc_issuer,
        audiences=(settings.audience,),
        now=now,
    )
    return sts_catalogue.blocking(findings)


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
        if self._settings.test_role_arn:
            findings += sts_rules.check_roles_claim(claims, role_arn=self._settings.test_role_arn)
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
