"""The AWS side of the test setup, rendered from the broker's config: trust, role and bucket policy.

These are the only places in the repository where the policies are written. The SeaweedFS test
stack builds its ``iam.json`` from the same documents; the few things SeaweedFS 4.48 reads
differently live in ``for_seaweedfs`` (see deploy/seaweedfs.md), nowhere else.

Isolation rests on two rules from docs/sts-rules.md: the trust policy *requires* the scope tag with
``Null: false`` (a negated operator such as ``StringNotEquals`` on a missing tag evaluates true and
would let an untagged token in), and every S3 grant is confined to ``${aws:PrincipalTag/<tag>}/``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from broker.config import Settings
from broker.config.resources import TestResource
from broker.errors import ConfigError
from broker.sts.catalogue import ROLES_CLAIM, TAG_SESSION, WEB_IDENTITY
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM

PolicyKind = Literal["trust", "role", "bucket"]
PolicyTarget = Literal["aws", "seaweedfs"]
POLICY_KINDS: tuple[PolicyKind, ...] = ("trust", "role", "bucket")
TARGETS: tuple[PolicyTarget, ...] = ("aws", "seaweedfs")
VERSION = "2012-10-17"
OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]

Document = dict[str, Any]


def _need(settings: Settings, *names: str) -> None:
    missing = [n for n in names if getattr(settings, n) is None]
    if missing:
        raise ConfigError(
            "policies are generated from the config, which lacks "
            + ", ".join(f"{n} (env BROKER_{n.upper()})" for n in missing)
            + "; set it in the config file or the environment"
        )


def provider_arn(settings: Settings) -> str:
    """The IAM OIDC provider for this issuer (also SeaweedFS's provider name, so both match)."""
    _need(settings, "aws_account_id")
    return f"arn:aws:iam::{settings.aws_account_id}:oidc-provider/{settings.issuer_host_path}"


def scope_variable(settings: Settings, resource: TestResource) -> str:
    return f"${{aws:PrincipalTag/{settings.scope_tag_of(resource)}}}"


def trust_policy(settings: Settings, resource: TestResource) -> Document:
    """Who may assume the test role: tokens of this issuer, for our audience, carrying a scope."""
    host = settings.issuer_host_path
    tag = settings.scope_tag_of(resource)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "TestBrokerTokens",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn(settings)},
                # TagSession: without it STS refuses any token that carries session tags.
                "Action": [WEB_IDENTITY, TAG_SESSION],
                "Condition": {
                    "StringEquals": {f"{host}:aud": settings.audience},
                    "Null": {f"aws:RequestTag/{tag}": "false"},
                },
            }
        ],
    }


def _scoped_statements(settings: Settings, resource: TestResource) -> list[Document]:
    """Object access and listing confined to the session's own scope prefix."""
    bucket = f"arn:aws:s3:::{resource.bucket}"
    scope = scope_variable(settings, resource)
    return [
        {
            "Sid": "OwnScopeObjects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": [f"{bucket}/{scope}/*"],
        },
        {
            # s3:prefix only exists on ListBucket; mixing it into the object statement is invalid.
            "Sid": "OwnScopeListing",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket],
            "Condition": {"StringLike": {"s3:prefix": [f"{scope}/*"]}},
        },
    ]


def role_policy(settings: Settings, resource: TestResource) -> Document:
    """The test role's identity policy."""
    return {"Version": VERSION, "Statement": _scoped_statements(settings, resource)}


def bucket_policy(settings: Settings, resource: TestResource) -> Document:
    """The same grants on the bucket side, for the test role only (defence in depth)."""
    principal = {"AWS": settings.role_arn(resource)}
    statements = _scoped_statements(settings, resource)
    return {"Version": VERSION, "Statement": [{**s, "Principal": principal} for s in statements]}


def for_seaweedfs(trust: Document, settings: Settings, resource: TestResource) -> Document:
    """Rewrite an AWS trust policy into what SeaweedFS 4.48 evaluates (deploy/seaweedfs.md).

    - ``sts:TagSession`` is dropped: SeaweedFS refuses it and silently drops the whole role.
    - ``<host>:aud`` becomes ``oidc:aud``: SeaweedFS names token claims ``oidc:<claim>``.
    - ``Null aws:RequestTag/<tag>`` becomes ``Null`` on the flat tags claim, the only tags
      SeaweedFS reads (so it too rejects a token without tags, as AWS does).
    Role and bucket policies need no change: SeaweedFS evaluates them as AWS does.
    """
    doc = copy.deepcopy(trust)
    host = settings.issuer_host_path
    tag = settings.scope_tag_of(resource)
    for statement in doc["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != TAG_SESSION]
        condition = statement.get("Condition", {})
        equals = condition.get("StringEquals", {})
        if f"{host}:aud" in equals:
            equals["oidc:aud"] = equals.pop(f"{host}:aud")
        null = condition.get("Null", {})
        if f"aws:RequestTag/{tag}" in null:
            null[f"oidc:{SEAWEEDFS_TAGS_CLAIM}"] = null.pop(f"aws:RequestTag/{tag}")
    return doc


def render(
    settings: Settings,
    kind: PolicyKind,
    resource: TestResource,
    target: PolicyTarget = "aws",
) -> Document:
    if kind == "trust":
        trust = trust_policy(settings, resource)
        return for_seaweedfs(trust, settings, resource) if target == "seaweedfs" else trust
    if kind == "role":
        return role_policy(settings, resource)
    return bucket_policy(settings, resource)


def notes(settings: Settings, kind: PolicyKind, target: PolicyTarget) -> list[str]:
    """What a person applying the document should know that the JSON cannot say."""
    out: list[str] = []
    if kind == "trust":
        out.append(
            f"every token this broker mints carries {ROLES_CLAIM} = "
            f"[{', '.join(settings.role_arns)}]: STS checks it before this trust policy, so the "
            "tokens can assume no other role, even one that wrongly trusts this issuer"
        )
    if kind == "trust" and target == "seaweedfs" and not settings.seaweedfs_tags_claim:
        out.append(
            "SeaweedFS reads session tags only from the flat claim; run the broker with "
            "seaweedfs_tags_claim = true (BROKER_SEAWEEDFS_TAGS_CLAIM=1) or every assume is denied"
        )
    if kind == "bucket":
        out.append(
            "the bucket policy repeats the role policy's grants for the test role only; any "
            "broader Allow on the bucket would mask tag isolation (verify's negative control)"
        )
    return out
