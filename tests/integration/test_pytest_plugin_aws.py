"""The plugin's aws_session on SeaweedFS: the run's prefix is gone after the session, pass or fail."""

from __future__ import annotations

import os
from pathlib import Path

import httpcore  # noqa: F401 - before pytester runs: see tests/testing/test_pytest_plugin.py
import pytest

from tests.seaweed_harness import BUCKET, SeaweedStack

pytestmark = pytest.mark.integration

WRITES_THEN_FAILS = """
import pathlib

def _write(aws_session, run_scope, name):
    s3 = aws_session.client("s3")
    key = f"{run_scope}/{name}.txt"
    s3.put_object(Bucket="%(bucket)s", Key=key, Body=b"x")
    assert s3.get_object(Bucket="%(bucket)s", Key=key)["Body"].read() == b"x"
    with open(pathlib.Path(__file__).with_name("written.txt"), "a") as out:
        out.write(key + "\\n")

def test_passes(aws_session, run_scope):
    _write(aws_session, run_scope, "passed")

# Last, so that only its own teardown can have deleted what it wrote.
def test_fails_after_writing(aws_session, run_scope):
    _write(aws_session, run_scope, "failed")
    raise AssertionError("this test fails after writing")
"""


def test_the_run_prefix_is_deleted_even_after_a_failing_test(
    pytester: pytest.Pytester, seaweed: SeaweedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("AWS_", "TEST_BROKER_"))]:
        monkeypatch.delenv(name)
    env = {
        # remote mode: the stack's broker, its federation-proof flow, its role and bucket
        "TEST_BROKER_URL": seaweed.broker.url,
        "TEST_BROKER_AUTH_TOKEN": "federation-proof",
        "TEST_BROKER_ROLE_ARN": seaweed.role_arn(),
        "TEST_BROKER_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_STS": seaweed.endpoint,
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "SSL_CERT_FILE": str(seaweed.ca_file),
        "HOME": str(pytester.path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(WRITES_THEN_FAILS % {"bucket": BUCKET})
    pytester.runpytest_subprocess().assert_outcomes(passed=1, failed=1)
    written = Path(pytester.path / "written.txt").read_text().split()
    assert [key.rsplit("/", 1)[1] for key in written] == ["passed.txt", "failed.txt"]
    scope = written[0].rsplit("/", 1)[0]
    assert scope.startswith(f"{seaweed.wallet()}/local-")
    listed = seaweed.admin_s3().list_objects_v2(Bucket=BUCKET, Prefix=scope + "/")
    assert listed.get("Contents", []) == []
