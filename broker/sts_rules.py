"""The one implementation of what AWS STS AssumeRoleWithWebIdentity checks (``aws-sts-rules.md``).

Pure functions from parsed inputs to :class:`Finding` lists; no I/O, no signature verification.
Rule families (ids in :data:`RULES`, listed in STS's own evaluation order):

- ``token.*``  the request: token length (a ``ValidationError`` before any JWT parsing)
- ``header.*``  the JOSE header: ``crit``, ``alg``; house shape ``{alg, kid, typ: "JWT"}``
- ``claims.*``  required claims, timestamps, ``iss``, ``aud``/``azp``, the ±300 s window, ``sub``
- ``discovery.*``, ``jwks.*``  the issuer side, in :mod:`broker.sts_rules_issuer`
- ``kid.*``  is the token's ``kid`` published, and can the JWK STS picks verify it
- ``tags.*``  ``https://aws.amazon.com/tags`` (nested form; the flattened form for ``doctor``)
- ``roles.*``  ``https://aws.amazon.com/roles`` role pinning

Each rule models what STS actually does (the "Fine points observed"): ``REJECT`` means real STS
refuses it. Where the broker is stricter than STS the finding is ``HOUSE``: the minter refuses
both (:func:`blocking`); ``doctor`` predicts STS's answer with :func:`sts_outcome`. Duplicate JSON
members are the caller's parser's business: STS keeps the last one, as :mod:`json` does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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
TAGS_CLAIM = "https://aws.amazon.com/tags"
ROLES_CLAIM = "https://aws.amazon.com/roles"
LEEWAY = 300
MAX_TOKEN_LENGTH = 20_000
MAX_TAGS = 50

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
    "jwks.key_count": "at most 100 keys per key type (warn within 10 of the cap)",
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
    "kid.key_type": "the JWK STS picks (last of duplicates) has the kty the header alg needs",
    "claims.aud.multiple": "more than one audience requires azp",
    "claims.azp": "azp, if present, is a registered client id (house: no azp)",
    "claims.aud.registered": "aud is a registered client id",
    "claims.aud.list": "house: aud is a string, not a one-element list",
    "claims.exp.expired": "exp is at most 300 s in the past",
    "claims.iat.future": "iat is at most 300 s in the future",
    "claims.nbf.future": "nbf is at most 300 s in the future",
    "claims.lifetime": "house: exp - iat is at most the maximum lifetime",
    "claims.exp.after_iat": "house: exp is after iat",
    "claims.sub.null": "sub is not null",
    "claims.sub.string": "house: sub is a non-empty string",
    "tags.present": "house: the nested tags claim is present",
    "tags.flattened": "house: no flattened tags/principal_tags/<key> claims",
    "tags.format": "principal_tags is an object of one-element lists of one string",
    "tags.count": "at most 50 principal tags",
    "tags.key_length": "tag keys are 1-128 characters",
    "tags.value_length": "tag values are 0-256 characters",
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
# aws-sts-rules.md quotes only this prefix ("could not be validated…"); we stop at it.
NOT_VALIDATED = "The web identity token provided could not be validated."
_TAG_FORMAT = "principal_tags passed in claim is not in correct format."
_NO_PROVIDER = "No OpenIDConnect provider found in your account for {iss}"
# What STS answers per REJECT rule, verbatim from aws-sts-rules.md unless marked "ours": the file
# records no wording for those, nor the error code (InvalidIdentityToken unless _CODES says).
_MESSAGES = {
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
    "tags.count": "Too many session tags: {count} (at most 50)",  # ours, from here on
    "tags.key_length": "Session tag key must be 1-128 characters: {text}",
    "tags.value_length": "Session tag value must be at most 256 characters: {text}",
    "tags.charset": "Session tag {what} contains invalid characters: {text}",
    "tags.aws_prefix": "Session tag {what} cannot start with aws: {text}",
    "tags.duplicate_keys": "Duplicate session tag key (keys ignore case): {text}",
    "tags.transitive": "transitive_tag_keys passed in claim is not in correct format.",
    "roles.format": "The roles claim is not in a supported format",
    "roles.valid": "The roles claim contains no valid role ARNs",
    "roles.target": "The target role ARN is not present in the roles claim of the identity token",
}
_CODES = {
    "token.length": "ValidationError",
    "claims.exp.expired": "ExpiredTokenException",
    "claims.sub.null": "InternalFailure",  # SDKs retry it
}

_HEADER_MEMBERS = frozenset({"alg", "kid", "typ", "crit"})  # crit has its own rule
_REQUIRED = ("iss", "sub", "aud", "iat", "exp")
_NUMERIC = re.compile(r"-?[0-9]{1,18}")  # longer is no epoch second (and int() may refuse it)
_ASCII_TAG = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_FLAT_TAG = TAGS_CLAIM + "/principal_tags/"
_FLAT_TRANSITIVE = TAGS_CLAIM + "/transitive_tag_keys"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+", re.ASCII)


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


def _reject(out: list[Finding], rule: str, detail: str, fix: str, **values: object) -> None:
    message = _MESSAGES[rule].format(**values)
    out.append(reject(rule, detail, fix, message, _CODES.get(rule, "InvalidIdentityToken")))


def _house(out: list[Finding], rule: str, detail: str, fix: str) -> None:
    out.append(Finding(rule=rule, severity=Severity.HOUSE, detail=detail, fix=fix))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_token(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    token_length: int,
    issuer: str,
    audiences: Collection[str],
    now: int,
    max_lifetime: int = 3600,
) -> list[Finding]:
    """Every rule a token's header and claims can break (signature and JWKS excluded)."""
    out: list[Finding] = []
    if token_length > MAX_TOKEN_LENGTH:
        detail = f"the token is {token_length} characters long"
        _reject(out, "token.length", detail, "Carry fewer or shorter claims and tags.")
    _check_header(header, out)
    for name in _REQUIRED:
        if name not in claims:
            _reject(out, "claims.required", f"no {name!r} claim", f"Add {name!r}.", name=name)
    times = {name: _timestamp(claims, name, out) for name in ("iat", "exp", "nbf")}
    if "nbf" not in claims:
        _house(out, "claims.nbf.present", "the token has no nbf", "Set nbf to iat.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        _house(out, "claims.jti.present", f"jti is {_show(jti)}", "Set a random string jti.")
    if "iss" in claims and (iss := claims["iss"]) != issuer:
        detail = f"iss {_show(iss)} is not the issuer {issuer!r}"
        _reject(out, "claims.iss", detail, "Set iss to the provider URL exactly.", iss=iss)
    if "aud" in claims:
        _check_aud(claims, audiences, out)
    _check_times(times, now, max_lifetime, out)
    sub = claims.get("sub", "-")  # a missing sub is claims.required's business
    if sub is None:
        _reject(out, "claims.sub.null", "sub is null", "Set sub to a short string.")
    elif not isinstance(sub, str) or not sub:
        _house(out, "claims.sub.string", f"sub is {_show(sub)}", "Make sub a non-empty string.")
    _check_tags(claims, out)
    return out


def _keyed(jwks: Mapping[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    keys = jwks.get("keys")
    keys = keys if isinstance(keys, list) else []
    keyed = [k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str) and k["kid"]]
    return keys, keyed


def pick_key(header: Mapping[str, Any], jwks: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JWK STS verifies this token with, or None when it finds none."""
    keys, keyed = _keyed(jwks)
    if "kid" not in header:  # accepted only when the JWKS holds exactly one key, with a kid
        return keyed[0] if len(keys) == len(keyed) == 1 else None
    # duplicate kids: the last one wins
    return next((k for k in reversed(keyed) if k["kid"] == header["kid"]), None)


def check_token_kid(header: Mapping[str, Any], jwks: Mapping[str, Any]) -> list[Finding]:
    """Which JWK STS would pick for this token, and whether it can verify the token."""
    out: list[Finding] = []
    picked = pick_key(header, jwks)
    if picked is None:
        if "kid" not in header:
            detail, fix = "the token has no kid", "Put the signing key's kid in the header."
        else:
            detail, fix = f"kid {_show(header['kid'])} is not published", "Publish the key first."
        count = len(_keyed(jwks)[1])
        _reject(out, "kid.published", f"{detail} ({count} keys with a kid)", fix)
        return out
    alg = header.get("alg") if isinstance(header.get("alg"), str) else None
    # An unsupported alg is header.alg's finding, not this one.
    need = "RSA" if alg in RSA_ALGS else "EC" if alg in EC_ALGS else picked.get("kty")
    if picked.get("kty") != need:
        detail = f"STS picks the {picked.get('kty')} key {picked['kid']!r}; {alg} needs {need}"
        _reject(out, "kid.key_type", detail, "Give every key its own kid.")
    return out


def check_roles_claim(claims: Mapping[str, Any], *, role_arn: str) -> list[Finding]:
    """The ``https://aws.amazon.com/roles`` pin, which STS enforces before the trust policy."""
    out: list[Finding] = []
    value = claims.get(ROLES_CLAIM)
    if value is None:  # absent and null both mean "no pin"
        return out
    if not isinstance(value, str | list):
        fix = "Make the roles claim an array of role ARNs."
        _reject(out, "roles.format", f"the roles claim is {_show(value)}", fix)
        return out
    entries = value.split(";") if isinstance(value, str) else value
    # Junk, nulls and numbers next to a valid ARN are ignored, as STS does; nested lists too.
    arns = {e.strip() for e in entries if isinstance(e, str) and _ROLE_ARN.fullmatch(e.strip())}
    if not arns:
        fix = "List exact lowercase role ARNs (no wildcards), ';' between them in a string."
        _reject(out, "roles.valid", f"no valid role ARN in {_show(value)}", fix)
    elif role_arn not in arns:
        fix = "Add the requested role ARN to the roles claim, or request a listed role."
        _reject(out, "roles.target", f"{role_arn!r} is not among {sorted(arns)}", fix)
    return out


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


def _check_header(header: Mapping[str, Any], out: list[Finding]) -> None:
    if "crit" in header:
        _reject(out, "header.crit", f"crit is {_show(header['crit'])}", "Drop crit.")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        _reject(out, "header.alg", f"alg {_show(alg)} is not RS*/ES*", "Sign with ES256 or RS256.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        _house(out, "header.kid", f"kid is {_show(kid)}", "Put the key's kid in the header.")
    if header.get("typ") != "JWT":
        _house(out, "header.typ", f"typ is {_show(header.get('typ'))}", 'Set typ "JWT".')
    if extra := sorted(str(k) for k in header if k not in _HEADER_MEMBERS):
        _house(out, "header.members", f"extra header members {extra}", "Drop them.")


def _timestamp(claims: Mapping[str, Any], name: str, out: list[Finding]) -> int | None:
    if name not in claims:
        return None
    value, rule, fix = claims[name], f"claims.{name}.integer", f"Emit {name} as a JSON integer."
    if type(value) is int:  # not bool
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        _house(out, rule, f"{name} is the string {value!r} (STS accepts it)", fix)
        return int(value)
    _reject(out, rule, f"{name} is {_show(value)}", fix)
    return None


def _check_aud(claims: Mapping[str, Any], audiences: Collection[str], out: list[Finding]) -> None:
    aud, fix = claims["aud"], "Set aud to the client id registered on the IAM OIDC provider."
    if aud == []:
        _reject(out, "claims.aud.empty", "aud is []", fix)
    elif "azp" in claims:  # STS then checks azp alone; aud may be anything
        azp = claims["azp"]
        if isinstance(azp, str) and azp in audiences:
            _house(out, "claims.azp", f"azp {azp!r} is set", "Drop azp; send one aud.")
        else:
            _reject(out, "claims.azp", f"azp {_show(azp)} is not registered", "Fix or drop azp.")
    elif isinstance(aud, list) and len(aud) > 1:
        _reject(out, "claims.aud.multiple", f"aud {_show(aud)} without azp", fix)
    else:
        if isinstance(aud, list):
            _house(out, "claims.aud.list", f"aud is the list {_show(aud)}", "Send aud as a string.")
            aud = aud[0]
        if not isinstance(aud, str) or aud not in audiences:
            detail = f"aud {_show(aud)} is not one of {sorted(audiences)}"
            _reject(out, "claims.aud.registered", detail, fix)


def _check_times(times: dict[str, int | None], now: int, lifetime: int, out: list[Finding]) -> None:
    iat, exp, nbf = times["iat"], times["exp"], times["nbf"]
    if exp is not None and exp < now - LEEWAY:  # "exp up to 300 s past is still accepted"
        detail = f"exp {exp} is {now - exp} s before now ({now})"
        _reject(
            out, "claims.exp.expired", detail, "Mint a fresh token.", limit=now - LEEWAY, exp=exp
        )
    if iat is not None and iat > now + LEEWAY:
        detail = f"iat {iat} is {iat - now} s after now ({now})"
        _reject(out, "claims.iat.future", detail, "Fix the issuer's clock.", iat=iat)
    if nbf is not None and nbf > now + LEEWAY:
        detail = f"nbf {nbf} is {nbf - now} s after now ({now})"
        _reject(out, "claims.nbf.future", detail, "Set nbf to iat.", limit=now + LEEWAY, nbf=nbf)
    if iat is None or exp is None:
        return
    if exp <= iat:
        _house(out, "claims.exp.after_iat", f"exp {exp} is not after iat {iat}", "Set exp > iat.")
    elif exp - iat > lifetime:  # STS may say "Token too old" for an old iat (threshold unknown)
        detail = f"exp - iat is {exp - iat} s, above {lifetime} s"
        _house(out, "claims.lifetime", detail, f"Keep the lifetime at or under {lifetime} s.")


def _check_tags(claims: Mapping[str, Any], out: list[Finding]) -> None:
    pairs: list[tuple[str, str]] = []
    transitive: list[Any] = []
    fix = 'Write each tag as "key": ["value"] under principal_tags.'
    flat = [k for k in claims if k.startswith(_FLAT_TAG) or k == _FLAT_TRANSITIVE]
    if TAGS_CLAIM not in claims and not flat:
        _house(out, "tags.present", "the token has no tags claim", "Add the scope tag.")
        return
    if flat:
        _house(out, "tags.flattened", f"flattened tag claims {flat}", "Use the nested form.")
    for k in flat:  # a guess: the flattened form is documented with string values only
        if k == _FLAT_TRANSITIVE:
            transitive.append(claims[k])
        elif isinstance(claims[k], str):
            pairs.append((k.removeprefix(_FLAT_TAG), claims[k]))
        else:
            _reject(out, "tags.format", f"{k!r} is {_show(claims[k])}, not a string", fix)
    nested = claims.get(TAGS_CLAIM, {})
    principal = nested.get("principal_tags") if isinstance(nested, dict) else None
    if TAGS_CLAIM in claims and not isinstance(principal, dict):
        _reject(out, "tags.format", f"principal_tags is {_show(principal)}, not an object", fix)
        return
    for key, value in (principal or {}).items():
        if type(value) is list and len(value) == 1 and isinstance(value[0], str):
            pairs.append((key, value[0]))
        else:  # a bare string or a multi-valued tag
            _reject(out, "tags.format", f"tag {key!r} is {_show(value)}, not [one string]", fix)
    if "transitive_tag_keys" in nested:
        transitive.append(nested["transitive_tag_keys"])
    _check_tag_pairs(pairs, transitive, out)


def _check_tag_pairs(
    pairs: list[tuple[str, str]], transitive: list[Any], out: list[Finding]
) -> None:
    if len(pairs) > MAX_TAGS:
        _reject(out, "tags.count", f"{len(pairs)} tags", "Send at most 50 tags.", count=len(pairs))
    seen: set[str] = set()
    for key, value in pairs:
        if not 1 <= len(key) <= 128:
            detail = f"tag key {_show(key)} has {len(key)} characters"
            _reject(out, "tags.key_length", detail, "Use a 1-128 character key.", text=key)
        if len(value) > 256:
            detail = f"tag {key!r} has a {len(value)}-character value"
            _reject(out, "tags.value_length", detail, "Shorten the value.", text=_show(value))
        for what, text in (("key", key), ("value", value)):
            if not _tag_chars_ok(text):
                detail, fix = f"tag {what} {_show(text)}", "Use letters, digits, spaces, _.:/=+-@."
                _reject(out, "tags.charset", detail, fix, what=what, text=text)
            if text[:4].lower() == "aws:":
                detail, fix = f"tag {what} {_show(text)} starts with aws:", "Drop the aws: prefix."
                _reject(out, "tags.aws_prefix", detail, fix, what=what, text=text)
        if key.lower() in seen:
            detail, fix = f"tag key {key!r} repeats a key ignoring case", "Rename one of them."
            _reject(out, "tags.duplicate_keys", detail, fix, text=key)
        seen.add(key.lower())
    for keys in transitive:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            detail = f"transitive_tag_keys is {_show(keys)}, not a list of strings"
        elif missing := [k for k in keys if k.lower() not in seen]:
            detail = f"transitive_tag_keys {missing} are not tag keys"
        else:
            continue
        _reject(out, "tags.transitive", detail, "List only principal_tags keys there.")


def _tag_chars_ok(text: str) -> bool:
    if text.isascii():
        return _ASCII_TAG.fullmatch(text) is not None
    # Python's re has no \p{..}: Unicode letters (L), separators (Z) and numbers (N) by category.
    return all(c in _TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in text)
