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
TABLE = {"name": "main", "role": "oidc-test-role", "bucket": "oidc-test-bucket"}
AWS: dict[str, Any] = {
    "oidc_issuer": ISSUER,
    "aws_account_id": "123456789012",
    "resources": [TABLE],
}
SCOPE = "${aws:PrincipalTag/agentkeys_user_wallet}"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**AWS)


def render(
    settings: Settings, kind: policy.PolicyKind, target: policy.PolicyTarget = "aws"
) -> policy.Document:
    return policy.render(settings, kind, settings.resource(), target)


def env(values: dict[str, Any]) -> dict[str, str]:
    return {
        f"BROKER_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()
    }


def _walk(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [k for k in doc] + [x for v in doc.values() for x in _walk(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _walk(v)]
    return [str(doc)]


def test_trust_policy_admits_only_our_tagged_tokens(settings: Settings) -> None:
    (statement,) = render(settings, "trust")["Statement"]
    provider = "arn:aws:iam::123456789012:oidc-provider/oidc.example.com"
    assert statement["Principal"] == {"Federated": provider}
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]
    assert statement["Condition"] == {
        "StringEquals": {"oidc.example.com:aud": "sts.amazonaws.com"},
        "Null": {"aws:RequestTag/agentkeys_user_wallet": "false"},
    }


def test_role_policy_confines_objects_and_listing_to_the_own_scope(settings: Settings) -> None:
    objects, listing = render(settings, "role")["Statement"]
    assert objects["Resource"] == [f"arn:aws:s3:::oidc-test-bucket/{SCOPE}/*"]
    assert "Condition" not in objects  # s3:prefix on object actions is a MalformedPolicy
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == ["arn:aws:s3:::oidc-test-bucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{SCOPE}/*"]}}


def test_bucket_policy_grants_the_role_policy_to_the_test_role_only(settings: Settings) -> None:
    role = render(settings, "role")["Statement"]
    bucket = render(settings, "bucket")["Statement"]
    principal = {"AWS": "arn:aws:iam::123456789012:role/oidc-test-role"}
    assert [s.pop("Principal") for s in bucket] == [principal, principal]
    assert bucket == role


def test_scope_tag_and_issuer_path_come_from_the_config(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**AWS | {"oidc_issuer": f"{ISSUER}/team", "scope_tag": "run"})
    (statement,) = render(settings, "trust")["Statement"]
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/oidc.example.com/team")
    assert "oidc.example.com/team:aud" in statement["Condition"]["StringEquals"]
    assert "aws:RequestTag/run" in statement["Condition"]["Null"]
    assert "${aws:PrincipalTag/run}/*" in json.dumps(render(settings, "role"))


@pytest.mark.parametrize("target", policy.TARGETS)
@pytest.mark.parametrize("kind", policy.POLICY_KINDS)
def test_no_negated_string_operator_on_a_tag(
    settings: Settings, kind: policy.PolicyKind, target: policy.PolicyTarget
) -> None:
    # A negated operator on a missing tag evaluates true: it would admit untagged sessions.
    assert not [w for w in _walk(render(settings, kind, target)) if "NotEquals" in w]


def test_seaweedfs_adapter_changes_only_what_seaweedfs_reads_differently(
    settings: Settings,
) -> None:
    aws = render(settings, "trust")
    (statement,) = policy.for_seaweedfs(aws, settings, settings.resource())["Statement"]
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Condition"] == {
        "StringEquals": {"oidc:aud": "sts.amazonaws.com"},
        "Null": {f"oidc:{SEAWEEDFS_TAGS_CLAIM}": "false"},
    }
    assert statement["Principal"] == aws["Statement"][0]["Principal"]
    assert aws == render(settings, "trust")  # the AWS document is left alone
    for kind in ("role", "bucket"):
        assert render(settings, kind, "seaweedfs") == render(settings, kind)


def test_provider_without_an_account_names_the_setting(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match="aws_account_id \\(env BROKER_AWS_ACCOUNT_ID\\)"):
        policy.provider_arn(make_settings())


def test_each_resource_gets_its_own_documents_and_scope_tag(
    make_settings: Callable[..., Settings],
) -> None:
    mail = {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"}
    vault = {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"}
    settings = make_settings(**AWS | {"resources": [mail, vault | {"scope_tag": "vault_scope"}]})
    m, v = settings.resource("mail"), settings.resource("vault")
    assert policy.render(settings, "trust", m)["Statement"][0]["Condition"]["Null"] == {
        "aws:RequestTag/agentkeys_user_wallet": "false"
    }
    assert policy.render(settings, "trust", v)["Statement"][0]["Condition"]["Null"] == {
        "aws:RequestTag/vault_scope": "false"
    }
    (objects, _) = policy.render(settings, "role", v)["Statement"]
    assert objects["Resource"] == ["arn:aws:s3:::vault-oidc-test/${aws:PrincipalTag/vault_scope}/*"]
    bucket = policy.render(settings, "bucket", m)["Statement"]
    assert {s["Principal"]["AWS"] for s in bucket} == {
        "arn:aws:iam::123456789012:role/mail-oidc-test"
    }
    assert "vault" not in json.dumps(policy.render(settings, "role", m))
    seaweed = policy.render(settings, "trust", v, "seaweedfs")["Statement"][0]["Condition"]
    assert seaweed["Null"] == {f"oidc:{SEAWEEDFS_TAGS_CLAIM}": "false"}


def test_cli_picks_the_resource_by_name_and_needs_one_when_several() -> None:
    two = AWS | {
        "resources": [
            TABLE,
            {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"},
        ]
    }
    result = CliRunner().invoke(
        main, ["policy", "render", "role", "--resource", "vault"], env=env(two)
    )
    assert result.exit_code == 0, result.output
    assert "arn:aws:s3:::vault-oidc-test" in json.loads(result.stdout)["Statement"][1]["Resource"]
    result = CliRunner().invoke(main, ["policy", "render", "role"], env=env(two))
    assert result.exit_code == 2
    assert (
        "several resources are configured (main, vault); pick one with --resource" in result.stderr
    )
    result = CliRunner().invoke(main, ["policy", "render", "role", "--resource", "x"], env=env(two))
    assert (result.exit_code, "no resource is named 'x'") == (
        2,
        result.stderr.split(": ", 1)[1][:24],
    )


def test_cli_renders_json_and_explains_the_role_pin() -> None:
    result = CliRunner().invoke(main, ["policy", "render", "trust"], env=env(AWS))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Statement"][0]["Action"][-1] == "sts:TagSession"
    assert f"{ROLES_CLAIM} = [arn:aws:iam::123456789012:role/oidc-test-role]" in result.stderr


def test_cli_without_resources_exits_2_saying_what_to_add() -> None:
    result = CliRunner().invoke(main, ["policy", "render", "role"], env={"BROKER_DATA_DIR": "x"})
    assert result.exit_code == 2
    assert "add a [[resources]] table (name, role, bucket)" in result.stderr


def test_cli_reads_the_deprecated_keys_as_one_resource_and_says_so() -> None:
    legacy = {k: v for k, v in AWS.items() if k != "resources"}
    legacy |= {"test_role_name": "oidc-test-role", "test_bucket": "oidc-test-bucket"}
    result = CliRunner().invoke(main, ["policy", "render", "bucket"], env=env(legacy))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: test_role_name and test_bucket are deprecated")
    modern = CliRunner().invoke(main, ["policy", "render", "bucket"], env=env(AWS))
    assert result.stdout == modern.stdout
    assert "deprecated" not in modern.stderr


def test_cli_seaweedfs_target_warns_when_the_flat_claim_is_off() -> None:
    args = ["policy", "render", "trust", "--target", "seaweedfs"]
    result = CliRunner().invoke(main, args, env=env(AWS))
    assert result.exit_code == 0
    assert "seaweedfs_tags_claim" in result.stderr
