"""Rate limits: per caller, per address for failed authentication; never on discovery/JWKS."""

from __future__ import annotations

from tests.conftest import StartBroker

MINT = "/v1/mint-oidc-jwt"


def test_a_caller_past_its_burst_gets_429_with_retry_after(live_broker: StartBroker) -> None:
    broker = live_broker(mint_burst=3, mint_rate_per_second=0.01)
    bearer = broker.client.post("/session/create", json={"auth_token": "r"}).json()["session"]
    headers = {"Authorization": f"Bearer {bearer}"}
    statuses = [broker.client.post(MINT, headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = broker.client.post(MINT, headers=headers)
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # another caller is not affected
    other = broker.client.post("/session/create", json={"auth_token": "s"}).json()["session"]
    assert broker.client.post(MINT, headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_failed_authentication_is_limited_per_address(live_broker: StartBroker) -> None:
    broker = live_broker(unauth_burst=5, unauth_rate_per_second=0.01)
    bad = {"Authorization": "Bearer fps_guess"}
    statuses = [broker.client.post(MINT, headers=bad).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    bearer_resp = broker.client.post("/session/create", json={"auth_token": "x"})
    assert bearer_resp.status_code == 429  # the same address, still cooling down


def test_discovery_and_jwks_are_never_limited(live_broker: StartBroker) -> None:
    broker = live_broker(unauth_burst=1, mint_burst=1, unauth_rate_per_second=0.01)
    broker.client.post(MINT, headers={"Authorization": "Bearer fps_guess"})
    broker.client.post(MINT, headers={"Authorization": "Bearer fps_guess"})
    for _ in range(50):
        assert broker.client.get("/.well-known/jwks.json").status_code == 200
        assert broker.client.get("/.well-known/openid-configuration").status_code == 200


def test_rate_limits_off_warns(make_settings, caplog) -> None:  # type: ignore[no-untyped-def]
    from broker.app import create_app

    create_app(make_settings(rate_limits=False))
    assert any("rate limits are OFF" in r.message for r in caplog.records)
