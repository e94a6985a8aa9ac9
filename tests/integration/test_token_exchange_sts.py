"""Token exchange end to end on a real STS + S3 (SeaweedFS), with no stored secret anywhere.

A stand-in GitHub Actions provider (https, its own CA) signs a pull-request job's token; the
broker, trusting that provider, exchanges it for a token whose scope is built from the job's
claims; that token assumes the test role and reads and writes its own run prefix, while another
repository's prefix is denied (by the bucket policy, not by the broker).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from broker.aws.verify import PROBE_OBJECT
from broker.main import main
from broker.testing.ci_issuer import StandInIssuer, stand_in_issuer
from tests.integration.conftest import write_token
from tests.seaweed_harness import BUCKET, SeaweedStack, seaweed_stack

pytestmark = pytest.mark.integration

AUD = "https://test-broker.example.org"
TEMPLATE = "gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}"
OTHER_REPOSITORY_RUN = "gh/acme/other/pr-3/run-9-1"


@pytest.fixture(scope="module")
def github() -> Iterator[StandInIssuer]:
    with stand_in_issuer(trustme.CA(), preset="github-actions") as issuer:
        yield issuer


@pytest.fixture(scope="module")
def stack(github: StandInIssuer) -> Iterator[SeaweedStack]:
    table = github.table(
        AUD,
        conditions={"repository_owner": "acme", "event_name": "pull_request"},
        scope_template=TEMPLATE,
    )
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("BROKER_")]:
            env.delenv(name)
        with seaweed_stack(trusted_issuers=[table], rate_limits=False) as sw:
            # Another repository's run holds an object: its prefix must still be denied.
            key = f"{OTHER_REPOSITORY_RUN}/{PROBE_OBJECT}"
            sw.admin_s3().put_object(Bucket=BUCKET, Key=key, Body=b"other repository")
            yield sw


def exchanged(stack: SeaweedStack, token: str) -> dict[str, Any]:
    reply = stack.broker.client.post(
        "/v1/token-exchange",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def verify(stack: SeaweedStack, token_file: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.admin_keys[0])  # only to check the probe exists
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.admin_keys[1])
    argv = [
        "verify",
        "--json",
        "--token-file",
        token_file,
        "--sts-endpoint-url",
        stack.endpoint,
        "--s3-endpoint-url",
        stack.endpoint,
        "--role-arn",
        stack.role_arn(),
        "--bucket",
        BUCKET,
        "--foreign-prefix",
        OTHER_REPOSITORY_RUN + "/",
    ]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, json.loads(result.stdout)


def test_an_exchanged_job_token_reaches_its_run_prefix_and_not_another_repositorys(
    stack: SeaweedStack, github: StandInIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = github.token(AUD, repository="acme/app", run_id="34", run_attempt="1")
    body = exchanged(stack, job)
    assert body["scope"] == "gh/acme/app/pr-12/run-34-1"
    code, report = verify(stack, write_token(tmp_path, body["access_token"]), monkeypatch)
    steps = {s["name"]: s["outcome"] for s in report["steps"]}
    assert (code, report["isolated"]) == (0, True), report
    assert report["scope"] == "gh/acme/app/pr-12/run-34-1"
    assert steps["assume role"] == "allowed"
    assert steps["put own"] == steps["get own"] == steps["list own"] == "allowed"
    assert steps["get foreign"] == steps["list foreign"] == "denied"


def test_the_other_repositorys_own_job_reaches_its_prefix(
    stack: SeaweedStack, github: StandInIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same policy lets the other repository into its own run: the denial above is isolation.
    job = github.token(AUD, repository="acme/other", ref="refs/pull/3/merge", run_id="9")
    body = exchanged(stack, job)
    assert body["scope"] == OTHER_REPOSITORY_RUN
    _, report = verify(stack, write_token(tmp_path, body["access_token"]), monkeypatch)
    steps = {s["name"]: s["outcome"] for s in report["steps"]}
    assert steps["get own"] == "allowed"
