"""The token checks of the one implementation of what AWS STS checks (``docs/sts-rules.md``).

Pure functions from parsed inputs to :class:`~broker.sts.catalogue.Finding` lists; no I/O, no
signature verification. Rule families (ids in :data:`~broker.sts.catalogue.RULES`):

- ``token.*``  the request: token length (a ``ValidationError`` before any JWT parsing)
- ``header.*``  the JOSE header: ``crit``, ``alg``; house shape ``{alg, kid, typ: "JWT"}``
- ``claims.*``  required claims, timestamps, ``iss``, ``aud``/``azp``, the ±``LEEWAY`` s window, ``sub``
- ``kid.*``  is the token's ``kid`` published, and can the JWK STS picks verify it
- ``tags.*``  ``https://aws.amazon.com/tags`` (nested form; the flattened form for ``doctor``)
- ``roles.*``  ``https://aws.amazon.com/roles`` role pinning

The issuer side (``discovery.*``, ``jwks.*``) is :mod:`broker.sts.issuer_rules`. Duplicate JSON
members are the caller's parser's business: STS keeps the last one, as :mod:`json` does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from broker.sts.catalogue import (
    ALLOWED_ALGS,
    EC_ALG_CURVES,
    EC_ALGS,
    LEEWAY,
    MAX_LIFETIME,
    MAX_TOKEN_LENGTH,
    ROLES_CLAIM,
    RSA_ALGS,
    Finding,
    add_house,
    add_reject,
    show,
)
from broker.sts.tags import (
    FLAT_TAG_PREFIX,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    aws_prefixed,
    read_tags,
    tag_chars_ok,
)

_HEADER_MEMBERS = frozenset({"alg", "kid", "typ", "crit"})  # crit has its own rule
_REQUIRED = ("iss", "sub", "aud", "iat", "exp")
_NUMERIC = re.compile(r"-?[0-9]{1,18}")  # longer is no epoch second (and int() may refuse it)
_MAX_TIMESTAMP = 10**18  # the same bound for JSON integers: exp 10**30 is no time either
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+", re.ASCII)


def check_token(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    token_length: int,
    issuer: str,
    audiences: Collection[str],
    now: int,
    max_lifetime: int = MAX_LIFETIME,
) -> list[Finding]:
    """Every rule a token's header and claims can break (signature and JWKS excluded)."""
    out = check_token_length(token_length)
    _check_header(header, out)
    for name in _REQUIRED:
        if name not in claims:
            add_reject(out, "claims.required", f"no {name!r} claim", f"Add {name!r}.", name=name)
    times = {name: _timestamp(claims, name, out) for name in ("iat", "exp", "nbf")}
    if "nbf" not in claims:
        add_house(out, "claims.nbf.present", "the token has no nbf", "Set nbf to iat.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        add_house(out, "claims.jti.present", f"jti is {show(jti)}", "Set a random string jti.")
    if "iss" in claims and (iss := claims["iss"]) != issuer:
        detail = f"iss {show(iss)} is not the issuer {issuer!r}"
        add_reject(out, "claims.iss", detail, "Set iss to the provider URL exactly.", iss=iss)
    if "aud" in claims:
        _check_aud(claims, audiences, out)
    _check_times(times, now, max_lifetime, out)
    sub = claims.get("sub", "-")  # a missing sub is claims.required's business
    if sub is None:
        add_reject(out, "claims.sub.null", "sub is null", "Set sub to a short string.")
    elif not isinstance(sub, str) or not sub:
        add_house(out, "claims.sub.string", f"sub is {show(sub)}", "Make sub a non-empty string.")
    _check_tags(claims, out)
    return out


def check_token_length(token_length: int) -> list[Finding]:
    """The request's length limit: STS answers ValidationError before it parses the JWT at all."""
    out: list[Finding] = []
    if token_length > MAX_TOKEN_LENGTH:
        detail = f"the token is {token_length} characters long"
        add_reject(out, "token.length", detail, "Carry fewer or shorter claims and tags.")
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
            detail, fix = f"kid {show(header['kid'])} is not published", "Publish the key first."
        count = len(_keyed(jwks)[1])
        add_reject(out, "kid.published", f"{detail} ({count} keys with a kid)", fix)
        return out
    alg = header.get("alg") if isinstance(header.get("alg"), str) else None
    # An unsupported alg is header.alg's finding, not this one.
    need = "RSA" if alg in RSA_ALGS else "EC" if alg in EC_ALGS else picked.get("kty")
    if picked.get("kty") != need:
        detail = f"STS picks the {picked.get('kty')} key {picked['kid']!r}; {alg} needs {need}"
        add_reject(out, "kid.key_type", detail, "Give every key its own kid.")
        return out
    # Each ES alg verifies on one curve only (RFC 7518 3.4); the JWK's own alg does not matter.
    # An unknown crv is jwks.ec_curve's finding, not this one.
    crv, need_crv = picked.get("crv"), EC_ALG_CURVES.get(str(alg))
    if need_crv is not None and crv in EC_ALG_CURVES.values() and crv != need_crv:
        detail = f"STS picks the {crv} key {picked['kid']!r}; {alg} needs {need_crv}"
        add_reject(out, "kid.key_type", detail, "Sign with the alg of the key's curve.")
    return out


def check_roles_claim(claims: Mapping[str, Any], *, role_arn: str) -> list[Finding]:
    """The ``https://aws.amazon.com/roles`` pin, which STS enforces before the trust policy."""
    out: list[Finding] = []
    value = claims.get(ROLES_CLAIM)
    if value is None:  # absent and null both mean "no pin"
        return out
    if not isinstance(value, str | list):
        fix = "Make the roles claim an array of role ARNs."
        add_reject(out, "roles.format", f"the roles claim is {show(value)}", fix)
        return out
    entries = value.split(";") if isinstance(value, str) else value
    # Junk, nulls and numbers next to a valid ARN are ignored, as STS does; nested lists too.
    arns = {e.strip() for e in entries if isinstance(e, str) and _ROLE_ARN.fullmatch(e.strip())}
    if not arns:
        fix = "List exact lowercase role ARNs (no wildcards), ';' between them in a string."
        add_reject(out, "roles.valid", f"no valid role ARN in {show(value)}", fix)
    elif role_arn not in arns:
        fix = "Add the requested role ARN to the roles claim, or request a listed role."
        add_reject(out, "roles.target", f"{role_arn!r} is not among {sorted(arns)}", fix)
    return out


def _check_header(header: Mapping[str, Any], out: list[Finding]) -> None:
    if "crit" in header:
        add_reject(out, "header.crit", f"crit is {show(header['crit'])}", "Drop crit.")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        add_reject(
            out, "header.alg", f"alg {show(alg)} is not RS*/ES*", "Sign with ES256 or RS256."
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        add_house(out, "header.kid", f"kid is {show(kid)}", "Put the key's kid in the header.")
    if header.get("typ") != "JWT":
        add_house(out, "header.typ", f"typ is {show(header.get('typ'))}", 'Set typ "JWT".')
    if extra := sorted(str(k) for k in header if k not in _HEADER_MEMBERS):
        add_house(out, "header.members", f"extra header members {extra}", "Drop them.")


def _timestamp(claims: Mapping[str, Any], name: str, out: list[Finding]) -> int | None:
    if name not in claims:
        return None
    value, rule, fix = claims[name], f"claims.{name}.integer", f"Emit {name} as a JSON integer."
    if type(value) is int and abs(value) < _MAX_TIMESTAMP:  # not bool
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        add_house(out, rule, f"{name} is the string {value!r} (STS accepts it)", fix)
        return int(value)
    add_reject(out, rule, f"{name} is {show(value)}", fix)
    return None


def _check_aud(claims: Mapping[str, Any], audiences: Collection[str], out: list[Finding]) -> None:
    aud, fix = claims["aud"], "Set aud to the client id registered on the IAM OIDC provider."
    if aud == []:
        add_reject(out, "claims.aud.empty", "aud is []", fix)
    elif "azp" in claims:  # STS then checks azp alone; aud may be anything
        azp = claims["azp"]
        if isinstance(azp, str) and azp in audiences:
            add_house(out, "claims.azp", f"azp {azp!r} is set", "Drop azp; send one aud.")
        else:
            add_reject(out, "claims.azp", f"azp {show(azp)} is not registered", "Fix or drop azp.")
    elif isinstance(aud, list) and len(aud) > 1:
        add_reject(out, "claims.aud.multiple", f"aud {show(aud)} without azp", fix)
    else:
        if isinstance(aud, list):
            add_house(
                out, "claims.aud.list", f"aud is the list {show(aud)}", "Send aud as a string."
            )
            aud = aud[0]
        if not isinstance(aud, str) or aud not in audiences:
            detail = f"aud {show(aud)} is not one of {sorted(audiences)}"
            add_reject(out, "claims.aud.registered", detail, fix)


def _check_times(times: dict[str, int | None], now: int, lifetime: int, out: list[Finding]) -> None:
    iat, exp, nbf = times["iat"], times["exp"], times["nbf"]
    if exp is not None and exp < now - LEEWAY:  # "exp up to 300 s past is still accepted"
        detail = f"exp {exp} is {now - exp} s before now ({now})"
        add_reject(
            out, "claims.exp.expired", detail, "Mint a fresh token.", limit=now - LEEWAY, exp=exp
        )
    if iat is not None and iat > now + LEEWAY:
        detail = f"iat {iat} is {iat - now} s after now ({now})"
        add_reject(out, "claims.iat.future", detail, "Fix the issuer's clock.", iat=iat)
    if nbf is not None and nbf > now + LEEWAY:
        detail = f"nbf {nbf} is {nbf - now} s after now ({now})"
        add_reject(out, "claims.nbf.future", detail, "Set nbf to iat.", limit=now + LEEWAY, nbf=nbf)
    if iat is None or exp is None:
        return
    if exp <= iat:
        add_house(
            out, "claims.exp.after_iat", f"exp {exp} is not after iat {iat}", "Set exp > iat."
        )
    elif exp - iat > lifetime:  # STS may say "Token too old" for an old iat (threshold unknown)
        detail = f"exp - iat is {exp - iat} s, above {lifetime} s"
        add_house(out, "claims.lifetime", detail, f"Keep the lifetime at or under {lifetime} s.")


def _check_tags(claims: Mapping[str, Any], out: list[Finding]) -> None:
    tags = read_tags(claims)
    pairs: list[tuple[str, str]] = []
    fix = 'Write each tag as "key": ["value"] under principal_tags.'
    if not tags.nested_present and not tags.flat_names:
        add_house(out, "tags.present", "the token has no tags claim", "Add the scope tag.")
        return
    if tags.flat_names:
        detail = f"flattened tag claims {tags.flat_names}"
        add_house(out, "tags.flattened", detail, "Use the nested form.")
    for key, value in tags.flattened.items():  # a guess: documented with string values only
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            detail = f"{FLAT_TAG_PREFIX + key!r} is {show(value)}, not a string"
            add_reject(out, "tags.format", detail, fix)
    principal = tags.principal
    if tags.nested_present and not isinstance(principal, dict):
        add_reject(out, "tags.format", f"principal_tags is {show(principal)}, not an object", fix)
        return
    for key, value in (principal or {}).items():
        if type(value) is list and len(value) == 1 and isinstance(value[0], str):
            pairs.append((key, value[0]))
        else:  # a bare string or a multi-valued tag
            add_reject(out, "tags.format", f"tag {key!r} is {show(value)}, not [one string]", fix)
    _check_tag_pairs(pairs, [value for _, value in tags.transitive], out)


def _check_tag_pairs(
    pairs: list[tuple[str, str]], transitive: list[Any], out: list[Finding]
) -> None:
    if len(pairs) > MAX_TAGS:
        fix = f"Send at most {MAX_TAGS} tags."
        add_reject(out, "tags.count", f"{len(pairs)} tags", fix, count=len(pairs))
    seen: set[str] = set()
    for key, value in pairs:
        if not 1 <= len(key) <= MAX_TAG_KEY:
            detail = f"tag key {show(key)} has {len(key)} characters"
            add_reject(
                out, "tags.key_length", detail, f"Use a 1-{MAX_TAG_KEY} character key.", text=key
            )
        if len(value) > MAX_TAG_VALUE:
            detail = f"tag {key!r} has a {len(value)}-character value"
            add_reject(out, "tags.value_length", detail, "Shorten the value.", text=show(value))
        for what, text in (("key", key), ("value", value)):
            if not tag_chars_ok(text):
                detail, fix = f"tag {what} {show(text)}", "Use letters, digits, spaces, _.:/=+-@."
                add_reject(out, "tags.charset", detail, fix, what=what, text=text)
            if aws_prefixed(text):
                detail, fix = f"tag {what} {show(text)} starts with aws:", "Drop the aws: prefix."
                add_reject(out, "tags.aws_prefix", detail, fix, what=what, text=text)
        if key.lower() in seen:
            detail, fix = f"tag key {key!r} repeats a key ignoring case", "Rename one of them."
            add_reject(out, "tags.duplicate_keys", detail, fix, text=key)
        seen.add(key.lower())
    for keys in transitive:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            detail = f"transitive_tag_keys is {show(keys)}, not a list of strings"
        elif missing := [k for k in keys if k.lower() not in seen]:
            detail = f"transitive_tag_keys {missing} are not tag keys"
        else:
            continue
        add_reject(out, "tags.transitive", detail, "List only principal_tags keys there.")
