"""``aws plan``: read the account's test side and say what differs from the config.

Only read calls happen here. Each provider, role and bucket becomes one :class:`Change` that
names the parts that differ (``fields``), which ``aws apply`` then writes and nothing else.

Policies are compared by meaning, not by text: IAM hands documents back URL-encoded, with
statements and list members reordered and one-element lists collapsed to their element, so a
textual comparison would report an update on every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from broker.aws.account import AwsClients, aws_call, aws_lookup, error_code
from broker.aws.desired import (
    PUBLIC_ACCESS_BLOCK,
    ROLE_POLICY_NAME,
    SSE_ALGORITHM,
    BucketSpec,
    Desired,
    ProviderSpec,
    RoleSpec,
)
from broker.errors import AwsCallFailed

Action = Literal["create", "update", "unchanged"]
Kind = Literal["oidc-provider", "role", "bucket"]

# The parts of each kind, in the order apply writes them.
PROVIDER_FIELDS = ("client ids", "thumbprints")
ROLE_FIELDS = ("trust policy", "identity policy")
BUCKET_FIELDS = ("public access block", "encryption", "bucket policy", "lifecycle")


@dataclass(frozen=True, kw_only=True)
class Change:
    kind: Kind
    name: str
    action: Action
    fields: tuple[str, ...] = ()  # what differs; every part for a create
    resource: str | None = None  # the config's [[resources]] name (roles and buckets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "fields": list(self.fields),
            "resource": self.resource,
        }


def canonical(value: Any) -> Any:
    """A policy value in a form where documents equal in meaning are equal.

    Lists become sorted (IAM ignores their order) and a one-element list becomes its element
    (IAM accepts and returns either).
    """
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return items[0] if len(items) == 1 else items
    return value


def as_document(value: Any) -> Any:
    """A policy as IAM or S3 returns it (a dict, JSON text, or URL-encoded JSON) parsed."""
    if isinstance(value, str):
        text = value if value.lstrip().startswith("{") else unquote(value)
        return json.loads(text)
    return value


def same_policy(left: Any, right: Any) -> bool:
    return bool(canonical(as_document(left)) == canonical(as_document(right)))


def _change(kind: Kind, name: str, differ: list[str], resource: str | None = None) -> Change:
    action: Action = "update" if differ else "unchanged"
    return Change(kind=kind, name=name, action=action, fields=tuple(differ), resource=resource)


def plan_provider(clients: AwsClients, spec: ProviderSpec) -> Change:
    listed = aws_call(
        "iam list-open-id-connect-providers", clients.iam.list_open_id_connect_providers
    )
    if spec.arn not in {p.get("Arn") for p in listed.get("OpenIDConnectProviderList", [])}:
        return Change(kind="oidc-provider", name=spec.url, action="create", fields=PROVIDER_FIELDS)
    found = aws_call(
        f"iam get-open-id-connect-provider {spec.arn}",
        lambda: clients.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=spec.arn),
    )
    differ = []
    if set(found.get("ClientIDList", [])) != set(spec.client_ids):
        differ.append("client ids")
    if {t.lower() for t in found.get("ThumbprintList", [])} != set(spec.thumbprints):
        differ.append("thumbprints")
    return _change("oidc-provider", spec.url, differ)


def plan_role(clients: AwsClients, spec: RoleSpec) -> Change:
    found = aws_lookup(
        f"iam get-role {spec.name}",
        lambda: clients.iam.get_role(RoleName=spec.name),
        "NoSuchEntity",
    )
    if found is None:
        return Change(
            kind="role", name=spec.name, action="create", fields=ROLE_FIELDS, resource=spec.resource
        )
    differ = []
    if not same_policy(found["Role"].get("AssumeRolePolicyDocument"), spec.trust):
        differ.append("trust policy")
    inline = aws_lookup(
        f"iam get-role-policy {spec.name}",
        lambda: clients.iam.get_role_policy(RoleName=spec.name, PolicyName=ROLE_POLICY_NAME),
        "NoSuchEntity",
    )
    if inline is None or not same_policy(inline.get("PolicyDocument"), spec.policy):
        differ.append("identity policy")
    return _change("role", spec.name, differ, spec.resource)


def same_lifecycle(found: Sequence[Mapping[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    """The bucket holds exactly the wanted lifecycle rules (by ID), each as written; members S3
    adds of its own accord are not differences."""
    by_id = {rule.get("ID"): rule for rule in found}
    if set(by_id) != {rule["ID"] for rule in wanted}:
        return False
    return all({k: by_id[rule["ID"]].get(k) for k in rule} == rule for rule in wanted)


def _bucket_differs(clients: AwsClients, spec: BucketSpec) -> list[str]:
    s3, name = clients.s3, spec.name
    differ = []
    block = aws_lookup(
        f"s3 get-public-access-block {name}",
        lambda: s3.get_public_access_block(Bucket=name),
        "NoSuchPublicAccessBlockConfiguration",
    )
    if block is None or block.get("PublicAccessBlockConfiguration") != PUBLIC_ACCESS_BLOCK:
        differ.append("public access block")
    encryption = aws_lookup(
        f"s3 get-bucket-encryption {name}",
        lambda: s3.get_bucket_encryption(Bucket=name),
        "ServerSideEncryptionConfigurationNotFoundError",
    )
    rules = encryption["ServerSideEncryptionConfiguration"]["Rules"] if encryption else []
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    ]
    if algorithms != [SSE_ALGORITHM]:
        differ.append("encryption")
    found_policy = aws_lookup(
        f"s3 get-bucket-policy {name}",
        lambda: s3.get_bucket_policy(Bucket=name),
        "NoSuchBucketPolicy",
    )
    if found_policy is None or not same_policy(found_policy.get("Policy"), spec.policy):
        differ.append("bucket policy")
    lifecycle = aws_lookup(
        f"s3 get-bucket-lifecycle-configuration {name}",
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=name),
        "NoSuchLifecycleConfiguration",
    )
    if not same_lifecycle(lifecycle.get("Rules", []) if lifecycle else [], spec.lifecycle_rules()):
        differ.append("lifecycle")
    return differ


def plan_bucket(clients: AwsClients, spec: BucketSpec, account_id: str) -> Change:
    from botocore.exceptions import ClientError

    try:
        clients.s3.head_bucket(Bucket=spec.name, ExpectedBucketOwner=account_id)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket"):
            return Change(
                kind="bucket",
                name=spec.name,
                action="create",
                fields=BUCKET_FIELDS,
                resource=spec.resource,
            )
        if code in ("403", "AccessDenied"):
            raise AwsCallFailed(
                f"bucket {spec.name!r} exists but is not this account's (or these credentials "
                "may not read it): bucket names are global, choose another name"
            ) from None
        raise AwsCallFailed(f"s3 head-bucket {spec.name}: {code}") from None
    return _change("bucket", spec.name, _bucket_differs(clients, spec), spec.resource)


def plan(clients: AwsClients, desired: Desired) -> list[Change]:
    """Every change ``desired`` needs, in the order apply makes them (roles before buckets:
    a bucket policy names its role)."""
    changes = [plan_provider(clients, desired.provider)]
    changes += [plan_role(clients, role) for role in desired.roles]
    changes += [plan_bucket(clients, bucket, desired.account_id) for bucket in desired.buckets]
    return changes
