"""``aws template``: the same test side as ``aws apply`` makes, as a CloudFormation template.

For accounts where changes go through CloudFormation. The documents are the ones ``aws plan``
compares with (:mod:`broker.aws.desired`); the ARNs inside the policies are spelled out, so the
template states which resource waits for which with ``DependsOn``.
"""

from __future__ import annotations

import re
from typing import Any

from broker.aws.desired import (
    PUBLIC_ACCESS_BLOCK,
    ROLE_POLICY_NAME,
    SSE_ALGORITHM,
    BucketSpec,
    Desired,
)

TEMPLATE_VERSION = "2010-09-09"
PROVIDER_ID = "TestOidcProvider"


def logical_id(kind: str, name: str) -> str:
    """A CloudFormation logical id (alphanumeric) for a resource of ``kind`` named ``name``."""
    words = re.split(r"[^A-Za-z0-9]+", name)
    return kind + "".join(w[:1].upper() + w[1:] for w in words)


def _lifecycle(spec: BucketSpec) -> dict[str, Any]:
    rules = [
        {
            "Id": rule["ID"],
            "Prefix": rule["Filter"]["Prefix"],
            "Status": rule["Status"],
            "ExpirationInDays": rule["Expiration"]["Days"],
            "AbortIncompleteMultipartUpload": rule["AbortIncompleteMultipartUpload"],
        }
        for rule in spec.lifecycle_rules()
    ]
    return {"Rules": rules}


def render_template(desired: Desired) -> dict[str, Any]:
    """The CloudFormation template (a JSON-ready dict) of the desired test side."""
    provider = desired.provider
    resources: dict[str, Any] = {
        PROVIDER_ID: {
            "Type": "AWS::IAM::OIDCProvider",
            "Properties": {
                "Url": provider.url,
                "ClientIdList": list(provider.client_ids),
                "ThumbprintList": list(provider.thumbprints),
            },
        }
    }
    role_ids = {}
    for role in desired.roles:
        role_ids[role.name] = logical_id("Role", role.name)
        resources[role_ids[role.name]] = {
            "Type": "AWS::IAM::Role",
            "DependsOn": [PROVIDER_ID],  # the trust policy names the provider
            "Properties": {
                "RoleName": role.name,
                "Description": f"test-broker test role for resource {role.resource}",
                "AssumeRolePolicyDocument": role.trust,
                "Policies": [{"PolicyName": ROLE_POLICY_NAME, "PolicyDocument": role.policy}],
            },
        }
    for bucket in desired.buckets:
        bucket_id = logical_id("Bucket", bucket.name)
        resources[bucket_id] = {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": bucket.name,
                "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK,
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}
                    ]
                },
                "LifecycleConfiguration": _lifecycle(bucket),
            },
        }
        resources[logical_id("BucketPolicy", bucket.name)] = {
            "Type": "AWS::S3::BucketPolicy",
            "DependsOn": [role_ids[bucket.role]],  # the policy's principal is the role
            "Properties": {"Bucket": {"Ref": bucket_id}, "PolicyDocument": bucket.policy},
        }
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"oidc-test-broker test resources for {provider.url} "
        f"(account {desired.account_id})",
        "Resources": resources,
    }
