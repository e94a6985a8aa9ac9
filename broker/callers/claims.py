"""What a caller's token says: its claims and tags for a scope, and the rules checked at issue time.

The minter (broker/server/mint.py) signs these claims; ``credentials add`` (broker/callers/
credentials.py) checks the smallest token a new credential could get before issuing it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from joserfc import jwt
from joserfc.jwk import ECKey

from broker.config import MIN_TOKEN_TTL, TTL_HARD_CAP, Settings
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


def token_claims(s: Settings, req: MintRequest, ttl: int, now: int, jti: str) -> dict[str, Any]:
    """The claims of one token (header and signature aside)."""
    # The scope under every configured scope tag: each resource's policies read their own.
    tags = {tag: [req.scope] for tag in s.scope_tags} | {s.caller_tag: [req.kind]}
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
        TAGS_CLAIM: {"principal_tags": tags, "transitive_tag_keys": s.scope_tags},
    }
    if s.resources:
        # STS enforces the pin before the trust policy: even a production role that wrongly
        # trusted this issuer cannot be assumed with these tokens.
        claims[ROLES_CLAIM] = s.role_arns
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
    claims = token_claims(settings, req, MIN_TOKEN_TTL, now, "j" * _JTI_LENGTH)
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
