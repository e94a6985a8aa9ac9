"""Trusted issuers' keys: fetched over https, cached, refreshed on an unknown kid at most once per
interval, and kept when a refresh fails."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import trustme

from broker.config.trusted_issuers import TrustedIssuer
from broker.errors import InvalidGrant, IssuerUnavailable
from broker.net.bounded_fetch import FetchFailed
from broker.server.issuer_keys import IssuerKeys, Key, fetch_keys
from broker.testing.ci_issuer import StandInIssuer, new_key, stand_in_issuer

TABLE = TrustedIssuer(
    preset="github-actions", audience="https://broker.test", conditions={"repository": "acme/*"}
)
OLD, NEW = new_key("RS256"), new_key("ES256")


class Provider:
    """What the issuer publishes now, and how often it was asked."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {"old": OLD}
        self.calls = 0
        self.down = False

    def __call__(self, table: TrustedIssuer) -> dict[str, Key]:
        self.calls += 1
        if self.down:
            raise FetchFailed("connection refused")
        return dict(self.keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[IssuerKeys, Provider, Clock]:
    provider, clock = Provider(), Clock()
    return IssuerKeys(provider, min_interval=60, max_age=3600, clock=clock), provider, clock


def key(keys: IssuerKeys, kid: str) -> Key:
    return asyncio.run(keys.key(TABLE, kid))


def test_a_known_kid_is_served_from_the_cache(setup: tuple[IssuerKeys, Provider, Clock]) -> None:
    keys, provider, clock = setup
    assert key(keys, "old") is OLD
    clock.now += 3599
    assert key(keys, "old") is OLD
    assert provider.calls == 1
    clock.now += 1  # an hour on, the keys are fetched again
    key(keys, "old")
    assert provider.calls == 2


def test_an_unknown_kid_refreshes_at_most_once_per_interval(
    setup: tuple[IssuerKeys, Provider, Clock],
) -> None:
    keys, provider, clock = setup
    key(keys, "old")
    provider.keys["new"] = NEW  # the provider rotates
    clock.now += 30
    for _ in range(5):  # within the interval: no fetch, however many junk kids arrive
        with pytest.raises(InvalidGrant, match="'new' is not published"):
            key(keys, "new")
    assert provider.calls == 1
    clock.now += 30
    assert key(keys, "new") is NEW
    assert provider.calls == 2


def test_a_failed_refresh_keeps_the_keys_held(setup: tuple[IssuerKeys, Provider, Clock]) -> None:
    keys, provider, clock = setup
    key(keys, "old")
    provider.down = True
    clock.now += 4000
    assert key(keys, "old") is OLD  # stale, but the issuer is down: still the best answer


def test_an_issuer_never_reached_is_503_and_not_hammered(
    setup: tuple[IssuerKeys, Provider, Clock],
) -> None:
    keys, provider, clock = setup
    provider.down = True
    for _ in range(3):
        with pytest.raises(IssuerUnavailable, match="retry"):
            key(keys, "old")
    assert provider.calls == 1
    provider.down = False
    clock.now += 60
    assert key(keys, "old") is OLD


def test_concurrent_unknown_kids_share_one_fetch(
    setup: tuple[IssuerKeys, Provider, Clock],
) -> None:
    keys, provider, _ = setup

    async def many() -> list[Key]:
        return await asyncio.gather(*(keys.key(TABLE, "old") for _ in range(20)))

    assert all(k is OLD for k in asyncio.run(many()))
    assert provider.calls == 1


@pytest.fixture(scope="module")
def github(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca) as issuer:
        yield issuer


def test_fetch_keys_reads_discovery_then_jwks_over_https(github: StandInIssuer) -> None:
    table = TrustedIssuer.model_validate(github.table("https://broker.test"))
    fetched = fetch_keys(table)
    assert list(fetched) == [github.kid]


def test_fetch_keys_skips_keys_it_would_never_verify_with(github: StandInIssuer) -> None:
    table = TrustedIssuer.model_validate(github.table("https://broker.test"))
    extra = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "p384", "crv": "P-384", **_p384()},
        {"kty": "EC", "kid": "p999", "crv": "P-999", **_p384()},  # joserfc raises KeyError on it
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        github.jwks()["keys"][0] | {"kid": "rs512", "alg": "RS512"},
        "not a key",
    ]
    original = github.jwks
    github.jwks = lambda: {"keys": original()["keys"] + extra}  # type: ignore[method-assign]
    try:
        assert list(fetch_keys(table)) == [github.kid]
    finally:
        github.jwks = original  # type: ignore[method-assign]


def _p384() -> dict[str, str]:
    from joserfc.jwk import ECKey

    public = ECKey.generate_key("P-384", private=False).as_dict(private=False)
    return {"x": public["x"], "y": public["y"]}


def test_without_the_ca_the_issuer_is_not_trusted(github: StandInIssuer) -> None:
    table = TrustedIssuer.model_validate(github.table("https://broker.test", ca_file=None))
    with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_keys(table)


def test_discovery_naming_another_issuer_is_refused(github: StandInIssuer) -> None:
    url = github.url.replace("127.0.0.1", "localhost")
    table = TrustedIssuer.model_validate(github.table("https://broker.test", issuer=url))
    with pytest.raises(FetchFailed, match="not itself"):
        fetch_keys(table)
