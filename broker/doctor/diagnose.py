"""``doctor``: would AWS STS accept this issuer and this token, and if not, what would it say?

The rules are :mod:`broker.sts.token_rules` and :mod:`broker.sts.issuer_rules` (their catalogue is
:mod:`broker.sts.catalogue`), the code the minter runs;
this module adds only what STS does around them: parsing the token, verifying its signature
with the JWK STS would pick, and ranking every finding in STS's evaluation order to predict its
one answer. Fetching the issuer's documents as STS does is :mod:`broker.doctor.issuer_fetch`, TLS
inspection :mod:`broker.doctor.tls_check`, trust-policy evaluation :mod:`broker.sts.trust_policy`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from broker.doctor.issuer_fetch import FETCH_BUDGET, fetch_issuer, tls_targets
from broker.net.bounded_fetch import verify_context
from broker.net.fetch_guard import Guard, Resolver
from broker.sts import token_rules as sts_rules
from broker.sts import trust_policy
from broker.sts.catalogue import (
    EC_ALGS,
    NOT_VALIDATED,
    RSA_ALGS,
    RULES,
    Finding,
    Severity,
    reject,
    show,
)
from broker.sts.issuer_rules import check_issuer_url, check_jwks
from broker.sts.jwt_text import Token, parse_token

NOT_A_JWT = "The ID Token provided is not a valid JWT"

# Doctor's own rules, each placed right after the rule STS checks just before it.
DOCTOR_RULES: Mapping[str, tuple[str, str]] = {
    "token.jwt": ("token.length", "the token is three base64url parts, header and claims JSON"),
    "fetch.discovery": ("discovery.issuer_url", "discovery answers 200 JSON over https in time"),
    "fetch.jwks": ("discovery.jwks_uri", "jwks_uri answers 200 JSON over https in time"),
    "fetch.time": ("fetch.jwks", "each fetch takes well under STS's 5 s budget"),
    "tls.handshake": ("fetch.time", "the TLS endpoint completes a handshake"),
    "tls.version": ("tls.handshake", "the TLS endpoint offers TLS 1.2"),
    "tls.chain": ("tls.version", "the served chain is leaf first, each cert issued by the next"),
    "tls.expiry": ("tls.chain", "the certificate is valid for at least 21 more days"),
    "tls.trust": ("tls.expiry", "the chain verifies against public CAs alone, as STS requires"),
    "claims.duplicate": ("claims.azp", "house: each member once (a conflicting aud: STS errs)"),
    "signature": ("kid.key_type", "the signature verifies with the JWK STS picks"),
    **{rule: ("roles.target", text) for rule, text in trust_policy.TRUST_RULES.items()},
}


def _evaluation_order() -> dict[str, int]:
    order = list(RULES)
    for rule, (after, _) in DOCTOR_RULES.items():
        order.insert(order.index(after) + 1, rule)
    return {rule: i for i, rule in enumerate(order)}


_RANK = _evaluation_order()


def rank(finding: Finding) -> int:
    """Position of the finding's rule in STS's evaluation order."""
    return _RANK[finding.rule]


@dataclass(frozen=True, kw_only=True)
class DoctorReport:
    """What ``doctor`` prints: STS's predicted answer, every finding, and facts worth knowing."""

    outcome: str  # "accept", or the error code STS would answer with
    message: str  # STS's message, or what was accepted
    findings: list[Finding]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.outcome == "accept"

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "findings": [asdict(f) for f in self.findings],
            "info": self.info,
        }


def report(findings: Iterable[Finding], info: dict[str, Any], accepted: str) -> DoctorReport:
    """Sort findings into STS's order; the first REJECT is STS's answer, none means ``accepted``."""
    ordered = sorted(dict.fromkeys(findings), key=rank)  # a rule two checks share counts once
    first = next((f for f in ordered if f.severity is Severity.REJECT), None)
    if first is None:
        return DoctorReport(outcome="accept", message=accepted, findings=ordered, info=info)
    code, message = first.sts_code or "InvalidIdentityToken", first.sts_message or first.detail
    return DoctorReport(outcome=code, message=message, findings=ordered, info=info)


# -- the broker's own documents --------------------------------------------------------------


# -- the token -------------------------------------------------------------------------------


def _check_duplicates(token: Token, audiences: Collection[str]) -> list[Finding]:
    out: list[Finding] = []
    for name, values in token.duplicates.items():
        detail = f"{name} appears {len(values)} times; STS keeps the last, {show(values[-1])}"
        fix = "Emit each member once (canonical JSON)."
        # Observed: a conflicting aud whose last value is unregistered gets the generic error.
        if name == "aud" and values[-1] not in audiences and any(v != values[-1] for v in values):
            out.append(
                reject("claims.duplicate", detail, fix, NOT_VALIDATED, "InvalidIdentityToken")
            )
        else:
            out.append(
                Finding(rule="claims.duplicate", severity=Severity.HOUSE, detail=detail, fix=fix)
            )
    return out


def key_type(alg: Any) -> str | None:
    return "RSA" if alg in RSA_ALGS else "EC" if alg in EC_ALGS else None


_PUBLIC = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}


def _check_signature(token: Token, jwks: Mapping[str, Any]) -> list[Finding]:
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry
    from joserfc.jws import JWSRegistry

    alg = token.header.get("alg")
    key = sts_rules.pick_key(token.header, jwks)
    kty = key_type(alg)
    if key is None or kty is None or key.get("kty") != kty:
        return []  # header.alg, kid.published or kid.key_type already explain the failure
    try:
        public = JWKRegistry.import_key({m: key[m] for m in _PUBLIC[kty] if m in key})
        valid = JWSRegistry.algorithms[str(alg)].verify(
            token.signing_input, token.signature, public
        )
    except (JoseError, ValueError, TypeError):
        return []  # an unusable JWK: jwks.key_material says why
    if valid:
        return []
    detail = f"the signature does not verify with the published key {key['kid']!r}"
    fix = "Sign with the private key of the published kid, and do not alter the token."
    return [reject("signature", detail, fix, NOT_VALIDATED, "InvalidIdentityToken")]


def examine_token(
    text: str,
    *,
    issuer: str | None,
    audiences: Collection[str],
    now: int,
    jwks: Mapping[str, Any] | None,
    role_arns: Collection[str] = (),
) -> tuple[Token | None, list[Finding]]:
    """Every finding for this token (offline): rules, JWKS as this token sees it, signature.

    ``issuer`` is the registered provider URL (default: the token's own ``iss``); ``jwks`` the
    issuer's published keys, or None when fetching them failed (a fetch finding says so).
    """
    token = parse_token(text)
    if token is None:
        detail = "the token is not three base64url parts with a JSON header and claims"
        fix = "Pass the compact JWT exactly as the broker returned it."
        # STS checks the length first: an over-long token is a ValidationError, parsable or not.
        too_long = sts_rules.check_token_length(len(text))
        return None, [
            *too_long,
            reject("token.jwt", detail, fix, NOT_A_JWT, "InvalidIdentityToken"),
        ]
    iss = token.claims.get("iss")
    provider = issuer if issuer is not None else iss if isinstance(iss, str) else ""
    out = sts_rules.check_token(
        token.header,
        token.claims,
        token_length=len(text),
        issuer=provider,
        audiences=audiences,
        now=now,
    )
    out += check_issuer_url(provider)  # the provider URL STS looks up by iss
    out += _check_duplicates(token, audiences)
    for role_arn in role_arns:  # each role the token is meant for must be in its pin
        out += sts_rules.check_roles_claim(token.claims, role_arn=role_arn)
    if jwks is not None:
        out += check_jwks(jwks, token_kty=key_type(token.header.get("alg")))
        out += sts_rules.check_token_kid(token.header, jwks)
        out += _check_signature(token, jwks)
    return token, out


# -- the whole preflight ---------------------------------------------------------------------


def diagnose(
    *,
    issuer: str | None,
    token: str | None,
    jwks: Mapping[str, Any] | None = None,
    audiences: Collection[str] = ("sts.amazonaws.com",),
    role_arns: Collection[str] = (),
    policy: Any = None,
    ca_file: Path | None = None,
    now: int,
    budget: float = FETCH_BUDGET,
    resolver: Resolver | None = None,
) -> DoctorReport:
    """Everything ``test-broker doctor`` checks; network only to fetch the issuer's documents.

    With ``jwks`` given nothing is fetched. The issuer defaults to the token's ``iss``. ``policy``
    (a parsed trust policy) needs a token; it raises ``errors.TrustPolicyInvalid`` if malformed.
    Every connection goes only where STS could reach (:mod:`broker.net.fetch_guard`); ``resolver``
    replaces ``getaddrinfo`` for tests.
    """
    from broker.doctor import tls_check

    parsed = parse_token(token) if token is not None else None
    iss = parsed.claims.get("iss") if parsed is not None else None
    provider = issuer if issuer is not None else iss if isinstance(iss, str) else None
    findings: list[Finding] = []
    info: dict[str, Any] = {}
    if jwks is None and provider is not None:
        guard = Guard.for_issuer(provider, resolver)
        docs = fetch_issuer(provider, verify=verify_context(ca_file), budget=budget, guard=guard)
        findings += docs.findings
        info.update(docs.info)
        jwks = docs.jwks
        endpoints = []
        for host, port in tls_targets(provider, docs.discovery):
            endpoint, tls_findings = tls_check.inspect(
                host, port, now=now, ca_file=ca_file, timeout=budget, guard=guard
            )
            endpoints.append(endpoint.describe())
            findings += tls_findings
            # --ca-file makes the fetch succeed where STS's would fail: say so.
            if (
                ca_file is not None
                and tls_check.trusted(host, port, timeout=budget, guard=guard) is False
            ):
                findings += tls_check.private_ca(host, port)
        info["tls"] = endpoints
    if token is None:  # judge the JWKS for tokens of every key type
        findings += check_jwks(jwks) if jwks is not None else []
        return report(findings, info, accepted="STS can fetch and use this issuer's keys")
    _, token_findings = examine_token(
        token, issuer=provider, audiences=audiences, now=now, jwks=jwks, role_arns=role_arns
    )
    findings += token_findings
    if policy is not None and parsed is not None and provider is not None:
        host_path = provider.split("://", 1)[-1]
        findings += trust_policy.evaluate(policy, parsed.claims, host_path=host_path)
    return report(findings, info, accepted="STS would accept this token")
