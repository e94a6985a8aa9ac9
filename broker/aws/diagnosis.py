"""What a failed ``verify`` proof means, in plain words (docs/sts-rules.md, deploy/seaweedfs.md).

The pattern of allowed/denied answers and STS's own error words point at the likely cause:
both scopes allowed is a broader grant, both denied is a missing or mismatched tag, an STS
error has a catalogue of causes and a ``test-broker doctor`` command to run next.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from broker.sts.catalogue import LEEWAY, ROLES_CLAIM, TAG_SESSION
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM, TAGS_CLAIM, read_tags

if TYPE_CHECKING:  # verify imports this module at run time; the types only flow back
    from broker.aws.proof import Step, Target


def token_tags(claims: dict[str, Any]) -> dict[str, Any]:
    """Session tags as each reader sees them: AWS (nested claim) and SeaweedFS (flat claim)."""
    tags = read_tags(claims)
    return {"aws": tags.principal, "seaweedfs": tags.seaweedfs}


OWN_STEPS = ("put own", "get own", "list own")
FOREIGN_STEPS = ("get foreign", "list foreign")
# Likely causes, matched on STS's own words first (the first fragment found wins), then on the
# error code. AWS wording from docs/sts-rules.md, SeaweedFS wording from deploy/seaweedfs.md.
CAUSE_BY_FRAGMENT = {
    "roles claim": f"the token pins other roles ({ROLES_CLAIM}): pass the broker's "
    "test role as --role-arn, or add this role to the broker's [[resources]]",
    "No OpenIDConnect provider found": "the token's iss is not a registered OIDC provider; iss "
    "must equal the provider URL byte for byte (https, no port, no trailing slash)",
    "no identity provider registered": "the token's iss matches no registered provider "
    "(byte for byte, no trailing slash)",
    "Couldn't retrieve verification key": "STS could not fetch discovery or JWKS from the issuer, "
    "or the token's kid is not published there (publish a key before signing with it)",
    "not found in JWKS": "the token's kid is not in the issuer's JWKS",
    "missing key ID": "the token has no kid header",
    "signature is invalid": "the signature does not verify with the published key of that kid: "
    "signed by an unpublished key, or the token was altered after signing",
    "audience": "the token's aud is not a client id registered on the provider "
    "(default sts.amazonaws.com)",
    "x509": "STS does not trust the issuer's TLS certificate chain",
    "Missing a required claim": "a required claim (iss, sub, aud, iat, exp) is missing",
    "missing subject": "the token has no sub claim",
    "principal_tags passed in claim": "the tags claim is malformed: each tag value must be a "
    "one-element array of one string",
    "Invalid timestamp": "iat, nbf or exp is not an integer",
    "not valid yet": "nbf is in the future: check the broker host's clock",
    "unsupported signing method": "the token's alg is not one of RS256/384/512, ES256/384/512",
    "role not found": "the role does not exist (SeaweedFS silently drops a role whose trust policy "
    f"lists {TAG_SESSION}: render it with --target seaweedfs)",
    "trust policy": "the role's trust policy does not admit this token (on SeaweedFS: the flat "
    "tags claim is missing, so run the broker with seaweedfs_tags_claim, or oidc:aud differs)",
}
CAUSE_BY_CODE = {
    "AccessDenied": "the role's trust policy does not admit this token: Principal.Federated must "
    f"name the provider ARN, the actions must include {TAG_SESSION}, <host>:aud must equal the "
    "audience and the scope tag must be present; compare with `test-broker policy render trust`",
    "ExpiredTokenException": "the token is expired or too old (keep exp - iat <= 1 h), or the "
    f"broker's clock is more than {LEEWAY} s off; mint a fresh token and check the clock",
    "InvalidIdentityToken": "STS rejected the token itself (signature, kid or shape)",
    "IDPCommunicationError": "STS could not reach the issuer in time: DNS, TLS chain, firewall "
    "or WAF in front of /.well-known/",
    "IDPRejectedClaim": "the identity provider rejected a claim of the token",
    "PackedPolicyTooLarge": "tags and sub exceed STS's packed size budget: fewer, shorter tags",
    "ValidationError": "the request is invalid: a token over 20 000 characters, or "
    "DurationSeconds above the role's MaxSessionDuration",
}


def sts_cause(code: str, message: str) -> str:
    for fragment, cause in CAUSE_BY_FRAGMENT.items():
        if fragment in message:
            return cause
    return CAUSE_BY_CODE.get(code, "STS refused the request; its own words are above")


def explain(
    steps: list[Step], claims: dict[str, Any] | None, target: Target
) -> tuple[list[str], str | None]:
    """Plain-words reading of a failed proof, and the command to run next (if any)."""
    failed = next(s for s in steps if not s.ok)
    if failed.name == "token":
        return [f"no token: {failed.detail}"], None
    iss = (claims or {}).get("iss")
    if failed.name == "assume role":
        code, _, message = failed.detail.partition(": ")
        doctor = f"test-broker doctor --issuer {iss}" if isinstance(iss, str) else None
        return [f"STS refused the token ({code}): {sts_cause(code, message)}"], doctor
    by_name = {s.name: s for s in steps}
    errors = [s for s in steps if s.outcome == "error"]
    if errors:
        return [f"{s.name}: S3 answered an error, not a decision: {s.detail}" for s in errors], None
    lines: list[str] = []
    foreign_allowed = [by_name[n] for n in FOREIGN_STEPS if by_name[n].outcome == "allowed"]
    own_denied = [by_name[n] for n in OWN_STEPS if by_name[n].outcome == "denied"]
    bucket, scope_var = f"arn:aws:s3:::{target.bucket}", f"${{aws:PrincipalTag/{target.scope_tag}}}"
    if foreign_allowed:
        lines.append(
            f"the foreign scope {target.foreign_prefix} is reachable: a broader grant masks tag "
            "isolation (own-scope success proves nothing). Likely statement:"
        )
        for step in foreign_allowed:
            if step.name == "get foreign":
                lines.append(
                    f"  an Allow of s3:GetObject (or s3:*) on {bucket}/* instead of "
                    f"{bucket}/{scope_var}/* (role policy or bucket policy)"
                )
            else:
                lines.append(
                    f"  an Allow of s3:ListBucket on {bucket} without the condition "
                    f'StringLike s3:prefix "{scope_var}/*"'
                )
        lines.append("compare with `test-broker policy render role` and `... render bucket`")
    if any(s.outcome == "unproven" for s in steps):
        lines.append(
            f"the foreign read was denied, but its probe object under {target.foreign_prefix} is "
            "not known to exist, so a broad s3:GetObject grant would look the same: seed it once "
            "with admin rights and run verify with AWS credentials of your own that may "
            "HeadObject it (verify never asks the role)"
        )
    if len(own_denied) == len(OWN_STEPS) and not foreign_allowed:
        lines.append("both scopes are denied: the session carries no usable scope tag")
        lines += _tag_findings(claims or {}, target)
    elif own_denied:
        names = ", ".join(s.name for s in own_denied)
        lines.append(
            f"the role grants only part of the own scope ({names} denied); compare with "
            "`test-broker policy render role`"
        )
    return lines, None


def _tag_findings(claims: dict[str, Any], target: Target) -> list[str]:
    tags = token_tags(claims)
    key = target.scope_tag
    lines = [f"token tags: {json.dumps(tags, sort_keys=True)}"]
    nested, flat = tags["aws"], tags["seaweedfs"]
    keys = sorted({*(nested or {}), *(flat if isinstance(flat, dict) else {})})
    if nested is None and flat is None:
        lines.append(
            f"the token has no tags claim ({TAGS_CLAIM}), so ${{aws:PrincipalTag/{key}}} matches "
            "nothing; mint it with this broker, and require the tag in the trust policy "
            f'("Null": {{"aws:RequestTag/{key}": "false"}}) so such tokens fail at STS instead'
        )
    elif key not in keys:
        lines.append(
            f"the token's tags use {keys}, not {key!r}: the policy's ${{aws:PrincipalTag/...}} "
            "and the broker's scope_tag must name the same key"
        )
    elif flat is None and (target.sts_endpoint or target.s3_endpoint):
        lines.append(
            f"only AWS's nested claim is present; SeaweedFS reads tags only from {SEAWEEDFS_TAGS_CLAIM}"
            ": run the broker with seaweedfs_tags_claim = true"
        )
    else:
        lines.append(
            f"the token carries {key}; the role policy probably uses another tag key or bucket: "
            "compare with `test-broker policy render role`"
        )
    return lines
