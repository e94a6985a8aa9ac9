"""Token exchange (RFC 8693): a trusted CI provider's job token -> the scope its claims give.

The steps, each refusing with ``invalid_grant`` and a sentence naming what to fix:
``read`` parses the token (nothing trusted yet), ``trusted_table`` picks the ``[[trusted_issuers]]``
table by exact ``iss`` and ``aud`` (the broker's own tokens and unknown issuers stop here),
``signing_alg`` vets the header, the server fetches the issuer's key for its ``kid``, and
``grant_for`` checks the signature, then the times, the required claims and the conditions, and
renders the scope from the claims alone. The caller never names its scope; it may only narrow it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from broker.callers.scopes import check_scope
from broker.config.trusted_issuers import (
    PR_FIELD,
    PresetInfo,
    TrustedIssuer,
    glob_regex,
    template_fields,
)
from broker.errors import InvalidGrant, InvalidRequest, ScopeMalformed
from broker.sts.jwt_text import parse_token

# A GitHub job token is about 1.2 KB; ten times that is no token anyone issues.
MAX_SUBJECT_TOKEN = 12288
# Only asymmetric algorithms: with HS256 the "secret" would be the issuer's public key.
KEY_TYPES: dict[str, type[RSAKey | ECKey]] = {"RS256": RSAKey, "ES256": ECKey}
LEEWAY_SECONDS = 60  # clock skew between the provider and this host
_KID = re.compile(r"[\x21-\x7e]{1,256}")
_DIGITS = re.compile(r"[0-9]{1,20}")

Key = RSAKey | ECKey


@dataclass(frozen=True, kw_only=True)
class SubjectToken:
    """A job token as sent: header and claims are unverified until ``grant_for`` returns."""

    text: str
    header: dict[str, Any]
    claims: dict[str, Any]

    def claim(self, name: str) -> str | None:
        value = self.claims.get(name)
        return value if isinstance(value, str) else None

    def audit(self, claims: dict[str, str] | None = None, *, verified: bool) -> str:
        """What the audit keeps of it: who (iss, sub, jti) and the claims its scope came from
        (or, refused, the claims its table looks at); ``verified``: it passed every check."""
        shown = {name: self.claim(name) for name in ("iss", "sub", "jti")}
        # Unverified values are an attacker's to choose: bounded, and marked as such.
        shown = {k: v[:256] if v else v for k, v in shown.items()}
        bounded = {k: v[:256] for k, v in (claims or {}).items()}
        return json.dumps({**shown, "claims": bounded, "verified": verified}, sort_keys=True)

    def looked_at(self, table: TrustedIssuer) -> dict[str, str]:
        """The claims ``table``'s conditions and template read, as far as the token has them."""
        names = sorted(set(table.conditions) | _template_sources(table))
        return {n: str(self.claims[n]) for n in names if n in self.claims}


@dataclass(frozen=True, kw_only=True)
class Grant:
    """What a verified job token may have."""

    scope: str
    used: dict[str, str]  # the claims the scope came from (audited)
    max_ttl: int


def read(text: str) -> SubjectToken:
    if len(text) > MAX_SUBJECT_TOKEN:
        raise InvalidRequest(
            f"subject_token is {len(text)} characters; at most {MAX_SUBJECT_TOKEN}: send the CI "
            "job's own OIDC token"
        )
    parsed = parse_token(text)
    if parsed is None:
        raise InvalidGrant("subject_token is not a signed JWT (three base64url JSON parts)")
    if parsed.duplicates:
        raise InvalidGrant(f"subject_token repeats {', '.join(parsed.duplicates)}; refused")
    return SubjectToken(text=text, header=parsed.header, claims=parsed.claims)


def trusted_table(
    token: SubjectToken, tables: list[TrustedIssuer], own_issuer: str
) -> TrustedIssuer:
    """The table for the token's exact ``iss`` and ``aud``."""
    iss = token.claim("iss")
    if iss == own_issuer:
        raise InvalidGrant(
            "subject_token was issued by this broker; exchange the CI provider's job token "
            "(GitHub Actions: ACTIONS_ID_TOKEN_REQUEST_URL; GitLab: id_tokens)"
        )
    same = [t for t in tables if t.issuer_url == iss]
    if not same:
        # The trusted list is not named: it would tell anyone which internal providers exist.
        raise InvalidGrant(
            f"issuer {str(iss)[:120]!r} is not trusted here; ask the broker's operator which "
            "CI providers are ([[trusted_issuers]])"
        )
    aud = token.claims.get("aud")
    # Exact: one audience, as a string or a one-element list.
    single = aud[0] if isinstance(aud, list) and len(aud) == 1 else aud
    for table in same:
        if single == table.audience:
            return table
    wanted = " or ".join(repr(t.audience) for t in same)
    raise InvalidGrant(
        f"subject_token aud {str(aud)[:120]!r} is not {wanted}: request the job token with "
        "that audience"
    )


def signing_alg(token: SubjectToken) -> tuple[str, str]:
    """The header's (alg, kid), refused unless RS256/ES256 with a kid and nothing critical."""
    alg = token.header.get("alg")
    if not isinstance(alg, str) or alg not in KEY_TYPES:  # a list or object is unhashable
        raise InvalidGrant(
            f"subject_token alg {str(alg)[:20]!r} is not accepted; only "
            f"{' and '.join(KEY_TYPES)} (never none or HS*)"
        )
    kid = token.header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise InvalidGrant("subject_token has no usable kid in its header")
    if "crit" in token.header:
        raise InvalidGrant("subject_token header has 'crit' extensions; none are understood")
    return alg, kid


def verify_signature(token: SubjectToken, key: Key, alg: str) -> None:
    """The provider signed it: only from here on are its claims the provider's word."""
    wanted = KEY_TYPES.get(alg)
    if wanted is None or not isinstance(key, wanted):
        raise InvalidGrant(f"key {token.header.get('kid')!r} is not a key for {alg}")
    try:
        jws.deserialize_compact(token.text, key, algorithms=[alg])
    except (JoseError, ValueError) as exc:
        raise InvalidGrant(f"subject_token signature does not verify ({exc})") from None


def grant_for(token: SubjectToken, table: TrustedIssuer, now: int) -> Grant:
    """For a token whose signature verified: times, required claims, conditions, then the
    scope from the template."""
    _check_times(token, table, now)
    info = table.info
    needed = info.required | set(table.conditions) | _template_sources(table)
    missing = sorted(name for name in needed if name not in token.claims)
    if missing:
        raise InvalidGrant(f"subject_token lacks the claims {', '.join(missing)}")
    for name, pattern in table.conditions.items():
        value = token.claim(name)
        if value is None or not glob_regex(pattern).fullmatch(value):
            raise InvalidGrant(
                f"subject_token {name} = {str(token.claims.get(name))[:120]!r} does not match "
                f"{pattern!r}: this broker does not exchange tokens of that job"
            )
    scope, used = render_scope(token, table)
    return Grant(scope=scope, used=used, max_ttl=table.max_ttl_seconds)


def _check_times(token: SubjectToken, table: TrustedIssuer, now: int) -> None:
    times = {}
    for name in ("exp", "iat", "nbf"):
        value = token.claims.get(name)
        if name == "nbf" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidGrant(f"subject_token {name} is missing or not an integer")
        times[name] = value
    if times["exp"] <= now - LEEWAY_SECONDS:
        raise InvalidGrant(f"subject_token expired {now - times['exp']} s ago; fetch a fresh one")
    if times.get("nbf", 0) > now + LEEWAY_SECONDS:
        raise InvalidGrant("subject_token is not valid yet (nbf); check the clocks")
    if times["iat"] > now + LEEWAY_SECONDS:
        raise InvalidGrant("subject_token was issued in the future (iat); check the clocks")
    age = now - times["iat"]
    if age > table.info.max_age:
        raise InvalidGrant(
            f"subject_token is {age} s old; at most {table.info.max_age} s: fetch a fresh one"
        )


def _template_sources(table: TrustedIssuer) -> set[str]:
    fields = set(template_fields(table.template))
    if PR_FIELD in fields:
        fields = (fields - {PR_FIELD}) | {table.info.pr_source[0]}
    return fields


def _unsafe(value: str, name: str, info: PresetInfo) -> str | None:
    """Why a claim value cannot go into a scope, or None (see PresetInfo's fields)."""
    try:
        check_scope(value)
    except ScopeMalformed:
        return "is not safe in a scope"
    if name in info.numeric_claims and not _DIGITS.fullmatch(value):
        return "is not a number"
    segments = value.split("/")
    if name not in info.path_claims:
        return "may not hold '/'" if len(segments) > 1 else None
    count = info.path_claims[name]
    if count is not None and len(segments) != count:
        return f"is not {count} '/'-separated parts"
    if count is None and "-" in segments:
        return "holds a '-' segment"
    return None


def render_scope(token: SubjectToken, table: TrustedIssuer) -> tuple[str, dict[str, str]]:
    """The template with each field replaced by its claim; refused if one is missing or unsafe."""
    info = table.info
    used: dict[str, str] = {}
    values: dict[str, str] = {}
    for name in template_fields(table.template):
        if name == PR_FIELD:
            source, pattern = info.pr_source
            raw = token.claim(source)
            found = pattern.fullmatch(raw) if raw else None
            if found is None:
                raise InvalidGrant(
                    f"scope_template needs {{pr}}, but {source} = {str(raw)[:120]!r} names no "
                    "pull/merge request: run this job on one, or use a template without {pr}"
                )
            used[source] = raw or ""
            values[name] = found.group(1)
            continue
        value = token.claim(name)
        if not value:
            raise InvalidGrant(f"scope_template needs claim {name}, which is missing or not text")
        problem = _unsafe(value, name, info)
        if problem:
            raise InvalidGrant(f"claim {name} = {value[:120]!r} {problem}; refused")
        used[name] = value
        values[name] = value
    scope = table.template.format_map(values)
    try:
        check_scope(scope)
    except ScopeMalformed as exc:
        raise InvalidGrant(f"the scope built from the claims is unusable: {exc}") from None
    return scope, used
