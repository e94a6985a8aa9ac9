"""verify's plain-words diagnosis for answers the SeaweedFS suite cannot produce (AWS wording)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from broker.aws.diagnosis import FOREIGN_STEPS, OWN_STEPS, explain, sts_cause
from broker.aws.proof import Outcome, Step, Target
from broker.main import main
from broker.sts.tags import SEAWEEDFS_TAGS_CLAIM, TAGS_CLAIM

TARGET = Target(
    role_arn="arn:aws:iam::123456789012:role/oidc-test-role",
    bucket="oidc-test-b",
    scope_tag="wallet",
)


def _steps(own: Outcome, foreign: Outcome) -> list[Step]:
    head = [
        Step(name=n, outcome="allowed", expected="allowed", ms=1.0)
        for n in ("token", "assume role")
    ]
    return [
        *head,
        *(Step(name=n, outcome=own, expected="allowed", ms=1.0) for n in OWN_STEPS),
        *(Step(name=n, outcome=foreign, expected="denied", ms=1.0) for n in FOREIGN_STEPS),
    ]


@pytest.mark.parametrize(
    ("code", "message", "cause"),
    [
        (
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://x/",
            "byte for byte",
        ),
        (
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
            "could not fetch discovery or JWKS",
        ),
        ("InvalidIdentityToken", "Incorrect token audience", "aud is not a client id"),
        (
            "InvalidIdentityToken",
            "principal_tags passed in claim is not in correct format.",
            "one-element array",
        ),
        (
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            "sts:TagSession",
        ),
        (
            "AccessDenied",
            "The target role ARN is not present in the roles claim of the identity token",
            "pins other roles",
        ),
        (
            "ExpiredTokenException",
            "Token expired: current date/time 1 must be before the expiration date/time 0",
            "300 s",
        ),
        ("IDPCommunicationError", "", "could not reach the issuer"),
        ("PackedPolicyTooLarge", "", "fewer, shorter tags"),
    ],
    ids=lambda v: v if len(v) < 30 else None,
)
def test_sts_errors_map_to_their_likely_cause(code: str, message: str, cause: str) -> None:
    assert cause in sts_cause(code, message)


@pytest.mark.parametrize(
    ("claims", "finding"),
    [
        ({TAGS_CLAIM: {"principal_tags": {"agentkeys_user_wallet": ["0xabc"]}}}, "not 'wallet'"),
        ({TAGS_CLAIM: {"principal_tags": {"wallet": ["0xabc"]}}}, "SeaweedFS reads tags only"),
        (
            {
                TAGS_CLAIM: {"principal_tags": {"wallet": ["0xabc"]}},
                SEAWEEDFS_TAGS_CLAIM: {"wallet": ["0xabc"]},
            },
            "another tag key or bucket",
        ),
        ({}, "no tags claim"),
    ],
    ids=["other-tag-key", "nested-claim-only", "tags-fine-policy-differs", "no-tags"],
)
def test_both_denied_shows_the_tokens_tags(claims: dict[str, Any], finding: str) -> None:
    target = replace(TARGET, sts_endpoint="http://127.0.0.1:1")
    lines, next_command = explain(_steps("denied", "denied"), claims, target)
    assert lines[0] == "both scopes are denied: the session carries no usable scope tag"
    assert lines[1].startswith("token tags: ")
    assert finding in lines[2]
    assert next_command is None


def test_broad_listing_names_the_missing_prefix_condition() -> None:
    steps = _steps("allowed", "denied")
    steps[-1] = Step(name="list foreign", outcome="allowed", expected="denied", ms=1.0)
    lines, _ = explain(steps, {}, TARGET)
    assert "s3:ListBucket on arn:aws:s3:::oidc-test-b without the condition" in "\n".join(lines)


def test_partial_own_grant_is_named() -> None:
    steps = _steps("allowed", "denied")
    steps[2] = Step(name="put own", outcome="denied", expected="allowed", ms=1.0)
    lines, _ = explain(steps, {}, TARGET)
    assert lines == [
        "the role grants only part of the own scope (put own denied); compare with `test-broker policy render role`"
    ]


def test_verify_without_a_role_exits_2_naming_the_setting() -> None:
    result = CliRunner().invoke(main, ["verify", "--bucket", "oidc-test-b"])
    assert result.exit_code == 2
    assert "verify needs --role-arn (or a [[resources]] table)" in result.stderr
