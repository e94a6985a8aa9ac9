"""/metrics: mint results, per-route latency, published keys, and STS-visible fetches."""

from __future__ import annotations

import re

from broker.testing.live import StartBroker


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{sample} not in metrics"
    return float(match.group(1))


def test_metrics_count_mints_fetches_and_keys(live_broker: StartBroker) -> None:
    broker = live_broker()
    c = broker.client
    bearer = c.post("/session/create", json={"auth_token": "m"}).json()["session"]
    c.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"})
    c.post("/v1/mint-oidc-jwt", headers={"Authorization": "Bearer fps_bad"})
    c.get("/.well-known/jwks.json")
    c.get("/.well-known/jwks.json")
    c.get("/.well-known/openid-configuration")
    resp = c.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert value(text, 'broker_mint_total{caller="fed",result="ok"}') == 1
    assert value(text, 'broker_mint_total{caller="unknown",result="unauthorized"}') == 1
    assert value(text, 'broker_wellknown_fetch_total{document="jwks",status="200"}') == 2
    assert value(text, 'broker_wellknown_fetch_total{document="discovery",status="200"}') == 1
    assert value(text, 'broker_wellknown_last_fetch_timestamp_seconds{document="jwks"}') > 1e9
    assert value(text, 'broker_request_seconds_count{route="/v1/mint-oidc-jwt"}') == 2
    assert value(text, "broker_published_keys") == 2
