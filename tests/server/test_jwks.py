"""The JWKS holds exactly what AWS accepts: public members only, RFC 7638 kids, next + active."""

from __future__ import annotations

import pytest
from joserfc.jwk import import_key

from broker.testing.live import LiveBroker, StartBroker

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
def test_jwks_publishes_only_public_sig_keys(live_broker: StartBroker, alg: str, kty: str) -> None:
    broker: LiveBroker = live_broker(key_algorithm=alg)
    keys = broker.client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 2  # the active key and the published next key
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk), f"private material published: {jwk}"
        assert "key_ops" not in jwk
        assert (jwk["kty"], jwk["alg"], jwk["use"]) == (kty, alg, "sig")
        assert jwk["kid"] == import_key(jwk).thumbprint()
        if kty == "RSA":
            assert import_key(jwk).raw_value.key_size >= 2048
    assert len({k["kid"] for k in keys}) == 2


def test_rsa_key_size_is_configurable_and_at_least_2048(live_broker: StartBroker) -> None:
    broker: LiveBroker = live_broker(key_algorithm="RS256", rsa_key_bits=3072)
    for jwk in broker.client.get("/.well-known/jwks.json").json()["keys"]:
        assert import_key(jwk).raw_value.key_size == 3072
