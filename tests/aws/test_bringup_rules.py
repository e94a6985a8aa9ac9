"""The pure rules behind `aws plan`: policies equal in meaning, lifecycle prefixes, the issuer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from broker.aws.desired import desired_state, public_issuer_problem
from broker.aws.plan import same_lifecycle, same_policy
from broker.config import Settings
from tests.aws.bringup_config import THUMBPRINT

POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OwnScopeObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": ["arn:aws:s3:::b-oidc-test/${aws:PrincipalTag/t}/*"],
        },
        {
            "Sid": "OwnScopeListing",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::b-oidc-test"],
        },
    ],
}


def test_iam_s_spelling_of_the_same_policy_is_the_same_policy() -> None:
    # What IAM returns: statements and actions reordered, one-element lists collapsed,
    # the whole document URL-encoded.
    objects, listing = POLICY["Statement"]
    returned = {
        "Version": "2012-10-17",
        "Statement": [
            {**listing, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b-oidc-test"},
            {**objects, "Action": ["s3:PutObject", "s3:GetObject"]},
        ],
    }
    assert same_policy(quote(json.dumps(returned)), POLICY)
    assert same_policy(json.dumps(returned), POLICY)
    assert same_policy(returned, POLICY)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["Statement"][0].update(Action=["s3:GetObject"]),
        lambda d: d["Statement"][1].update(Resource=["arn:aws:s3:::other-oidc-test"]),
        lambda d: d["Statement"].pop(),
        lambda d: d["Statement"][0].update(Effect="Deny"),
    ],
)
def test_a_policy_that_means_something_else_differs(edit: Callable[[Any], None]) -> None:
    changed = json.loads(json.dumps(POLICY))
    edit(changed)
    assert not same_policy(quote(json.dumps(changed)), POLICY)


@pytest.mark.parametrize(
    ("issuer", "problem"),
    [
        ("https://oidc-test.example.com", None),
        ("https://oidc-test.example.com/team", None),
        ("https://93.184.215.14", None),
        ("http://127.0.0.1:8080", "is not https"),
        ("https://localhost", "is loopback"),
        ("https://[::1]", "is loopback"),
        ("https://192.168.1.10", "is not a public address"),
        ("https://intranet", "is not a public DNS name"),
    ],
)
def test_only_a_public_https_issuer_is_brought_up(issuer: str, problem: str | None) -> None:
    found = public_issuer_problem(issuer)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def _settings(make_settings: Callable[..., Settings], **extra: Any) -> Settings:
    resource = {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"}
    return make_settings(
        oidc_issuer="https://oidc-test.example.com",
        aws_account_id="123456789012",
        resources=[resource],
        **extra,
    )


def test_configured_thumbprints_win_and_nothing_is_fetched(
    make_settings: Callable[..., Settings],
) -> None:
    def no_fetch() -> str:
        raise AssertionError("the served chain was fetched")

    settings = _settings(make_settings, oidc_thumbprints=[THUMBPRINT.upper()])
    assert desired_state(settings, no_fetch).provider.thumbprints == (THUMBPRINT,)


def test_without_configured_thumbprints_the_served_one_is_registered(
    make_settings: Callable[..., Settings],
) -> None:
    desired = desired_state(_settings(make_settings), lambda: "b" * 40)
    assert desired.provider.thumbprints == ("b" * 40,)
    assert desired.provider.client_ids == ("sts.amazonaws.com",)
    assert desired.provider.arn.endswith(":oidc-provider/oidc-test.example.com")


RULE = {
    "ID": "test-broker-expire-ci",
    "Filter": {"Prefix": "ci/"},
    "Status": "Enabled",
    "Expiration": {"Days": 7},
}


def test_lifecycle_rules_match_by_id_and_members_s3_adds_are_no_difference() -> None:
    returned = {**RULE, "Expiration": {"Days": 7}, "NoncurrentVersionTransitions": []}
    assert same_lifecycle([returned], [RULE])
    assert not same_lifecycle([{**RULE, "Expiration": {"Days": 3}}], [RULE])
    assert not same_lifecycle([RULE, {**RULE, "ID": "someone-else"}], [RULE])
    assert not same_lifecycle([], [RULE])
