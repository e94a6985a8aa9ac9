"""The catalogue of what AWS STS AssumeRoleWithWebIdentity checks (``docs/sts-rules.md``).

Rule ids (:data:`RULES`, in STS's own evaluation order), what STS answers for each (code and
verbatim message), and the :class:`Finding` every check returns. The checks themselves live in
:mod:`broker.sts.token_rules` (token, kid, roles claim) and :mod:`broker.sts.issuer_rules` (discovery,
JWKS); :mod:`broker.doctor` adds its own fetch and TLS findings with :func:`reject`.

Each rule models what STS actually does, observed behaviour included (docs/sts-rules.md): ``REJECT`` means real STS
refuses it. Where the broker is stricter than STS the finding is ``HOUSE``: the minter refuses
both (:func:`blocking`); ``doctor`` predicts STS's answer with :func:`sts_outcome`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.sts.tags import MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS


class Severity(StrEnum):
    REJECT = "reject"  # STS would refuse this (sts_code/sts_message say how)
    HOUSE = "house"  # STS would accept, but the broker never emits it (stricter house rule)
    WARN = "warn"  # advisory only (e.g. JWKS near the key cap)


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    rule: str  # stable dotted id, a key of RULES
    severity: Severity
    detail: str  # what is wrong in this input, naming the offending claim or value
    fix: str  # one sentence a person can act on
    sts_code: str | None = None  # REJECT only: the error code STS answers with
    sts_message: str | None = None  # REJECT only: STS's message, values filled in


RSA_ALGS = frozenset({"RS256", "RS384", "RS512"})
EC_ALGS = frozenset({"ES256", "ES384", "ES512"})
ALLOWED_ALGS = RSA_ALGS | EC_ALGS
EC_ALG_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}  # RFC 7518 3.4
ROLES_CLAIM = "https://aws.amazon.com/roles"
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"  # the trust policy must allow this action ...
TAG_SESSION = "sts:TagSession"  # ... and this one whenever the token carries session tags
LEEWAY = 300  # STS's clock skew allowance, both ways (exp, iat, nbf)
MAX_LIFETIME = 3600  # exp - iat above about an hour risks "Token too old"
MAX_KEYS_PER_TYPE = 100  # observed: more RSA keys than this breaks RSA tokens (EC likewise)
MAX_TOKEN_LENGTH = 20_000

RULES: Mapping[str, str] = {  # in STS's evaluation order: sts_outcome relies on it
    "token.length": "the token is at most 20 000 characters (ValidationError before parsing)",
    "header.crit": "the JOSE header has no crit member",
    "header.alg": "alg is RS256/384/512 or ES256/384/512",
    "header.kid": "house: the header carries a non-empty string kid",
    "header.typ": 'house: typ is "JWT"',
    "header.members": "house: the header has only alg, kid and typ",
    "claims.required": "iss, sub, aud, iat and exp are present",
    "claims.aud.empty": "aud is not an empty list",
    "claims.iat.integer": "iat is an integer (house: not a numeric string)",
    "claims.exp.integer": "exp is an integer (house: not a numeric string)",
    "claims.nbf.integer": "nbf, if present, is an integer (house: not a numeric string)",
    "claims.nbf.present": "house: nbf is present",
    "claims.jti.present": "house: jti is a non-empty string",
    "claims.iss": "iss equals the registered provider URL byte for byte",
    "discovery.issuer_url": "issuer is https, lowercase host, no port/query/fragment/trailing /",
    "discovery.issuer": "the discovery issuer equals the provider URL byte for byte",
    "discovery.jwks_uri": "jwks_uri is an absolute https URL",
    "discovery.response_types": 'house: response_types_supported contains "id_token"',
    "discovery.subject_types": 'house: subject_types_supported contains "public"',
    "discovery.signing_algs": "house: id_token_signing_alg_values_supported lists only RS*/ES*",
    "jwks.keys": "the JWKS has a non-empty keys list of objects",
    "jwks.key_count": f"at most {MAX_KEYS_PER_TYPE} keys per key type (warn within 10 of the cap)",
    "jwks.kty": "every key is RSA or EC",
    "jwks.kid": "every key has a non-empty string kid",
    "jwks.kid_unique": "house: kids are unique (STS lets the last duplicate win)",
    "jwks.use": 'use is absent or "sig"',
    "jwks.key_ops": "no key has a key_ops member",
    "jwks.private_material": "no key carries private members (d, p, q, dp, dq, qi, oth, k)",
    "jwks.alg": "house: a key's alg, if present, is an allowed alg of its kty",
    "jwks.key_material": "RSA keys have valid n/e, EC keys valid x/y on their curve",
    "jwks.rsa_size": "RSA moduli are at least 2048 bits",
    "jwks.ec_curve": "EC keys are P-256/384/521 (house: crv matches the key's alg)",
    "jwks.x5c": "x5c, if present, holds a certificate for the same public key",
    "kid.published": "the token's kid is in the JWKS (no kid: exactly one key, with a kid)",
    "kid.key_type": "the JWK STS picks (last of duplicates) has the kty/curve the header alg needs",
    "claims.aud.multiple": "more than one audience requires azp",
    "claims.azp": "azp, if present, is a registered client id (house: no azp)",
    "claims.aud.registered": "aud is a registered client id",
    "claims.aud.list": "house: aud is a string, not a one-element list",
    "claims.exp.expired": f"exp is at most {LEEWAY} s in the past",
    "claims.iat.future": f"iat is at most {LEEWAY} s in the future",
    "claims.nbf.future": f"nbf is at most {LEEWAY} s in the future",
    "claims.lifetime": "house: exp - iat is at most the maximum lifetime",
    "claims.exp.after_iat": "house: exp is after iat",
    "claims.sub.null": "sub is not null",
    "claims.sub.string": "house: sub is a non-empty string",
    "tags.present": "house: the nested tags claim is present",
    "tags.flattened": "house: no flattened tags/principal_tags/<key> claims",
    "tags.format": "principal_tags is an object of one-element lists of one string",
    "tags.count": f"at most {MAX_TAGS} principal tags",
    "tags.key_length": f"tag keys are 1-{MAX_TAG_KEY} characters",
    "tags.value_length": f"tag values are 0-{MAX_TAG_VALUE} characters",
    "tags.charset": r"tag keys and values use only [\p{L}\p{Z}\p{N}_.:/=+\-@]",
    "tags.aws_prefix": "no tag key or value starts with aws: (any case)",
    "tags.duplicate_keys": "tag keys are unique ignoring case",
    "tags.transitive": "transitive_tag_keys is a list of strings among the tag keys",
    "roles.format": "the roles claim is an array or a string",
    "roles.valid": "the roles claim holds at least one valid role ARN",
    "roles.target": "the requested role ARN is listed in the roles claim",
}
_RANK = {rule: i for i, rule in enumerate(RULES)}

RETRIEVE_KEY = (  # the double space is AWS's own
    "Couldn't retrieve verification key from your identity provider,  please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)
# The sources quote only this prefix ("could not be validated…"); we stop at it.
NOT_VALIDATED = "The web identity token provided could not be validated."
_TAG_FORMAT = "principal_tags passed in claim is not in correct format."
_NO_PROVIDER = "No OpenIDConnect provider found in your account for {iss}"
# What STS answers per REJECT rule, verbatim from the sources docs/sts-rules.md names unless marked
# "ours": they record no wording for those, nor the error code (InvalidIdentityToken unless CODES
# says).
MESSAGES = {
    "token.length": "1 validation error detected: Value at 'webIdentityToken' failed to satisfy "
    "constraint: Member must have length less than or equal to 20000",  # AWS's usual wording
    "header.crit": "The ID Token provided is not a valid JWT",
    "header.alg": NOT_VALIDATED,  # ours: STS cannot verify the signature
    "claims.required": "Missing a required claim: {name}",
    "claims.aud.empty": "Claim is not allowed to be empty: aud",
    "claims.iat.integer": "Invalid timestamp in token claims.",
    "claims.exp.integer": "Invalid timestamp in token claims.",
    "claims.nbf.integer": "Invalid timestamp in token claims.",
    "claims.iss": _NO_PROVIDER,
    "discovery.issuer_url": _NO_PROVIDER,
    "discovery.issuer": _NO_PROVIDER,
    "discovery.jwks_uri": RETRIEVE_KEY,
    "jwks.keys": RETRIEVE_KEY,
    "jwks.key_count": RETRIEVE_KEY,  # observed: breaks tokens of that key type only
    "jwks.kty": RETRIEVE_KEY,  # ours: unobserved whether STS skips or fails on such a key
    "jwks.kid": RETRIEVE_KEY,
    "jwks.use": RETRIEVE_KEY,
    "jwks.key_ops": NOT_VALIDATED,
    "jwks.private_material": RETRIEVE_KEY,  # ours: unobserved; fatal for the issuer anyway
    "jwks.key_material": RETRIEVE_KEY,
    "jwks.rsa_size": RETRIEVE_KEY,  # ours: documented limit, unrecorded wording
    "jwks.ec_curve": RETRIEVE_KEY,  # ours
    "jwks.x5c": RETRIEVE_KEY,
    "kid.published": RETRIEVE_KEY,
    "kid.key_type": NOT_VALIDATED,  # as for a broken signature
    "claims.aud.multiple": "Token audience contains more than one audience while authorized "
    "party is not present",
    "claims.azp": NOT_VALIDATED,
    "claims.aud.registered": "Incorrect token audience",
    "claims.exp.expired": "Token expired: current date/time {limit} must be before the "
    "expiration date/time {exp}",
    "claims.iat.future": "Token issued in the future: {iat}",
    "claims.nbf.future": "Token not yet valid: current date/time {limit} must be after or equal "
    "to the not-before date/time {nbf}",
    "claims.sub.null": "Unknown error validating third-party token",
    "tags.format": _TAG_FORMAT,
    "tags.count": f"Too many session tags: {{count}} (at most {MAX_TAGS})",  # ours from here
    "tags.key_length": f"Session tag key must be 1-{MAX_TAG_KEY} characters: {{text}}",
    "tags.value_length": f"Session tag value must be at most {MAX_TAG_VALUE} characters: {{text}}",
    "tags.charset": "Session tag {what} contains invalid characters: {text}",
    "tags.aws_prefix": "Session tag {what} cannot start with aws: {text}",
    "tags.duplicate_keys": "Duplicate session tag key (keys ignore case): {text}",
    "tags.transitive": "transitive_tag_keys passed in claim is not in correct format.",
    "roles.format": "The roles claim is not in a supported format",
    "roles.valid": "The roles claim contains no valid role ARNs",
    "roles.target": "The target role ARN is not present in the roles claim of the identity token",
}
CODES = {
    "token.length": "ValidationError",
    "claims.exp.expired": "ExpiredTokenException",
    "claims.sub.null": "InternalFailure",  # SDKs retry it
}


def reject(rule: str, detail: str, fix: str, message: str, code: str) -> Finding:
    """A finding STS would refuse with ``code`` and ``message`` (also doctor's own rules)."""
    return Finding(
        rule=rule,
        severity=Severity.REJECT,
        detail=detail,
        fix=fix,
        sts_code=code,
        sts_message=message,
    )


def warn(rule: str, detail: str, fix: str) -> Finding:
    """An advisory finding: it never changes STS's answer."""
    return Finding(rule=rule, severity=Severity.WARN, detail=detail, fix=fix)


def add_reject(out: list[Finding], rule: str, detail: str, fix: str, **values: object) -> None:
    message = MESSAGES[rule].format(**values)
    out.append(reject(rule, detail, fix, message, CODES.get(rule, "InvalidIdentityToken")))


def add_house(out: list[Finding], rule: str, detail: str, fix: str) -> None:
    out.append(Finding(rule=rule, severity=Severity.HOUSE, detail=detail, fix=fix))


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """What the minter refuses on: everything STS would refuse, plus the house rules."""
    return [f for f in findings if f.severity is not Severity.WARN]


def sts_outcome(findings: Iterable[Finding]) -> Finding | None:
    """The error STS would answer with (the first REJECT in its evaluation order); None = accept.

    The order (that of RULES) is our best guess from STS's messages: token length, JOSE header,
    required claims and timestamp format, issuer, discovery/JWKS/kid, (signature), aud/azp, the
    time window, null sub, tags, roles claim.
    """
    rejects = [f for f in findings if f.severity is Severity.REJECT]
    return min(rejects, key=lambda f: _RANK[f.rule], default=None)
