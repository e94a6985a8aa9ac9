"""The upstream §4.5 proof on a real STS + S3 (SeaweedFS): own scope allowed, 0xdeadbeef/ denied.

SeaweedFS is laxer than AWS on several token rules, so only rejections it really performs are
asserted here; the broker's own rule tests are the authority on token shape.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import ECKey

from broker.aws.verify import read_claims
from broker.main import main
from broker.store.keys import KeyStore
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM, TAGS_CLAIM
from broker.testing.live import wait_until
from tests.integration.conftest import VerifyRun, write_token
from tests.seaweed_harness import (
    BROAD_ROLE,
    BUCKET,
    FOREIGN_PREFIX,
    REGION,
    UNTAGGED_TRUST_ROLE,
    SeaweedStack,
)
from tests.server.test_upstream_script import run_upstream_proof

pytestmark = pytest.mark.integration

EXPECTED = {
    "token": "allowed",
    "assume role": "allowed",
    "put own": "allowed",
    "get own": "allowed",
    "list own": "allowed",
    "get foreign": "denied",
    "list foreign": "denied",
}


@pytest.fixture(autouse=True)
def _seeder_credentials(seaweed: SeaweedStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify checks the foreign probe exists with the caller's own credentials: the seeder's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.admin_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.admin_keys[1])
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["outcome"] for s in report["steps"]}


def federation_token(seaweed: SeaweedStack, proof: str = "federation-proof") -> str:
    client = seaweed.broker.client
    session = client.post("/session/create", json={"auth_token": proof}).json()["session"]
    reply = client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {session}"})
    return str(reply.json()["jwt"])


def sign(seaweed: SeaweedStack, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the broker's active key (or ``key=``), with header overrides."""
    snapshot = KeyStore.for_settings(seaweed.settings).snapshot()
    key = header.pop("key", snapshot.signing_key)
    head = {"alg": snapshot.active.alg, "kid": snapshot.active.kid, "typ": "JWT"} | header
    return jwt.encode(head, claims, key, algorithms=[head["alg"]])


# -- each caller kind: own scope allowed, foreign denied ----------------------------------------


def test_federation_proof_caller_is_isolated(run_verify: VerifyRun, seaweed: SeaweedStack) -> None:
    code, report = run_verify()
    assert (code, report["isolated"]) == (0, True), report
    assert outcomes(report) == EXPECTED
    assert report["scope"] == seaweed.wallet()
    assert all(s["ms"] >= 0 for s in report["steps"])


@pytest.mark.parametrize(
    ("kind", "name", "extra", "scope"),
    [
        ("ci", "web", ["--scope-pattern", "ci/web/pr-*/run-*"], "ci/web/pr-12/run-34"),
        ("dev", "alice", [], None),
    ],
    ids=["ci-bearer", "personal-secret"],
)
def test_secret_callers_are_isolated(
    run_verify: VerifyRun,
    broker_cli: Callable[..., str],
    tmp_path: Path,
    kind: str,
    name: str,
    extra: list[str],
    scope: str | None,
) -> None:
    added = json.loads(
        broker_cli("credentials", "add", "--kind", kind, "--name", name, *extra, "--json")
    )
    bearer = tmp_path / "bearer"
    bearer.write_text(added["secret"])
    code, report = run_verify("--bearer-file", str(bearer), *(["--scope", scope] if scope else []))
    assert (code, report["isolated"]) == (0, True), report
    assert report["scope"] == (scope or f"dev/{name}")
    assert outcomes(report) == EXPECTED


def test_upstream_proof_sequence_as_typed(
    seaweed: SeaweedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """curl /session/create, curl mint, jq the wallet, then assume and list with boto3's env chain."""
    out = run_upstream_proof(seaweed.broker.url, CURL_CA_BUNDLE=str(seaweed.ca_file))
    token_file = tmp_path / "web-identity.jwt"
    token_file.write_text(out["JWT"])
    for name, value in {
        "AWS_ROLE_ARN": seaweed.role_arn(),
        "AWS_ROLE_SESSION_NAME": "upstream-proof",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ENDPOINT_URL_STS": seaweed.endpoint,
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    s3 = boto3.Session().client("s3")
    own = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{out['WALLET']}/")
    assert [o["Key"].split("/")[0] for o in own.get("Contents", [])] == [out["WALLET"]]
    with pytest.raises(ClientError) as denied:
        s3.list_objects_v2(Bucket=BUCKET, Prefix=FOREIGN_PREFIX)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


# -- tokens SeaweedFS's STS must reject ---------------------------------------------------------


def _unpublished_key(seaweed: SeaweedStack, claims: dict[str, Any]) -> str:
    return sign(seaweed, claims, key=ECKey.generate_key("P-256", private=True))


def _unknown_kid(seaweed: SeaweedStack, claims: dict[str, Any]) -> str:
    return sign(seaweed, claims, key=ECKey.generate_key("P-256", private=True), kid="not-published")


def _tampered(seaweed: SeaweedStack, claims: dict[str, Any]) -> str:
    """A good token whose payload is swapped for one claiming the foreign scope."""
    head, _, sig = sign(seaweed, claims).split(".")
    tag = seaweed.settings.scope_tag
    forged = claims | {SEAWEEDFS_TAGS_CLAIM: {tag: [FOREIGN_PREFIX.rstrip("/")]}}
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


def _wrong_aud(seaweed: SeaweedStack, claims: dict[str, Any]) -> str:
    return sign(seaweed, claims | {"aud": "someone-else"})


def _wrong_iss(seaweed: SeaweedStack, claims: dict[str, Any]) -> str:
    return sign(seaweed, claims | {"iss": claims["iss"] + "/"})


@pytest.mark.parametrize(
    ("forge", "cause"),
    [
        (_unpublished_key, "signed by an unpublished key"),
        (_unknown_kid, "kid is not in the issuer's JWKS"),
        (_tampered, "altered after signing"),
        (_wrong_aud, "trust policy"),
        (_wrong_iss, "trust policy"),
    ],
    ids=["unpublished-key", "unknown-kid", "tampered-payload", "wrong-aud", "wrong-iss"],
)
def test_forged_tokens_are_refused_by_sts_and_explained(
    seaweed: SeaweedStack,
    run_verify: VerifyRun,
    tmp_path: Path,
    forge: Callable[[SeaweedStack, dict[str, Any]], str],
    cause: str,
) -> None:
    claims = read_claims(federation_token(seaweed))
    token_file = write_token(tmp_path, forge(seaweed, claims))
    code, report = run_verify("--token-file", token_file)
    assert (code, report["isolated"]) == (1, False)
    steps = outcomes(report)
    assert list(steps) == ["token", "assume role"], report
    assert steps["assume role"] != "allowed"
    assert cause in " ".join(report["diagnosis"]), report
    forged_iss = read_claims(Path(token_file).read_text())["iss"]
    assert report["next_command"] == f"test-broker doctor --issuer {forged_iss}"


# -- key rotation -------------------------------------------------------------------------------


def test_rotation_new_tokens_assume_and_old_ones_still_do(
    seaweed: SeaweedStack, run_verify: VerifyRun, broker_cli: Callable[..., str], tmp_path: Path
) -> None:
    before = federation_token(seaweed)
    # The harness's keys were published an hour ago, so the rotation may promote next at once
    # (a second rotation now would be refused: no verifier can have seen the newest key yet).
    broker_cli("keys", "rotate")
    active = KeyStore.for_settings(seaweed.settings).snapshot().active.kid
    wait_until(lambda: _kid(federation_token(seaweed)) == active)
    after = federation_token(seaweed)
    assert _kid(before) != _kid(after)
    for token in (after, before):
        code, report = run_verify("--token-file", write_token(tmp_path, token))
        assert (code, report["isolated"]) == (0, True), report


def _kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


# -- the two misconfigurations the upstream docs warn about -------------------------------------


def test_broad_grant_is_caught_by_the_negative_control(run_verify: VerifyRun) -> None:
    code, report = run_verify(role=BROAD_ROLE)
    assert (code, report["isolated"]) == (1, False)
    assert outcomes(report) == EXPECTED | {"get foreign": "allowed"}
    text = " ".join(report["diagnosis"])
    assert "broader grant masks tag isolation" in text
    assert f"s3:GetObject (or s3:*) on arn:aws:s3:::{BUCKET}/*" in text


def test_token_without_tags_is_denied_both_ways_and_explained(
    seaweed: SeaweedStack, run_verify: VerifyRun, tmp_path: Path
) -> None:
    claims = read_claims(federation_token(seaweed))
    untagged = {k: v for k, v in claims.items() if k not in (TAGS_CLAIM, SEAWEEDFS_TAGS_CLAIM)}
    token_file = write_token(tmp_path, sign(seaweed, untagged))
    # A role whose trust policy does not require the tag lets it in; S3 then denies everything.
    code, report = run_verify("--token-file", token_file, role=UNTAGGED_TRUST_ROLE)
    assert (code, report["isolated"]) == (1, False)
    assert outcomes(report) == EXPECTED | {n: "denied" for n in ("put own", "get own", "list own")}
    text = " ".join(report["diagnosis"])
    assert "both scopes are denied" in text
    assert "the token has no tags claim" in text
    # The rendered trust policy (Null condition on the tag) refuses the same token at STS.
    code, report = run_verify("--token-file", token_file)
    assert outcomes(report)["assume role"] == "denied"
    assert "trust policy" in " ".join(report["diagnosis"])


def test_verify_prints_a_step_table_with_timings(seaweed: SeaweedStack) -> None:
    args = ["verify", "--broker-url", seaweed.broker.url, "--ca-bundle", str(seaweed.ca_file)]
    args += ["--sts-endpoint-url", seaweed.endpoint, "--s3-endpoint-url", seaweed.endpoint]
    args += ["--role-arn", seaweed.role_arn(), "--bucket", BUCKET]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    header, _rule, *rows = result.stdout.splitlines()[:9]
    assert header.split() == ["STEP", "RESULT", "EXPECTED", "OK", "MS", "DETAIL"]
    assert [r.split("  ")[0] for r in rows] == list(EXPECTED)
    assert f"scope {seaweed.wallet()}: isolated (" in result.stdout


# -- the foreign probe must exist for a denied read to mean anything ------------------------------

UNSEEDED = "0xfeedface/"  # no object was ever written here


def test_denied_read_of_a_missing_foreign_probe_is_unproven(run_verify: VerifyRun) -> None:
    """On AWS a broad GetObject grant answers a missing key with AccessDenied (no ListBucket),
    exactly like a correct role; so without the object the proof must not claim isolation."""
    code, report = run_verify("--foreign-prefix", UNSEEDED)
    assert (code, report["isolated"]) == (1, False), report
    assert outcomes(report) == EXPECTED | {"get foreign": "unproven"}
    get_foreign = next(s for s in report["steps"] if s["name"] == "get foreign")
    assert "it does not exist" in get_foreign["detail"]
    assert "not known to exist" in " ".join(report["diagnosis"])


def test_broad_grant_with_a_missing_foreign_probe_is_not_isolated(run_verify: VerifyRun) -> None:
    code, report = run_verify("--foreign-prefix", UNSEEDED, role=BROAD_ROLE)
    assert (code, report["isolated"]) == (1, False), report
    # SeaweedFS answers NoSuchKey here (AWS: AccessDenied); neither may count as denied.
    assert outcomes(report)["get foreign"] in ("allowed", "unproven")


def test_without_own_credentials_the_foreign_probe_is_unproven(
    run_verify: VerifyRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, report = run_verify()
    assert (code, report["isolated"]) == (1, False), report
    assert outcomes(report) == EXPECTED | {"get foreign": "unproven"}
    get_foreign = next(s for s in report["steps"] if s["name"] == "get foreign")
    assert "no AWS credentials of your own" in get_foreign["detail"]
    # A CI job without credentials of its own says the probe was seeded at bring-up.
    code, report = run_verify("--probe-seeded")
    assert (code, report["isolated"]) == (0, True), report
    get_foreign = next(s for s in report["steps"] if s["name"] == "get foreign")
    assert "asserted with --probe-seeded" in get_foreign["detail"]
