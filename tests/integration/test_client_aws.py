"""broker.client's AWS side on SeaweedFS: a self-refreshing session and run-prefix cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from broker.aws.verify import PROBE_OBJECT
from broker.client import Client, MintedToken, config_from_env
from broker.client.tokens import TokenCache
from broker.errors import ScopeNotAllowed
from tests.seaweed_harness import BUCKET, FOREIGN_PREFIX, SeaweedStack

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_env(seaweed: SeaweedStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Endpoints as the SDKs read them; no ambient credentials or config files."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", seaweed.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    monkeypatch.setenv("SSL_CERT_FILE", str(seaweed.ca_file))  # the broker's private CA
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("AWS_") and "ENDPOINT" not in n]:
        monkeypatch.delenv(name)


@pytest.fixture
def client(seaweed: SeaweedStack, aws_env: None) -> Iterator[Client]:
    config = config_from_env(
        {},
        url=seaweed.broker.url,
        federation_proof=True,
        role_arn=seaweed.role_arn(),
        bucket=BUCKET,
    )
    with contextlib.closing(Client(config)) as made:
        yield made


def _keys(seaweed: SeaweedStack, prefix: str) -> list[str]:
    listed = seaweed.admin_s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_the_session_works_in_the_run_scope_and_cleanup_empties_only_it(
    seaweed: SeaweedStack, client: Client
) -> None:
    scope = client.run_scope()
    s3 = client.aws_session().client("s3")
    keys = [f"{scope}/a.txt", f"{scope}/deep/er/b.txt", *(f"{scope}/many/{i}" for i in range(5))]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    neighbour = f"{client.namespace().home}/{PROBE_OBJECT}"  # same wallet, outside the run
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.get_object(Bucket=BUCKET, Key=f"{FOREIGN_PREFIX}{PROBE_OBJECT}")
    assert _keys(seaweed, scope + "/") == sorted(keys)
    assert client.cleanup_scope() == len(keys)
    assert _keys(seaweed, scope + "/") == []
    assert client.cleanup_scope() == 0  # idempotent
    assert _keys(seaweed, neighbour) == [neighbour]
    assert _keys(seaweed, FOREIGN_PREFIX) == [f"{FOREIGN_PREFIX}{PROBE_OBJECT}"]


def test_cleanup_refuses_a_foreign_prefix_before_touching_aws(client: Client) -> None:
    with pytest.raises(ScopeNotAllowed, match="outside this caller's scope"):
        client.cleanup_scope(FOREIGN_PREFIX)


def test_session_credentials_come_from_a_fresh_mint_each_time_they_are_fetched(
    client: Client,
) -> None:
    client.run_scope()  # learning the namespace mints once; not what is counted here
    minted: list[str] = []
    mint = client.api.mint

    def counted(scope: str | None = None, ttl: int | None = None):  # type: ignore[no-untyped-def]
        token = mint(scope, ttl)
        minted.append(token.jti)
        return token

    client.tokens = TokenCache(counted)  # empty: as once the cached token is past refreshing
    session = client.aws_session()
    assert minted == []  # deferred: nothing happens before the first AWS call
    session.client("sts").get_caller_identity()
    assert len(minted) == 1


SUBPROCESS = """
import sys
from broker.client import aws_session, cleanup_scope, run_scope
s3 = aws_session().client("s3")
s3.put_object(Bucket=sys.argv[1], Key=run_scope() + "/x.txt", Body=b"x")
print(run_scope(), cleanup_scope())
"""


def test_the_module_functions_read_the_environment_contract(
    seaweed: SeaweedStack, aws_env: None
) -> None:
    env = {
        **os.environ,
        "TEST_BROKER_URL": seaweed.broker.url,
        "TEST_BROKER_AUTH_TOKEN": "federation-proof",
        "TEST_BROKER_ROLE_ARN": seaweed.role_arn(),
        "TEST_BROKER_BUCKET": BUCKET,
    }
    done = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, BUCKET],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    scope, deleted = done.stdout.split()
    assert (scope.startswith(f"{seaweed.wallet()}/local-"), deleted) == (True, "1")


def test_a_ci_run_cleans_a_prefix_below_its_run_scope_with_the_run_s_token(
    seaweed: SeaweedStack,
    aws_env: None,
    broker_cli: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"ci{secrets.token_hex(4)}"
    added = broker_cli(
        "credentials",
        "add",
        "--kind",
        "ci",
        "--name",
        name,
        "--scope-pattern",
        f"ci/{name}/pr-*/run-*",
        "--json",
    )
    for var, value in {
        "GITHUB_RUN_ID": "34",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REF": "refs/pull/12/merge",
    }.items():
        monkeypatch.setenv(var, value)
    config = config_from_env(
        {},
        url=seaweed.broker.url,
        bearer=json.loads(added)["secret"],
        role_arn=seaweed.role_arn(),
        bucket=BUCKET,
    )
    with contextlib.closing(Client(config)) as client:
        run = client.run_scope()
        assert run == f"ci/{name}/pr-12/run-34-1"
        s3 = client.aws_session().client("s3")
        for key in (f"{run}/sub/a", f"{run}/sub/b", f"{run}/kept"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        assert client.cleanup_scope(f"{run}/sub") == 2
        assert _keys(seaweed, run + "/") == [f"{run}/kept"]
        assert client.cleanup_scope() == 1


def test_expiring_session_credentials_are_refreshed_with_a_new_token(client: Client) -> None:
    # 900 s, STS's shortest session, is inside botocore's 15-minute advisory window: every AWS
    # call refreshes the credentials, calling the token loader (get_test_jwt) again.
    client.run_scope()
    minted: list[str] = []
    now = [time.time()]

    def counted(scope: str | None = None, ttl: int | None = None) -> MintedToken:
        token = client.api.mint(scope, ttl)
        minted.append(token.jti)
        return token

    client.tokens = TokenCache(counted, clock=lambda: now[0])
    sts = client.aws_session(ttl=60, duration_seconds=900).client("sts")
    first = sts.get_caller_identity()["Arn"]
    sts.get_caller_identity()
    assert len(minted) == 1  # the cached token was still good for the second refresh
    now[0] += 60  # past the token's refresh point: the next refresh needs a new one
    assert sts.get_caller_identity()["Arn"] == first
    assert len(minted) == 2
