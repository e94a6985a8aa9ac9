"""`test-broker reap` on the command line: ages, output shapes, and keys S3 would not delete.

A DeleteObjects answer listing per-key errors has no local peer that produces it on demand, so
those cases stub a real boto3 client (botocore's Stubber); everything else runs on SeaweedFS in
tests/integration/test_reap.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner

from broker.aws import reap
from broker.main import main

CONFIG = """aws_account_id = "123456789012"
[[resources]]
name = "mail"
role = "mail-oidc-test"
bucket = "mail-oidc-test"
"""
OLD = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def stubbed(monkeypatch: pytest.MonkeyPatch, keys: list[str], errors: list[str]) -> Stubber:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    stub = Stubber(s3)
    contents = [{"Key": k, "Size": 10, "LastModified": OLD} for k in keys]
    stub.add_response(
        "list_objects_v2",
        {"Contents": contents, "IsTruncated": False},
        {"Bucket": "mail-oidc-test", "Prefix": ANY},
    )
    for _ in range(2):  # gh/ and gl/: nothing there
        stub.add_response(
            "list_objects_v2", {"IsTruncated": False}, {"Bucket": "mail-oidc-test", "Prefix": ANY}
        )
    failed = [{"Key": k, "Code": "AccessDenied", "Message": "Access Denied"} for k in errors]
    stub.add_response("delete_objects", {"Errors": failed} if failed else {})
    stub.activate()
    monkeypatch.setattr(reap, "default_s3", lambda: s3)
    return stub


def invoke(config_file: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["reap", "--config", str(config_file), *args])


def test_keys_s3_refused_are_listed_and_the_exit_is_1(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    stub = stubbed(monkeypatch, ["ci/a/run-1/x", "ci/a/run-1/y"], errors=["ci/a/run-1/y"])
    result = invoke(config_file)
    stub.assert_no_pending_responses()
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "failed: mail-oidc-test/ci/a/run-1/y: AccessDenied: Access Denied",
        "error: 1 objects could not be deleted",
    ]
    assert "deleted 1 objects" in result.stdout  # the summary counts what really went


def test_json_lists_the_failed_keys_too(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    stubbed(monkeypatch, ["ci/a/run-1/x", "ci/a/run-1/y"], errors=["ci/a/run-1/y"])
    result = invoke(config_file, "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert body["failed"] == [
        {
            "bucket": "mail-oidc-test",
            "key": "ci/a/run-1/y",
            "code": "AccessDenied",
            "message": "Access Denied",
        }
    ]
    assert body["buckets"] == [
        {
            "bucket": "mail-oidc-test",
            "prefixes": 1,
            "objects": 1,
            "bytes": 10,
            "run_prefixes": ["ci/a/run-1"],
        }
    ]


def test_no_progress_bar_unless_stderr_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    stubbed(monkeypatch, ["ci/a/run-1/x"], errors=[])
    result = invoke(config_file)
    assert (result.exit_code, result.stderr) == (0, "")


@pytest.mark.parametrize(("age", "seconds"), [("7d", 604800), ("12h", 43200), ("90", 90), ("0", 0)])
def test_older_than_reads_days_hours_minutes_seconds(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, age: str, seconds: int
) -> None:
    stubbed(monkeypatch, [], errors=[])
    result = invoke(config_file, "--older-than", age, "--now", "1000000", "--json", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cutoff"] == 1000000 - seconds


@pytest.mark.parametrize("age", ["7w", "-1d", "d", "1.5h"])
def test_a_bad_age_is_a_usage_error(config_file: Path, age: str) -> None:
    result = invoke(config_file, "--older-than", age)
    assert result.exit_code == 2
    assert "is not an age such as 7d" in result.stderr


def test_the_default_age_is_run_prefix_days(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    config_file.write_text("run_prefix_days = 3\n" + CONFIG)
    stubbed(monkeypatch, [], errors=[])
    result = invoke(config_file, "--now", "1000000", "--json")
    assert json.loads(result.stdout)["cutoff"] == 1000000 - 3 * 86400
