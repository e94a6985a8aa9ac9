"""The AWS account the bring-up talks to: its clients, and the check that it is the configured one.

Credentials, region and endpoints come from the usual AWS environment (``AWS_PROFILE``,
``AWS_ENDPOINT_URL_IAM`` / ``_S3`` / ``_STS`` for a local stand-in such as moto). The account
check is the first and, when it fails, the only call: a configured account id that differs from
the caller's means these credentials would change some other account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from broker.client.aws_access import DEFAULT_REGION
from broker.errors import AccountMismatch, AwsCallFailed, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

T = TypeVar("T")


@dataclass(frozen=True)
class AwsClients:
    iam: IAMClient
    s3: S3Client
    sts: STSClient
    region: str

    @classmethod
    def from_environment(cls, region: str | None = None) -> AwsClients:
        import boto3
        from botocore.exceptions import BotoCoreError

        try:
            session = boto3.Session(region_name=region)
            chosen = session.region_name or DEFAULT_REGION
            return cls(
                iam=session.client("iam", region_name=chosen),
                s3=session.client("s3", region_name=chosen),
                sts=session.client("sts", region_name=chosen),
                region=chosen,
            )
        except BotoCoreError as exc:  # a bad region name or profile
            raise ConfigError(f"cannot set up the AWS clients: {exc}") from None


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _failure(what: str, exc: Exception) -> AwsCallFailed:
    response = getattr(exc, "response", None)
    if response is None:  # BotoCoreError: no credentials, endpoint unreachable
        return AwsCallFailed(f"{what}: {exc}")
    message = response.get("Error", {}).get("Message", exc)
    return AwsCallFailed(f"{what}: {error_code(exc) or 'error'}: {message}")


def aws_call(what: str, call: Callable[[], T]) -> T:
    """Run one AWS call; its failure becomes AwsCallFailed naming the call and AWS's answer."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        return call()
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # the last: not AWS talking
        raise _failure(what, exc) from None


def aws_lookup(what: str, call: Callable[[], T], *missing: str) -> T | None:
    """Like :func:`aws_call`, but None when AWS answers with one of the ``missing`` codes."""
    from botocore.exceptions import ClientError

    def answer() -> T | None:
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) in missing:
                return None
            raise

    return aws_call(what, answer)


def check_account(clients: AwsClients, expected: str) -> None:
    """Refuse unless the caller's account is ``expected`` (sts get-caller-identity)."""
    identity = aws_call("sts get-caller-identity", clients.sts.get_caller_identity)
    actual = identity.get("Account")
    if actual != expected:
        raise AccountMismatch(
            f"the AWS credentials are for account {actual}, the config's aws_account_id is "
            f"{expected}: use credentials of the test account, or fix aws_account_id"
        )
