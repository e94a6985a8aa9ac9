"""The mint path runs the STS rule set on every token: what it returns passes, what breaks is refused."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from broker.sts import catalogue as sts_catalogue
from broker.sts import token_rules as sts_rules
from broker.sts.issuer_rules import check_jwks
from broker.testing.live import LiveBroker, StartBroker


def mint_response(broker: LiveBroker, proof: str = "rules"):  # type: ignore[no-untyped-def]
    bearer = broker.client.post("/session/create", json={"auth_token": proof}).json()["session"]
    return broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"})


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_minted_tokens_and_served_jwks_pass_every_rule(live_broker: StartBroker, alg: str) -> None:
    broker = live_broker(key_algorithm=alg)
    jwks = broker.client.get("/.well-known/jwks.json").json()
    assert sts_catalogue.blocking(check_jwks(jwks)) == []
    for proof in ("a", "b", "federation-proof"):
        token = mint_response(broker, proof).json()["jwt"]
        header = pyjwt.get_unverified_header(token)
        claims = pyjwt.decode(token, options={"verify_signature": False})
        findings = sts_rules.check_token(
            header,
            claims,
            token_length=len(token),
            issuer=broker.url,
            audiences=["sts.amazonaws.com"],
            now=int(time.time()),
        )
        assert findings == []
        assert sts_rules.check_token_kid(header, jwks) == []


def test_a_token_breaking_a_rule_is_refused_naming_the_rule(live_broker: StartBroker) -> None:
    # A sub template this long makes every token longer than STS's 20 000-character limit.
    broker = live_broker(sub_template="x" * 20_000 + "{scope}")
    resp = mint_response(broker)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "sts_rule_violation"
    assert "token.length" in body["message"]
    assert "jwt" not in body


def test_every_configured_test_role_is_pinned_in_every_token(live_broker: StartBroker) -> None:
    resources = [
        {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"},
        {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"},
    ]
    broker = live_broker(aws_account_id="123456789012", resources=resources)
    token = mint_response(broker).json()["jwt"]
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["https://aws.amazon.com/roles"] == [
        "arn:aws:iam::123456789012:role/mail-oidc-test",
        "arn:aws:iam::123456789012:role/vault-oidc-test",
    ]


def test_a_resource_scope_tag_rides_in_every_token_beside_the_brokers_own(
    live_broker: StartBroker,
) -> None:
    resources = [
        {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"},
        {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test", "scope_tag": "v"},
    ]
    broker = live_broker(aws_account_id="123456789012", resources=resources)
    body = mint_response(broker).json()
    claims = pyjwt.decode(body["jwt"], options={"verify_signature": False})
    tags = claims["https://aws.amazon.com/tags"]
    scope = body["wallet"]
    assert tags["principal_tags"] == {
        "agentkeys_user_wallet": [scope],
        "v": [scope],
        "caller": ["fed"],
    }
    assert tags["transitive_tag_keys"] == ["agentkeys_user_wallet", "v"]
    assert claims["agentkeys_user_wallet"] == scope  # the upstream top-level claim is unchanged
    assert "v" not in claims


def test_seaweedfs_flat_tags_claim_is_off_by_default_and_mirrors_the_tags(
    live_broker: StartBroker,
) -> None:
    plain = pyjwt.decode(
        mint_response(live_broker()).json()["jwt"], options={"verify_signature": False}
    )
    assert "https://aws.amazon.com/tags/principal_tags" not in plain
    assert "https://aws.amazon.com/roles" not in plain
    flat = pyjwt.decode(
        mint_response(live_broker(seaweedfs_tags_claim=True)).json()["jwt"],
        options={"verify_signature": False},
    )
    nested = flat["https://aws.amazon.com/tags"]["principal_tags"]
    assert flat["https://aws.amazon.com/tags/principal_tags"] == nested
