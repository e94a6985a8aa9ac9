"""`aws template`: the bring-up as a CloudFormation template, checked by AWS's own linter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.aws.bringup_config import BUCKETS, ISSUER, ROLES, THUMBPRINT, write_config

pytestmark = pytest.mark.integration

CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def template(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "broker", "aws", "template", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no AWS credentials or endpoints: it needs none
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def lint(doc: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(doc, indent=2))
    return subprocess.run(
        [CFN_LINT, "--regions", "us-east-1", "--", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_template_passes_cfn_lint_and_holds_every_resource(tmp_path: Path) -> None:
    doc = template(write_config(tmp_path))
    done = lint(doc, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in doc["Resources"].values():
        by_type.setdefault(resource["Type"], []).append(resource["Properties"])
    [provider] = by_type["AWS::IAM::OIDCProvider"]
    assert provider == {
        "Url": ISSUER,
        "ClientIdList": ["sts.amazonaws.com"],
        "ThumbprintList": [THUMBPRINT],
    }
    roles = {r["RoleName"]: r for r in by_type["AWS::IAM::Role"]}
    assert set(roles) == set(ROLES.values())
    [trust] = roles[ROLES["mail"]]["AssumeRolePolicyDocument"]["Statement"]
    assert "sts:TagSession" in trust["Action"]
    buckets = {b["BucketName"]: b for b in by_type["AWS::S3::Bucket"]}
    assert set(buckets) == set(BUCKETS.values())
    rules = buckets[BUCKETS["vault"]]["LifecycleConfiguration"]["Rules"]
    assert {(r["Prefix"], r["ExpirationInDays"]) for r in rules} == {
        ("ci/", 7),
        ("gh/", 7),
        ("gl/", 7),
    }
    policies = by_type["AWS::S3::BucketPolicy"]
    principals = {s["Principal"]["AWS"] for p in policies for s in p["PolicyDocument"]["Statement"]}
    assert principals == {f"arn:aws:iam::123456789012:role/{r}" for r in ROLES.values()}


def test_cfn_lint_does_catch_a_broken_template(tmp_path: Path) -> None:
    # The negative control: the linter really reads these documents.
    doc = template(write_config(tmp_path))
    bucket = next(r for r in doc["Resources"].values() if r["Type"] == "AWS::S3::Bucket")
    bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ]["SSEAlgorithm"] = "ROT13"
    done = lint(doc, tmp_path)
    assert done.returncode != 0
    assert "ROT13" in done.stdout
