"""Offline evaluation of an IAM role trust policy for one web-identity token: the AccessDenied explainer.

STS answers a trust-policy refusal with a bare ``AccessDenied`` and never says which statement or
condition failed. This module evaluates the policy the way IAM does for
``AssumeRoleWithWebIdentity`` (and ``TagSession`` when the token carries tags): an explicit Deny
wins, otherwise some Allow statement must match principal, action and every condition. Condition
keys are the ones STS sets for a self-hosted issuer (``docs/sts-rules.md``): ``<host>:aud``,
``:sub``, ``:amr``, ``:oaud``, ``:email``, ``aws:RequestTag/<k>``, ``aws:TagKeys``,
``sts:TransitiveTagKeys``; other ``<host>:`` keys (custom claims) are absent. Any other key
(``sts:RoleSessionName``, ``aws:SourceIp``, ...) comes from the request, which doctor does not
see: such a condition is ``trust.unevaluated``, assumed to hold in an Allow statement and not to
match in a Deny statement, so doctor never predicts AccessDenied from what it cannot know.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from broker.errors import TrustPolicyInvalid
from broker.sts.catalogue import TAG_SESSION, WEB_IDENTITY, Finding, Severity, warn
from broker.sts.tags import read_tags

ACCESS_DENIED = f"Not authorized to perform {WEB_IDENTITY}"  # also when only TagSession fails
TRUST_RULES: Mapping[str, str] = {
    "trust.deny": "no Deny statement matches the request",
    "trust.allow": "an Allow statement admits the request",
    "trust.principal": "the statement names the issuer's OIDC provider as Principal.Federated",
    "trust.action": "the statement allows the action (sts:TagSession too when the token has tags)",
    "trust.condition": "every condition of the statement holds for this token",
    "trust.negated_missing": "warn: a negated operator on a key the request lacks evaluates true",
    "trust.unevaluated": "warn: a condition doctor cannot evaluate offline (assumed to hold in "
    "an Allow, not to match in a Deny)",
}
_STRING_OPS = ("StringEquals", "StringEqualsIgnoreCase", "StringLike")
_TOKEN_KEYS = ("aws:tagkeys", "sts:transitivetagkeys")  # plus aws:RequestTag/* and <host>:*
Context = dict[str, list[str]]  # lowercased condition key -> values (absent: key not in request)


def request_context(claims: Mapping[str, Any], host_path: str) -> Context:
    """The condition keys STS sets from this token (values as IAM compares them)."""
    ctx: Context = {}

    def put(key: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        strings = [v if isinstance(v, str) else str(v) for v in values if v is not None]
        if strings:
            ctx[key.lower()] = strings

    azp = claims.get("azp")
    # With azp, STS matches the client id on azp; the token's aud becomes oaud.
    put(f"{host_path}:aud", azp if azp is not None else claims.get("aud"))
    if azp is not None:
        put(f"{host_path}:oaud", claims.get("aud"))
    for claim in ("sub", "amr", "email"):
        put(f"{host_path}:{claim}", claims.get(claim))
    read = read_tags(claims)
    tags = read.tags
    for key, value in tags.items():
        put(f"aws:RequestTag/{key}", value)
    put("aws:TagKeys", list(tags))
    put("sts:TransitiveTagKeys", read.transitive_keys)
    return ctx


def _statements(policy: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise TrustPolicyInvalid("not a policy document: expected a JSON object with a Statement")
    statements = policy["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    for i, st in enumerate(statements):
        if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
            raise TrustPolicyInvalid(f"Statement[{i}] is not an object with Effect Allow or Deny")
        yield str(st.get("Sid") or f"Statement[{i}]"), st


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v if isinstance(v, str) else str(v).lower() for v in values]  # JSON true -> "true"


def _glob(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = (re.IGNORECASE if ignore_case else 0) | re.DOTALL
    return re.fullmatch(regex, text, flags) is not None


def _principal_ok(st: Mapping[str, Any], host_path: str) -> bool:
    principal = st.get("Principal")
    if principal == "*":
        return True
    federated = principal.get("Federated") if isinstance(principal, dict) else None
    provider = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/" + re.escape(host_path))
    return any(provider.fullmatch(p) for p in _strings(federated))


def _action_ok(st: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in st:
        return not any(_glob(a, action, ignore_case=True) for a in _strings(st["NotAction"]))
    return any(_glob(a, action, ignore_case=True) for a in _strings(st.get("Action")))


def _match(base: str, have: str, wants: list[str]) -> bool:
    if base == "StringLike":
        return any(_glob(w, have) for w in wants)
    if base == "StringEqualsIgnoreCase":
        return have.lower() in (w.lower() for w in wants)
    return have in wants


def _from_token(key: str, host_path: str) -> bool:
    """Whether the token alone decides this key (set from its claims, or known to be absent)."""
    key = key.lower()
    return key in _TOKEN_KEYS or key.startswith(("aws:requesttag/", host_path.lower() + ":"))


def _condition(
    operator: str, key: str, wants: list[str], ctx: Context
) -> tuple[bool | None, str | None]:
    """(holds, warning): holds is None when doctor cannot evaluate the operator."""
    have = ctx.get(key.lower())
    if operator == "Null":
        return (have is None) == (wants == ["true"]), None
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    negated = op.startswith("StringNot")
    base = op.replace("Not", "", 1) if negated else op
    if base not in _STRING_OPS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return None, None
    if have is None:
        if qualifier == "ForAllValues" or (negated and not qualifier):
            return True, f"{operator} on {key}, which this request lacks, evaluates true"
        return if_exists, None
    hits = [_match(base, v, wants) != negated for v in have]
    return (all(hits) if qualifier == "ForAllValues" else any(hits)), None


def _conditions(
    st: Mapping[str, Any], ctx: Context, name: str, host_path: str, out: list[Finding]
) -> tuple[str, str] | None:
    """The first condition that fails, as (operator, key), or None when all hold.

    A condition doctor cannot evaluate holds in an Allow and fails in a Deny: a guess must never
    turn into a predicted AccessDenied.
    """
    block = st.get("Condition", {})
    for operator, keys in (block if isinstance(block, dict) else {}).items():
        for key, value in (keys if isinstance(keys, dict) else {}).items():
            if _from_token(key, host_path):
                holds, warning = _condition(operator, key, _strings(value), ctx)
                why = f"operator {operator} on {key} is not evaluated offline"
            else:
                holds, warning = None, None
                why = f"{operator} on {key}: the key comes from the request, not the token"
            if warning is not None:
                fix = 'Require the key with "Null": {"<key>": "false"} as well.'
                out.append(warn("trust.negated_missing", f"{name}: {warning}", fix))
            if holds is None:
                deny = st["Effect"] == "Deny"
                detail = f"{name}: {why} (assumed {'not to match' if deny else 'to hold'})"
                out.append(warn("trust.unevaluated", detail, "Check this condition by hand."))
                if deny:
                    return operator, key
            elif not holds:
                return operator, key
    return None


def _deny(rule: str, detail: str, fix: str) -> Finding:
    return Finding(
        rule=rule,
        severity=Severity.REJECT,
        detail=detail,
        fix=fix,
        sts_code="AccessDenied",
        sts_message=ACCESS_DENIED,
    )


def evaluate(policy: Any, claims: Mapping[str, Any], *, host_path: str) -> list[Finding]:
    """Why the trust policy would deny this token (REJECT findings), plus warnings; [] = allow.

    ``host_path`` is the issuer without ``https://``: the provider name and condition-key prefix.
    Raises :class:`~broker.errors.TrustPolicyInvalid` when ``policy`` is no policy document.
    """
    statements = list(_statements(policy))
    ctx = request_context(claims, host_path)
    actions = [WEB_IDENTITY] + ([TAG_SESSION] if "aws:tagkeys" in ctx else [])
    out: list[Finding] = []
    reasons: dict[str, list[Finding]] = {}
    for action in actions:
        allowed = False
        for name, st in statements:
            if not (_principal_ok(st, host_path) and _action_ok(st, action)):
                if st["Effect"] == "Allow":
                    reasons.setdefault(action, []).append(_why_not(name, st, action, host_path))
                continue
            failed = _conditions(st, ctx, name, host_path, out)
            if st["Effect"] == "Deny" and failed is None:
                detail = f"{name} denies {action} for this token"
                out.append(_deny("trust.deny", detail, f"Narrow or remove {name}."))
            elif st["Effect"] == "Allow" and failed is None:
                allowed = True
            elif st["Effect"] == "Allow" and failed is not None:
                reasons.setdefault(action, []).append(_failed(name, failed, ctx))
        if not allowed:
            fix = "Compare with `test-broker policy render trust`."
            detail = f"no Allow statement admits {action} for this token"
            out += reasons.get(action) or [_deny("trust.allow", detail, fix)]
    return list(dict.fromkeys(out))  # a warning repeats once per action


def _why_not(name: str, st: Mapping[str, Any], action: str, host_path: str) -> Finding:
    if not _principal_ok(st, host_path):
        detail = f"{name}: Principal {st.get('Principal')!r} does not name the provider {host_path}"
        fix = (
            f'Set "Principal": {{"Federated": "arn:aws:iam::<account>:oidc-provider/{host_path}"}}.'
        )
        return _deny("trust.principal", detail, fix)
    detail = f"{name}: Action {st.get('Action', st.get('NotAction'))!r} does not allow {action}"
    fix = f"Add {action} to the statement's actions."
    if action == TAG_SESSION:
        detail += " (the token carries session tags)"
    return _deny("trust.action", detail, fix)


def _failed(name: str, failed: tuple[str, str], ctx: Context) -> Finding:
    operator, key = failed
    have = ctx.get(key.lower())
    value = "absent" if have is None else repr(have if len(have) > 1 else have[0])
    detail = f"{name}: condition {operator} {key} fails (the token gives {value})"
    return _deny("trust.condition", detail, f"Make the token carry what {key} requires.")
