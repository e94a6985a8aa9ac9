"""`aws plan | apply` against moto in server mode: refusals, create, update, the idempotent rerun.

The CLI runs as its own process (like a person at a shell) against a moto server on a free
loopback port; moto's request recorder shows every AWS call it made, so a refusal is shown to
have made none (or only the account check), and a rerun over an up-to-date account no write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.aws.desired import PUBLIC_ACCESS_BLOCK
from tests.aws.bringup_config import BUCKETS, ISSUER, ROLES, THUMBPRINT, write_config
from tests.aws.moto_harness import MOTO_ACCOUNT, Call, MotoServer, moto_server

pytestmark = pytest.mark.integration

GET_CALLER_IDENTITY = Call("sts", "GetCallerIdentity")


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with moto_server(tmp_path) as server:
        yield server


def cli(moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env |= moto.env() | {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def changes(moto: MotoServer, verb: str, config: Path) -> dict[tuple[str, str], dict[str, Any]]:
    done = cli(moto, "aws", verb, "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    return {(c["kind"], c["name"]): c for c in json.loads(done.stdout)["changes"]}


def actions(found: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    return {c["action"] for c in found.values()}


# -- refusals: before any AWS call -----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"resources": [("mail", "agentkeys-mail", "agentkeys-mail-oidc-test")]},
            "does not contain test_marker 'oidc-test'",
        ),
        ({"oidc_issuer": "http://127.0.0.1:8080"}, "is not https"),
        ({"oidc_issuer": "https://localhost"}, "is loopback: AWS cannot reach it"),
        ({"oidc_issuer": "https://10.1.2.3"}, "is not a public address"),
        ({"oidc_issuer": "https://oidc-test"}, "is not a public DNS name"),
    ],
)
@pytest.mark.parametrize("verb", ["plan", "apply", "template"])
def test_a_refused_config_makes_no_aws_call(
    moto: MotoServer, tmp_path: Path, verb: str, overrides: dict[str, Any], message: str
) -> None:
    done = cli(moto, "aws", verb, "--config", str(write_config(tmp_path, **overrides)))
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert moto.calls() == []


@pytest.mark.parametrize("verb", ["plan", "apply"])
def test_another_account_is_refused_after_only_the_identity_call(
    moto: MotoServer, tmp_path: Path, verb: str
) -> None:
    config = write_config(tmp_path, aws_account_id="210987654321")
    done = cli(moto, "aws", verb, "--config", str(config), "--json")
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert body["error"] == "account_mismatch"
    assert MOTO_ACCOUNT in body["message"]
    assert "210987654321" in body["message"]
    assert moto.calls() == [GET_CALLER_IDENTITY]


# -- plan, apply, plan -----------------------------------------------------------------------


def test_plan_on_an_empty_account_creates_everything_and_only_reads(
    moto: MotoServer, tmp_path: Path
) -> None:
    found = changes(moto, "plan", write_config(tmp_path))
    expected = {("oidc-provider", ISSUER)}
    expected |= {("role", r) for r in ROLES.values()} | {("bucket", b) for b in BUCKETS.values()}
    assert set(found) == expected
    assert actions(found) == {"create"}
    for change in found.values():
        assert {"kind", "name", "action"} <= set(change)
    assert found[("role", ROLES["vault"])]["resource"] == "vault"
    calls = moto.calls()
    assert calls[0] == GET_CALLER_IDENTITY
    assert [c for c in calls if c.mutating] == []
    assert moto.client("iam").list_roles()["Roles"] == []


def test_plan_prints_a_table_of_actions(moto: MotoServer, tmp_path: Path) -> None:
    done = cli(moto, "aws", "plan", "--config", str(write_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "RESOURCE", "ACTION", "PARTS"]
    row = next(line for line in lines if ROLES["mail"] in line and line.startswith("role"))
    assert row.split()[:4] == ["role", ROLES["mail"], "mail", "create"]
    assert lines[-1] == "5 to create, 0 to update, 0 unchanged"


def _provider(moto: MotoServer) -> dict[str, Any]:
    iam = moto.client("iam")
    arn = f"arn:aws:iam::{MOTO_ACCOUNT}:oidc-provider/oidc-test.example.com"
    return iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)  # type: ignore[no-any-return]


def test_apply_creates_what_the_config_says_and_a_second_run_changes_nothing(
    moto: MotoServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    done = cli(moto, "aws", "apply", "--config", str(config))
    assert done.returncode == 0, done.stderr
    progress = done.stderr.splitlines()
    assert f"role {ROLES['mail']}: created" in progress
    assert done.stdout.splitlines()[-1] == "5 created, 0 updated, 0 unchanged"
    assert f"bucket {BUCKETS['vault']}: created" in progress

    provider = _provider(moto)
    assert provider["Url"] in (ISSUER, ISSUER.removeprefix("https://"))
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]
    assert provider["ThumbprintList"] == [THUMBPRINT]
    iam, s3 = moto.client("iam"), moto.client("s3")
    role = iam.get_role(RoleName=ROLES["mail"])["Role"]
    [statement] = role["AssumeRolePolicyDocument"]["Statement"]
    assert "sts:TagSession" in statement["Action"]
    assert statement["Condition"]["StringEquals"] == {
        "oidc-test.example.com:aud": "sts.amazonaws.com"
    }
    inline = iam.get_role_policy(RoleName=ROLES["mail"], PolicyName="test-broker-scoped")
    resources = {r for s in inline["PolicyDocument"]["Statement"] for r in s["Resource"]}
    assert f"arn:aws:s3:::{BUCKETS['mail']}" in resources
    bucket = BUCKETS["vault"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == PUBLIC_ACCESS_BLOCK
    [sse] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    principals = {s["Principal"]["AWS"] for s in policy["Statement"]}
    assert principals == {f"arn:aws:iam::{MOTO_ACCOUNT}:role/{ROLES['vault']}"}
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {r["Filter"]["Prefix"] for r in rules} == {"ci/", "gh/", "gl/"}
    assert {r["Expiration"]["Days"] for r in rules} == {7}
    assert {r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in rules} == {1}

    assert actions(changes(moto, "plan", config)) == {"unchanged"}
    moto.forget_calls()
    again = cli(moto, "aws", "apply", "--config", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert {c["action"] for c in json.loads(again.stdout)["changes"]} == {"unchanged"}
    assert [c for c in moto.calls() if c.mutating] == []


def test_a_config_change_updates_just_the_parts_it_touches(
    moto: MotoServer, tmp_path: Path
) -> None:
    assert actions(changes(moto, "apply", write_config(tmp_path))) == {"create"}
    mail, vault = ROLES["mail"], ROLES["vault"]
    changed = write_config(
        tmp_path,
        run_prefix_days=3,
        oidc_thumbprints=[THUMBPRINT, "a" * 40],
        # vault's policies read another tag from now on; mail's stay as they are
        resources=[
            ("mail", mail, BUCKETS["mail"]),
            ("vault", vault, BUCKETS["vault"], "vault_run"),
        ],
    )
    found = {key: (c["action"], c["fields"]) for key, c in changes(moto, "plan", changed).items()}
    assert found == {
        ("oidc-provider", ISSUER): ("update", ["thumbprints"]),
        ("role", mail): ("unchanged", []),
        ("role", vault): ("update", ["trust policy", "identity policy"]),
        ("bucket", BUCKETS["mail"]): ("update", ["lifecycle"]),
        ("bucket", BUCKETS["vault"]): ("update", ["bucket policy", "lifecycle"]),
    }

    moto.forget_calls()
    done = cli(moto, "aws", "apply", "--config", str(changed))
    assert done.returncode == 0, done.stderr
    progress = done.stderr.splitlines()
    assert f"role {vault}: updated (trust policy, identity policy)" in progress
    assert f"role {mail}: unchanged" in progress
    writes = [c.action for c in moto.calls() if c.mutating]
    assert [w for w in writes if not w.startswith("PUT /")] == [
        "UpdateOpenIDConnectProviderThumbprint",
        "UpdateAssumeRolePolicy",
        "PutRolePolicy",
    ]
    assert [w for w in writes if w.startswith("PUT /")] == [
        f"PUT /{BUCKETS['mail']}?lifecycle",
        f"PUT /{BUCKETS['vault']}?policy",
        f"PUT /{BUCKETS['vault']}?lifecycle",
    ]
    assert sorted(_provider(moto)["ThumbprintList"]) == sorted([THUMBPRINT, "a" * 40])
    rules = moto.client("s3").get_bucket_lifecycle_configuration(Bucket=BUCKETS["mail"])["Rules"]
    assert {r["Expiration"]["Days"] for r in rules} == {3}
    trust = moto.client("iam").get_role(RoleName=vault)["Role"]["AssumeRolePolicyDocument"]
    assert "aws:RequestTag/vault_run" in trust["Statement"][0]["Condition"]["Null"]
    assert actions(changes(moto, "plan", changed)) == {"unchanged"}


def test_a_new_audience_is_planned_as_new_client_ids_and_trust_policies(
    moto: MotoServer, tmp_path: Path
) -> None:
    # Planned only: moto 5.2.5 does not implement Add/RemoveClientIDTo/FromOpenIDConnectProvider.
    changes(moto, "apply", write_config(tmp_path))
    found = changes(moto, "plan", write_config(tmp_path, audience="oidc-test-audience"))
    assert found[("oidc-provider", ISSUER)]["fields"] == ["client ids"]
    assert {found[("role", r)]["fields"] == ["trust policy"] for r in ROLES.values()} == {True}
    assert {found[("bucket", b)]["action"] for b in BUCKETS.values()} == {"unchanged"}


def test_drift_made_in_the_account_is_planned_and_repaired(
    moto: MotoServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    changes(moto, "apply", config)
    s3, iam = moto.client("s3"), moto.client("iam")
    s3.delete_public_access_block(Bucket=BUCKETS["mail"])
    s3.delete_bucket_policy(Bucket=BUCKETS["mail"])
    iam.delete_role_policy(RoleName=ROLES["vault"], PolicyName="test-broker-scoped")
    found = changes(moto, "plan", config)
    assert found[("bucket", BUCKETS["mail"])]["fields"] == ["public access block", "bucket policy"]
    assert found[("role", ROLES["vault"])]["fields"] == ["identity policy"]
    assert found[("bucket", BUCKETS["vault"])]["action"] == "unchanged"
    changes(moto, "apply", config)
    assert actions(changes(moto, "plan", config)) == {"unchanged"}


def test_buckets_are_made_in_the_region_asked_for(moto: MotoServer, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = cli(moto, "aws", "apply", "--config", str(config), "--region", "eu-west-1")
    assert done.returncode == 0, done.stderr
    location = moto.client("s3").get_bucket_location(Bucket=BUCKETS["mail"])
    assert location["LocationConstraint"] == "eu-west-1"
    again = cli(moto, "aws", "plan", "--config", str(config), "--region", "eu-west-1", "--json")
    assert {c["action"] for c in json.loads(again.stdout)["changes"]} == {"unchanged"}
