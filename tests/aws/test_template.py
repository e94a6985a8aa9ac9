"""`aws template`: the bring-up as a CloudFormation template, checked by AWS's own linter."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.main import main
from broker.net.fetch_guard import Guard
from tests.aws.bringup_config import BUCKETS, ISSUER, ROLES, THUMBPRINT, write_config
from tests.doctor.doctor_fixtures import ToLoopback, crafted_issuer

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


def _served_by(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    # The address override: the issuer's name reaches the loopback test server, as DNS would.
    def for_issuer(cls: type[Guard], issuer: str, resolver: Any = None) -> Guard:
        return ToLoopback(allow_loopback=False, port=port)

    monkeypatch.setattr(Guard, "for_issuer", classmethod(for_issuer))


def test_without_oidc_thumbprints_the_served_top_intermediate_is_registered(
    tls_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    intermediate = tls_ca.create_child_ca()
    chain = intermediate.issue_cert("oidc-test.example.com").private_key_and_cert_chain_pem
    config = write_config(tmp_path, oidc_thumbprints=[])
    with crafted_issuer(chain.bytes(), lambda url: {}, host="oidc-test.example.com") as url:
        _served_by(monkeypatch, urlsplit(url).port or 0)
        done = CliRunner().invoke(main, ["aws", "template", "--config", str(config)])
    assert done.exit_code == 0, done.output
    [provider] = [
        r["Properties"]
        for r in json.loads(done.stdout)["Resources"].values()
        if r["Type"] == "AWS::IAM::OIDCProvider"
    ]
    served = x509.load_pem_x509_certificate(intermediate.cert_pem.bytes())
    thumbprint = served.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - IAM's own
    assert provider["ThumbprintList"] == [thumbprint]
    assert f"note: OIDC thumbprint {thumbprint} is the top intermediate CA" in done.stderr


def test_no_served_chain_and_no_oidc_thumbprints_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, oidc_thumbprints=[])
    argv = ["aws", "template", "--config", str(config)]
    with socket.socket() as closed:  # a port of ours that refuses connections
        closed.bind(("127.0.0.1", 0))
        _served_by(monkeypatch, closed.getsockname()[1])
        done = CliRunner().invoke(main, argv)
        as_json = CliRunner().invoke(main, [*argv, "--json"])
    assert done.exit_code == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot compute the OIDC thumbprint of https://oidc-test")
    assert "set oidc_thumbprints" in line
    assert (as_json.exit_code, json.loads(as_json.stdout)["error"]) == (2, "config_error")
