"""Discovery as AWS STS fetches it: exact fields, byte-equal issuer, cacheable, no redirects."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from broker.testing.live import LiveBroker, StartBroker, wait_until
from tests.server.test_key_rotation import key_store, keys_published_an_hour_ago

DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker()


def test_discovery_fields_match_design(broker: LiveBroker) -> None:
    resp = broker.client.get(DISCOVERY)
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["issuer"] == broker.url
    assert doc["jwks_uri"] == f"{broker.url}/.well-known/jwks.json"
    assert doc["response_types_supported"] == ["id_token"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]  # the default key's alg
    assert {"iss", "sub", "aud", "iat", "exp", "agentkeys_user_wallet"} <= set(
        doc["claims_supported"]
    )


def test_issuer_is_byte_equal_to_configured_issuer(live_broker: StartBroker) -> None:
    broker = live_broker(issuer=None)
    raw = broker.client.get(DISCOVERY).content
    assert f'"issuer":{json.dumps(broker.settings.oidc_issuer)}'.encode() in raw


def test_headers_json_short_cache_strong_etag(broker: LiveBroker) -> None:
    resp = broker.client.get(DISCOVERY)
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "public, max-age=60"
    etag = resp.headers["etag"]
    assert re.fullmatch(r'"[A-Za-z0-9_-]+"', etag), f"not a strong ETag: {etag}"
    assert int(resp.headers["content-length"]) == len(resp.content)


@pytest.mark.parametrize("path", [DISCOVERY, "/.well-known/jwks.json"])
def test_if_none_match_gives_304_without_body(broker: LiveBroker, path: str) -> None:
    etag = broker.client.get(path).headers["etag"]
    resp = broker.client.get(path, headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.content == b""
    assert resp.headers["etag"] == etag
    other = broker.client.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    # The tag in a second header line counts too (one list, RFC 9110).
    lines = [("If-None-Match", '"something-else"'), ("If-None-Match", etag)]
    assert broker.client.get(path, headers=lines).status_code == 304


@pytest.mark.parametrize("path", [DISCOVERY, "/.well-known/jwks.json"])
def test_head_has_headers_and_no_body(broker: LiveBroker, path: str) -> None:
    get = broker.client.get(path)
    head = broker.client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.parametrize("path", [DISCOVERY + "/", "/.well-known/jwks.json/", "/.well-known"])
def test_no_redirects_near_the_documents(broker: LiveBroker, path: str) -> None:
    resp = broker.client.get(path, follow_redirects=False)
    assert resp.status_code == 404
    assert "location" not in resp.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_get_405_with_allow(broker: LiveBroker, method: str) -> None:
    resp = broker.client.request(method, DISCOVERY)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"
    assert resp.json()["error"] == "method_not_allowed"


def test_https_loopback_issuer_serves_over_tls(live_broker: StartBroker, tls_ca) -> None:  # type: ignore[no-untyped-def]
    broker = live_broker(tls=tls_ca)
    assert broker.url.startswith("https://127.0.0.1:")
    assert broker.client.get(DISCOVERY).json()["jwks_uri"] == f"{broker.url}/.well-known/jwks.json"


def signing_algs(broker: LiveBroker) -> list[str]:
    return broker.client.get(DISCOVERY).json()["id_token_signing_alg_values_supported"]  # type: ignore[no-any-return]


def jwks_algs(broker: LiveBroker) -> set[str]:
    return {k["alg"] for k in broker.client.get("/.well-known/jwks.json").json()["keys"]}


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_discovery_lists_only_the_algorithms_the_jwks_holds_keys_for(
    live_broker: StartBroker, alg: str
) -> None:
    broker = live_broker(key_algorithm=alg)
    assert signing_algs(broker) == [alg]
    assert jwks_algs(broker) == {alg}


def test_discovery_lists_a_second_algorithm_once_a_key_of_it_is_published(
    live_broker: StartBroker, tmp_path: Path
) -> None:
    # An ES256 broker switched to RS256: the rotation publishes an RS256 next key while the
    # ES256 keys stay (active and retiring), so discovery must list both, and change its ETag.
    data = keys_published_an_hour_ago(tmp_path / "data", "ES256")
    broker = live_broker(key_algorithm="RS256", data_dir=data)
    assert signing_algs(broker) == ["ES256"]
    etag = broker.client.get(DISCOVERY).headers["etag"]
    key_store(data, "RS256").rotate(int(time.time()))
    wait_until(lambda: jwks_algs(broker) == {"ES256", "RS256"})
    assert signing_algs(broker) == ["ES256", "RS256"]
    assert broker.client.get(DISCOVERY, headers={"If-None-Match": etag}).status_code == 200
