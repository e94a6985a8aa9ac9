"""Using a broker from a test run: tokens, the run scope, AWS sessions and cleanup.

What belongs here: everything a CI job, a developer's shell or a test suite needs to get scoped
AWS access from a broker — the environment contract, minting with retries, the token cache, run
scopes, token files and the ``--`` runner, a self-refreshing boto3 session, run-prefix cleanup.
It never imports the server stack (starlette, uvicorn) or the broker's own config, store and
callers (import-linter, pyproject.toml; tests/client/test_import_set.py).

    from broker.client import get_test_jwt, run_scope, aws_session, cleanup_scope
    s3 = aws_session().client("s3")            # TEST_BROKER_URL, _BEARER, _ROLE_ARN from env
    s3.put_object(Bucket=bucket, Key=f"{run_scope()}/x", Body=b"1")
    cleanup_scope()                            # deletes the run's prefix in TEST_BROKER_BUCKET
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.client.api import Client, Namespace, default_client
from broker.client.broker_api import BrokerApi, MintedToken
from broker.client.environment import ClientConfig, config_from_env

if TYPE_CHECKING:
    import boto3

__all__ = [
    "BrokerApi",
    "Client",
    "ClientConfig",
    "MintedToken",
    "Namespace",
    "aws_session",
    "cleanup_scope",
    "config_from_env",
    "default_client",
    "get_test_jwt",
    "run_scope",
]


def get_test_jwt(scope: str | None = None, ttl: int | None = None) -> str:
    """A JWT for ``scope`` (default: the run scope); cached, replaced before it expires."""
    return default_client().get_test_jwt(scope, ttl)


def run_scope() -> str:
    """This run's scope: TEST_BROKER_SCOPE, the CI run, or ``<namespace>/local-<stamp>-<rand>``."""
    return default_client().run_scope()


def aws_session(scope: str | None = None, *, ttl: int | None = None) -> boto3.Session:
    """A boto3 Session for ``scope`` whose credentials refresh themselves by minting again."""
    return default_client().aws_session(scope, ttl=ttl)


def cleanup_scope(prefix: str | None = None, *, bucket: str | None = None) -> int:
    """Delete the run's prefix (or ``prefix``, inside the caller's scope) in the test bucket."""
    return default_client().cleanup_scope(prefix, bucket=bucket)
