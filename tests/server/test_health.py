"""Liveness and readiness (keys loaded, data dir writable), each check reported by name."""

from __future__ import annotations

import shutil

import pytest

from broker.errors import IssuerNotConformant
from broker.server.app import create_app
from broker.store import key_records
from broker.testing.live import StartBroker


def test_healthz_is_ok(live_broker: StartBroker) -> None:
    resp = live_broker().client.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


def test_readyz_reports_each_check(live_broker: StartBroker) -> None:
    resp = live_broker().client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ready",
        "checks": {"keys_loaded": True, "data_dir_writable": True, "sts_conformance": True},
    }


def test_readyz_fails_when_the_data_dir_is_gone(live_broker: StartBroker) -> None:
    broker = live_broker()
    shutil.rmtree(broker.settings.data_dir)
    resp = broker.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["status"] == "not_ready"
    assert resp.json()["checks"]["data_dir_writable"] is False
    # discovery keeps working from memory: STS must never see the issuer flap
    assert broker.client.get("/.well-known/jwks.json").status_code == 200


def test_serve_refuses_to_start_when_private_material_would_be_published(
    make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # A fault no configuration can produce: force the JWK renderer to leak "d".
    real = key_records.public_jwk
    monkeypatch.setattr(key_records, "public_jwk", lambda key, alg: real(key, alg) | {"d": "leak"})
    with pytest.raises(IssuerNotConformant, match=r"jwks\.private_material"):
        create_app(make_settings())
