"""doctor --trust-policy: the AccessDenied explainer names the statement and condition that deny."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.aws import policy as policies
from broker.config import Settings
from broker.errors import TrustPolicyInvalid
from broker.main import main
from broker.sts.catalogue import Finding, Severity
from broker.sts.tags import TAGS_CLAIM
from broker.sts.trust_policy import ACCESS_DENIED, evaluate
from tests.doctor.negative_tokens import AUD, Signer

HOST = "oidc-test.example.com"
ISSUER = f"https://{HOST}"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{HOST}"
SIGNER = Signer(issuer=ISSUER)
CLAIMS = SIGNER.claims()


def hand_written() -> dict[str, Any]:
    """The shape docs/sts-rules.md asks for."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Broker",
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {f"{HOST}:aud": AUD},
                    "Null": {"aws:RequestTag/agentkeys_user_wallet": "false"},
                },
            }
        ],
    }


def denials(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.rule, f.detail) for f in findings if f.severity is Severity.REJECT]


def test_the_hand_written_policy_admits_a_broker_token() -> None:
    assert evaluate(hand_written(), CLAIMS, host_path=HOST) == []


def test_the_policy_the_project_renders_admits_its_tokens(
    make_settings: Callable[..., Settings],
) -> None:
    table = {"name": "main", "role": "oidc-test-role", "bucket": "oidc-test-bucket"}
    settings = make_settings(oidc_issuer=ISSUER, aws_account_id="123456789012", resources=[table])
    rendered = policies.trust_policy(settings, settings.resource())
    assert evaluate(rendered, CLAIMS, host_path=settings.issuer_host_path) == []


def _edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = hand_written()
    change(doc["Statement"][0])
    return doc


@pytest.mark.parametrize(
    ("label", "policy", "claims", "rule", "names"),
    [
        (
            "no TagSession for a tagged token",
            _edit(lambda s: s.__setitem__("Action", "sts:AssumeRoleWithWebIdentity")),
            CLAIMS,
            "trust.action",
            "Broker: Action 'sts:AssumeRoleWithWebIdentity' does not allow sts:TagSession",
        ),
        (
            "another provider",
            _edit(lambda s: s.__setitem__("Principal", {"Federated": PROVIDER + "x"})),
            CLAIMS,
            "trust.principal",
            "Broker: Principal",
        ),
        (
            "another audience",
            hand_written(),
            CLAIMS | {"aud": "other"},
            "trust.condition",
            f"Broker: condition StringEquals {HOST}:aud fails (the token gives 'other')",
        ),
        (
            "no tags: the scope tag is required",
            hand_written(),
            {k: v for k, v in CLAIMS.items() if k != TAGS_CLAIM},
            "trust.condition",
            "Broker: condition Null aws:RequestTag/agentkeys_user_wallet fails",
        ),
        (
            "sub outside a StringLike pattern",
            _edit(lambda s: s["Condition"].__setitem__("StringLike", {f"{HOST}:sub": "ci:*"})),
            CLAIMS,
            "trust.condition",
            f"Broker: condition StringLike {HOST}:sub fails",
        ),
        (
            "a tag key outside ForAllValues",
            _edit(
                lambda s: s["Condition"].__setitem__(
                    "ForAllValues:StringEquals", {"aws:TagKeys": ["agentkeys_user_wallet"]}
                )
            ),
            CLAIMS,
            "trust.condition",
            "Broker: condition ForAllValues:StringEquals aws:TagKeys fails",
        ),
    ],
)
def test_the_denying_statement_and_condition_are_named(
    label: str, policy: dict[str, Any], claims: dict[str, Any], rule: str, names: str
) -> None:
    found = evaluate(policy, claims, host_path=HOST)
    [(got_rule, detail)] = denials(found)[:1]
    assert (rule, True) == (got_rule, detail.startswith(names)), detail
    assert {ACCESS_DENIED} == {f.sts_message for f in found if f.severity is Severity.REJECT}


def test_an_explicit_deny_wins_and_is_named() -> None:
    doc = hand_written()
    doc["Statement"].append(
        {
            "Sid": "NoDevs",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sts:*",
            "Condition": {"StringLike": {f"{HOST}:sub": "agentkeys:*"}},
        }
    )
    assert (denials(evaluate(doc, CLAIMS, host_path=HOST))[0]) == (
        "trust.deny",
        "NoDevs denies sts:AssumeRoleWithWebIdentity for this token",
    )


def test_a_negated_operator_on_a_missing_key_is_true_and_flagged() -> None:
    doc = _edit(
        lambda s: s.__setitem__(
            "Condition", {"StringNotEquals": {"aws:RequestTag/agentkeys_user_wallet": "0xdead"}}
        )
    )
    untagged = {k: v for k, v in CLAIMS.items() if k != TAGS_CLAIM}
    found = evaluate(doc, untagged, host_path=HOST)
    assert denials(found) == []  # exactly the hole docs/sts-rules.md warns about
    assert [f.rule for f in found] == ["trust.negated_missing"]


def unevaluated(findings: list[Finding]) -> list[str]:
    return [f.detail for f in findings if f.rule == "trust.unevaluated"]


def test_a_key_from_the_request_is_assumed_to_hold_in_an_allow() -> None:
    # STS knows the session name, region and source IP; the token does not say, so doctor
    # must not predict AccessDenied (STS allows a session named ci-1 here).
    doc = _edit(
        lambda s: s["Condition"].update(
            {
                "StringLike": {"sts:RoleSessionName": "ci-*"},
                "StringEquals": {f"{HOST}:aud": AUD, "aws:RequestedRegion": "eu-west-1"},
                "IpAddress": {"aws:SourceIp": "203.0.113.0/24"},
            }
        )
    )
    found = evaluate(doc, CLAIMS, host_path=HOST)
    assert denials(found) == []
    details = unevaluated(found)
    for key in ("sts:RoleSessionName", "aws:RequestedRegion", "aws:SourceIp"):
        assert any(key in d and "assumed to hold" in d for d in details), (key, details)


def test_a_custom_claim_key_is_absent_not_unevaluated() -> None:
    # Custom claims are no condition keys (docs/sts-rules.md): the token decides this one.
    doc = _edit(lambda s: s["Condition"].update({"StringEquals": {f"{HOST}:repo": "x"}}))
    found = evaluate(doc, CLAIMS, host_path=HOST)
    assert [rule for rule, _ in denials(found)][:1] == ["trust.condition"]
    assert unevaluated(found) == []


@pytest.mark.parametrize(
    "condition",
    [
        {"Bool": {"aws:SecureTransport": "false"}},
        {"StringLike": {"sts:RoleSessionName": "dev-*"}},
    ],
)
def test_an_unevaluated_condition_does_not_make_a_deny_apply(condition: dict[str, Any]) -> None:
    doc = hand_written()
    doc["Statement"].append(
        {"Sid": "Guard", "Effect": "Deny", "Principal": "*", "Action": "sts:*"}
        | {"Condition": condition}
    )
    found = evaluate(doc, CLAIMS, host_path=HOST)
    assert denials(found) == []  # real STS allows: the request uses TLS, the name is unknown
    [detail] = unevaluated(found)
    assert detail.startswith("Guard: ")
    assert detail.endswith("(assumed not to match)")


def test_transitive_keys_and_for_any_value_are_evaluated() -> None:
    doc = _edit(
        lambda s: s["Condition"].update(
            {
                "ForAnyValue:StringEquals": {"sts:TransitiveTagKeys": "agentkeys_user_wallet"},
                "ForAnyValue:StringLike": {"aws:TagKeys": "call*"},
            }
        )
    )
    assert evaluate(doc, CLAIMS, host_path=HOST) == []
    other = copy.deepcopy(CLAIMS)
    other[TAGS_CLAIM]["transitive_tag_keys"] = ["caller"]
    [(rule, detail)] = denials(evaluate(doc, other, host_path=HOST))[:1]
    assert rule == "trust.condition"
    assert "ForAnyValue:StringEquals sts:TransitiveTagKeys" in detail


def test_a_file_that_is_no_policy_is_refused() -> None:
    with pytest.raises(TrustPolicyInvalid, match="Statement"):
        evaluate({"Version": "2012-10-17"}, CLAIMS, host_path=HOST)


def test_cli_explains_access_denied_and_exits_1(tmp_path: Path) -> None:
    now = int(time.time())
    token = SIGNER.sign(SIGNER.claims(now))
    no_tag_session = _edit(lambda s: s.__setitem__("Action", "sts:AssumeRoleWithWebIdentity"))
    files = {"t.jwt": token, "jwks.json": SIGNER.jwks(), "trust.json": no_tag_session}
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    args = ["doctor", "--token", f"@{tmp_path / 't.jwt'}", "--jwks", str(tmp_path / "jwks.json")]
    args += ["--trust-policy", str(tmp_path / "trust.json"), "--json"]
    result = CliRunner().invoke(main, args)
    body = json.loads(result.output)
    assert (
        result.exit_code,
        body["outcome"],
        body["message"],
    ) == (1, "AccessDenied", ACCESS_DENIED)
    (tmp_path / "trust.json").write_text("[]")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert "not a policy document" in refused.output
