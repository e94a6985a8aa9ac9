"""With no caller kind enabled, minting routes are indistinguishable from unknown routes."""

from __future__ import annotations

import logging

import pytest

from broker.server.app import create_app
from broker.testing.live import LiveBroker, StartBroker

PUBLIC = "https://oidc.example.com"


@pytest.fixture
def inert(live_broker: StartBroker) -> LiveBroker:
    return live_broker(issuer=PUBLIC)


def comparable(resp) -> tuple[int, bytes, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    return resp.status_code, resp.content, sorted(resp.headers.multi_items())


@pytest.mark.parametrize("method", ["POST", "GET", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/session/create", "/v1/mint-oidc-jwt"])
def test_mint_routes_answer_exactly_like_an_unknown_route(
    inert: LiveBroker, method: str, path: str
) -> None:
    kwargs = {"json": {"auth_token": "federation-proof"}} if method in ("POST", "PUT") else {}
    real = inert.client.request(method, path, **kwargs)  # type: ignore[arg-type]
    unknown = inert.client.request(method, "/v1/does-not-exist", **kwargs)  # type: ignore[arg-type]
    assert real.status_code == 404
    assert comparable(real) == comparable(unknown)


def test_inert_broker_still_publishes_discovery_and_jwks(inert: LiveBroker) -> None:
    assert inert.client.get("/.well-known/openid-configuration").json()["issuer"] == PUBLIC
    assert inert.client.get("/.well-known/jwks.json").json()["keys"]


def test_openapi_of_an_inert_broker_does_not_mention_minting(inert: LiveBroker) -> None:
    paths = inert.client.get("/openapi.json").json()["paths"]
    assert "/v1/mint-oidc-jwt" not in paths
    assert "/session/create" not in paths


def test_opt_in_enables_minting_on_a_public_issuer_and_warns(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        oidc_issuer=PUBLIC, federation_proof=True, allow_open_federation_proof=True
    )
    with caplog.at_level(logging.WARNING, logger="broker"):
        create_app(settings)
    assert any("open federation-proof minting is ON" in r.message for r in caplog.records)


def test_loopback_issuer_enables_federation_without_a_warning(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="broker"):
        create_app(make_settings())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_seaweedfs_claim_on_a_public_issuer_warns(make_settings, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="broker"):
        create_app(make_settings(oidc_issuer=PUBLIC, seaweedfs_tags_claim=True))
    assert any("seaweedfs_tags_claim is ON" in r.message for r in caplog.records)
