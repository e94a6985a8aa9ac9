"""``aws apply``: make the account's test side match the config, writing only what the plan found.

Each :class:`~broker.aws.plan.Change` names the parts that differ; only those are written, so a
run over an up-to-date account makes no write call, and a plan right after reports everything
unchanged. Order: the provider, the roles, then the buckets (a bucket policy names its role).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from broker.aws.account import AwsClients, aws_call
from broker.aws.desired import (
    PUBLIC_ACCESS_BLOCK,
    ROLE_POLICY_NAME,
    SSE_ALGORITHM,
    BucketSpec,
    Desired,
    ProviderSpec,
    RoleSpec,
)
from broker.aws.plan import Change

DEFAULT_S3_REGION = "us-east-1"  # the one region where CreateBucket takes no location


def _provider(clients: AwsClients, spec: ProviderSpec, change: Change) -> None:
    iam = clients.iam
    if change.action == "create":
        aws_call(
            f"iam create-open-id-connect-provider {spec.url}",
            lambda: iam.create_open_id_connect_provider(
                Url=spec.url,
                ClientIDList=list(spec.client_ids),
                ThumbprintList=list(spec.thumbprints),
            ),
        )
        return
    if "client ids" in change.fields:
        found = aws_call(
            f"iam get-open-id-connect-provider {spec.arn}",
            lambda: iam.get_open_id_connect_provider(OpenIDConnectProviderArn=spec.arn),
        )
        registered = set(found.get("ClientIDList", []))
        for client_id in sorted(set(spec.client_ids) - registered):
            aws_call(
                f"iam add-client-id-to-open-id-connect-provider {client_id}",
                functools.partial(
                    iam.add_client_id_to_open_id_connect_provider,
                    OpenIDConnectProviderArn=spec.arn,
                    ClientID=client_id,
                ),
            )
        for client_id in sorted(registered - set(spec.client_ids)):
            aws_call(
                f"iam remove-client-id-from-open-id-connect-provider {client_id}",
                functools.partial(
                    iam.remove_client_id_from_open_id_connect_provider,
                    OpenIDConnectProviderArn=spec.arn,
                    ClientID=client_id,
                ),
            )
    if "thumbprints" in change.fields:
        aws_call(
            f"iam update-open-id-connect-provider-thumbprint {spec.arn}",
            lambda: iam.update_open_id_connect_provider_thumbprint(
                OpenIDConnectProviderArn=spec.arn, ThumbprintList=list(spec.thumbprints)
            ),
        )


def _role(clients: AwsClients, spec: RoleSpec, change: Change) -> None:
    iam, trust = clients.iam, json.dumps(spec.trust)
    if change.action == "create":
        aws_call(
            f"iam create-role {spec.name}",
            lambda: iam.create_role(
                RoleName=spec.name,
                AssumeRolePolicyDocument=trust,
                Description=f"test-broker test role for resource {spec.resource}",
            ),
        )
    elif "trust policy" in change.fields:
        aws_call(
            f"iam update-assume-role-policy {spec.name}",
            lambda: iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=trust),
        )
    if "identity policy" in change.fields:
        aws_call(
            f"iam put-role-policy {spec.name}",
            lambda: iam.put_role_policy(
                RoleName=spec.name,
                PolicyName=ROLE_POLICY_NAME,
                PolicyDocument=json.dumps(spec.policy),
            ),
        )


def _bucket(clients: AwsClients, spec: BucketSpec, change: Change) -> None:
    s3, name = clients.s3, spec.name
    if change.action == "create":
        if clients.region == DEFAULT_S3_REGION:
            aws_call(f"s3 create-bucket {name}", lambda: s3.create_bucket(Bucket=name))
        else:
            aws_call(
                f"s3 create-bucket {name}",
                lambda: s3.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": clients.region},  # type: ignore[typeddict-item]
                ),
            )
    if "public access block" in change.fields:
        aws_call(
            f"s3 put-public-access-block {name}",
            lambda: s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK,  # type: ignore[arg-type]
            ),
        )
    if "encryption" in change.fields:
        aws_call(
            f"s3 put-bucket-encryption {name}",
            lambda: s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}
                    ]
                },
            ),
        )
    if "bucket policy" in change.fields:
        aws_call(
            f"s3 put-bucket-policy {name}",
            lambda: s3.put_bucket_policy(Bucket=name, Policy=json.dumps(spec.policy)),
        )
    if "lifecycle" in change.fields:
        aws_call(
            f"s3 put-bucket-lifecycle-configuration {name}",
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=name,
                LifecycleConfiguration={"Rules": spec.lifecycle_rules()},  # type: ignore[typeddict-item]
            ),
        )


def apply(
    clients: AwsClients,
    desired: Desired,
    changes: list[Change],
    progress: Callable[[Change], None] = lambda change: None,
) -> None:
    """Make every change of ``changes`` (from :func:`broker.aws.plan.plan`), reporting each."""
    roles = {r.name: r for r in desired.roles}
    buckets = {b.name: b for b in desired.buckets}
    for change in changes:
        if change.action != "unchanged":
            if change.kind == "oidc-provider":
                _provider(clients, desired.provider, change)
            elif change.kind == "role":
                _role(clients, roles[change.name], change)
            else:
                _bucket(clients, buckets[change.name], change)
        progress(change)
