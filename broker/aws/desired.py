"""What the test side of an AWS account should hold, derived from the config alone.

One OIDC provider for the issuer, and per configured resource a role (trust policy with
``sts:TagSession``, the scoped identity policy) and a bucket (public access blocked, SSE-S3 by
default, the scoped bucket policy, run prefixes expiring). ``aws plan`` compares this with the
account, ``aws apply`` makes the account match, ``aws template`` prints it for CloudFormation.
The policies are the ones :mod:`broker.aws.policy` renders; nothing here writes a policy.

Refusals happen here, before any AWS call: an issuer AWS cannot reach (the config itself already
refuses names without the test marker).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from broker.aws import policy
from broker.aws.policy import Document
from broker.config import Settings
from broker.config.resources import run_prefix_heads
from broker.errors import ConfigError
from broker.sts.issuer_rules import is_loopback_host

# The inline identity policy's name on each role.
ROLE_POLICY_NAME = "test-broker-scoped"
ABORT_MULTIPART_DAYS = 1
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SSE_ALGORITHM: Final = "AES256"  # SSE-S3


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    url: str
    arn: str
    client_ids: tuple[str, ...]
    thumbprints: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    resource: str
    name: str
    trust: Document
    policy: Document


@dataclass(frozen=True, kw_only=True)
class BucketSpec:
    resource: str
    name: str
    role: str  # the role its policy grants to
    policy: Document
    run_prefixes: tuple[str, ...]
    run_prefix_days: int

    def lifecycle_rules(self) -> list[dict[str, Any]]:
        """S3's lifecycle rules: run prefixes expire, unfinished multipart uploads are aborted."""
        return [
            {
                "ID": f"test-broker-expire-{prefix.strip('/').replace('/', '-')}",
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": self.run_prefix_days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
            }
            for prefix in self.run_prefixes
        ]


@dataclass(frozen=True, kw_only=True)
class Desired:
    account_id: str
    provider: ProviderSpec
    roles: tuple[RoleSpec, ...]
    buckets: tuple[BucketSpec, ...]


def public_issuer_problem(issuer: str) -> str | None:
    """Why AWS could not register and reach this issuer, or None (the config checked its shape)."""
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    if parts.scheme != "https":
        return "is not https: AWS STS fetches discovery over TLS only"
    if is_loopback_host(host):
        return "is loopback: AWS cannot reach it (a local test issuer needs no AWS side)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if "." not in host:
            return f"host {host!r} is not a public DNS name"
        return None
    if not address.is_global:
        return f"host {host} is not a public address"
    return None


def desired_state(settings: Settings, served_thumbprint: Callable[[], str]) -> Desired:
    """The test side of the account for ``settings``; ConfigError when it cannot be brought up.

    The provider's thumbprints are ``oidc_thumbprints`` when configured; otherwise
    ``served_thumbprint`` is asked (once every refusal has passed) for the one the issuer serves.
    """
    problem = public_issuer_problem(settings.oidc_issuer)
    if problem:
        raise ConfigError(
            f"oidc_issuer {settings.oidc_issuer!r} {problem}; aws plan/apply/template bring up "
            "the AWS side of a public https issuer"
        )
    account = settings.aws_account_id
    if not settings.resources or account is None:  # the config requires an account with them
        raise ConfigError(
            "no test resources are configured: add a [[resources]] table (name, role, bucket)"
        )
    thumbprints = settings.oidc_thumbprints or [served_thumbprint()]
    provider = ProviderSpec(
        url=settings.oidc_issuer,
        arn=policy.provider_arn(settings),
        client_ids=(settings.audience,),
        thumbprints=tuple(dict.fromkeys(t.lower() for t in thumbprints)),
    )
    roles = tuple(
        RoleSpec(
            resource=r.name,
            name=r.role,
            trust=policy.trust_policy(settings, r),
            policy=policy.role_policy(settings, r),
        )
        for r in settings.resources
    )
    prefixes = tuple(run_prefix_heads(settings.run_prefix_patterns))
    buckets = tuple(
        BucketSpec(
            resource=r.name,
            name=r.bucket,
            role=r.role,
            policy=policy.bucket_policy(settings, r),
            run_prefixes=prefixes,
            run_prefix_days=settings.run_prefix_days,
        )
        for r in settings.resources
    )
    return Desired(account_id=account, provider=provider, roles=roles, buckets=buckets)
