"""boto3 for a test run: a session that keeps itself in credentials, and run-prefix cleanup.

Imported only when used, so ``import broker.client`` does not pay for boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.credentials import (
    AssumeRoleWithWebIdentityCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)

from broker.errors import BrokerError

DEFAULT_REGION = "us-east-1"  # STS needs one; the test stand-ins accept any


class _WebIdentity(CredentialProvider):
    METHOD = "assume-role-with-web-identity"

    def __init__(self, fetcher: AssumeRoleWithWebIdentityCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> Credentials:
        # Deferred: nothing is minted or assumed until the first AWS call; botocore refreshes
        # before the STS credentials expire, calling the token loader (a mint) again.
        return DeferredRefreshableCredentials(
            refresh_using=self._fetcher.fetch_credentials, method=self.METHOD
        )


def web_identity_session(
    load_token: Callable[[], str], *, role_arn: str, name: str, duration_seconds: int | None = None
) -> boto3.Session:
    """A boto3 Session whose only credentials are AssumeRoleWithWebIdentity with ``load_token``.

    Endpoints come from the SDK's own AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL_S3.
    """
    core = botocore.session.get_session()
    if core.get_config_variable("region") is None:
        core.set_config_variable("region", DEFAULT_REGION)
    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=core.create_client,
        web_identity_token_loader=load_token,
        role_arn=role_arn,
        extra_args={"RoleSessionName": name}
        | ({"DurationSeconds": duration_seconds} if duration_seconds else {}),
    )
    core.register_component("credential_provider", CredentialResolver([_WebIdentity(fetcher)]))
    return boto3.Session(botocore_session=core)


def delete_prefix(session: boto3.Session, bucket: str, prefix: str) -> int:
    """Delete every object whose key starts with ``prefix``; how many were deleted."""
    s3 = session.client("s3")
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys: list[Any] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if not keys:
            continue
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            raise BrokerError(
                f"could not delete {len(errors)} object(s) under s3://{bucket}/{prefix}: "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        deleted += len(keys)
    return deleted
