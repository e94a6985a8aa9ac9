"""`policy render`: trust, role and bucket policies from the config, and the SeaweedFS adapter.

Properties are asserted, not whole documents: the policies are written once, in broker/aws/policy.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from broker.aws import policy
from broker.config import Settings
from broker.errors import ConfigError
from broker.main import main
from broker.sts.catalogue import ROLES_CLAIM
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM

ISSUER = "https://oidc.example.com"
AWS = {
    "oidc_issuer": ISSUER,
    "aws_account_id": "123456789012",
    "test_role_name": "oidc-test-role",
    "test_bucket": "oidc-test-bucket",
}
SCOPE = "${aws:PrincipalTag/agentkeys_user_wallet}"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**AWS)


def _walk(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [k for k in doc] + [x for v in doc.values() for x in _walk(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _walk(v)]
    return [str(doc)]


def test_trust_policy_admits_only_our_tagged_tokens(settings: Settings) -> None:
    (statement,) = policy.render(settings, "trust")["Statement"]
    provider = "arn:aws:iam::123456789012:oidc-provider/oidc.example.com"
    assert statement["Principal"] == {"Federated": provider}
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]
    assert statement["Condition"] == {
        "StringEquals": {"oidc.example.com:aud": "sts.amazonaws.com"},
        "Null": {"aws:RequestTag/agentkeys_user_wallet": "false"},
    }


def test_role_policy_confines_objects_and_listing_to_the_own_scope(settings: Settings) -> None:
    objects, listing = policy.render(settings, "role")["Statement"]
    assert objects["Resource"] == [f"arn:aws:s3:::oidc-test-bucket/{SCOPE}/*"]
    assert "Condition" not in objects  # s3:prefix on object actions is a MalformedPolicy
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == ["arn:aws:s3:::oidc-test-bucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{SCOPE}/*"]}}


def test_bucket_policy_grants_the_role_policy_to_the_test_role_only(settings: Settings) -> None:
    role = policy.render(settings, "role")["Statement"]
    bucket = policy.render(settings, "bucket")["Statement"]
    principal = {"AWS": "arn:aws:iam::123456789012:role/oidc-test-role"}
    assert [s.pop("Principal") for s in bucket] == [principal, principal]
    assert bucket == role


def test_scope_tag_and_issuer_path_come_from_the_config(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**AWS | {"oidc_issuer": f"{ISSUER}/team", "scope_tag": "run"})
    (statement,) = policy.render(settings, "trust")["Statement"]
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/oidc.example.com/team")
    assert "oidc.example.com/team:aud" in statement["Condition"]["StringEquals"]
    assert "aws:RequestTag/run" in statement["Condition"]["Null"]
    assert "${aws:PrincipalTag/run}/*" in json.dumps(policy.render(settings, "role"))


@pytest.mark.parametrize("target", policy.TARGETS)
@pytest.mark.parametrize("kind", policy.POLICY_KINDS)
def test_no_negated_string_operator_on_a_tag(
    settings: Settings, kind: policy.PolicyKind, target: policy.PolicyTarget
) -> None:
    # A negated operator on a missing tag evaluates true: it would admit untagged sessions.
    assert not [w for w in _walk(policy.render(settings, kind, target)) if "NotEquals" in w]


def test_seaweedfs_adapter_changes_only_what_seaweedfs_reads_differently(
    settings: Settings,
) -> None:
    aws = policy.render(settings, "trust")
    (statement,) = policy.for_seaweedfs(aws, settings)["Statement"]
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Condition"] == {
        "StringEquals": {"oidc:aud": "sts.amazonaws.com"},
        "Null": {f"oidc:{SEAWEEDFS_TAGS_CLAIM}": "false"},
    }
    assert statement["Principal"] == aws["Statement"][0]["Principal"]
    assert aws == policy.render(settings, "trust")  # the AWS document is left alone
    for kind in ("role", "bucket"):
        assert policy.render(settings, kind, "seaweedfs") == policy.render(settings, kind)


@pytest.mark.parametrize(
    ("kind", "missing"),
    [("trust", "aws_account_id"), ("role", "test_bucket"), ("bucket", "test_role_name")],
)
def test_missing_config_names_the_setting(
    make_settings: Callable[..., Settings], kind: policy.PolicyKind, missing: str
) -> None:
    with pytest.raises(ConfigError, match=f"{missing} \\(env BROKER_{missing.upper()}\\)"):
        policy.render(make_settings(), kind)


def test_cli_renders_json_and_explains_the_role_pin() -> None:
    env = {f"BROKER_{k.upper()}": v for k, v in AWS.items()}
    result = CliRunner().invoke(main, ["policy", "render", "trust"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Statement"][0]["Action"][-1] == "sts:TagSession"
    assert f"{ROLES_CLAIM} = [arn:aws:iam::123456789012:role/oidc-test-role]" in result.stderr


def test_cli_missing_setting_exits_2_naming_it() -> None:
    result = CliRunner().invoke(main, ["policy", "render", "role"], env={"BROKER_DATA_DIR": "x"})
    assert result.exit_code == 2
    assert "test_bucket (env BROKER_TEST_BUCKET)" in result.stderr


def test_cli_seaweedfs_target_warns_when_the_flat_claim_is_off() -> None:
    env = {f"BROKER_{k.upper()}": v for k, v in AWS.items()}
    args = ["policy", "render", "trust", "--target", "seaweedfs"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0
    assert "seaweedfs_tags_claim" in result.stderr
