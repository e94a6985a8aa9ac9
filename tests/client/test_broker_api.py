"""Minting over HTTP: outages are retried with growing backoff, refusals never, each in one line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from broker.client import BrokerApi, config_from_env
from broker.client.broker_api import ATTEMPTS
from broker.errors import BrokerRefused, BrokerUnavailable
from broker.testing.live import LiveBroker, StartBroker, free_loopback_url
from tests.client.scripted_server import scripted

MINTED = {
    "jwt": "a.b.c",
    "wallet": "dev/a",
    "expiration": 2,
    "scope": "dev/a",
    "sub": "s",
    "jti": "j",
}


@contextlib.contextmanager
def _api(url: str, delays: list[float]) -> Iterator[BrokerApi]:
    api = BrokerApi(config_from_env({}, url=url, bearer="otb_dev_x_y"), sleep=delays.append)
    with contextlib.closing(api):
        yield api


@pytest.mark.parametrize("outage", [(503, {"error": "not_ready", "message": "m"}), (502, "<html>")])
def test_a_5xx_is_retried_with_growing_backoff_until_it_succeeds(
    outage: tuple[int, object],
) -> None:
    delays: list[float] = []
    with scripted([outage, outage, (200, MINTED)]) as (url, script), _api(url, delays) as api:
        token = api.mint("dev/a", 60)
    assert (token.jwt, len(script.requests)) == ("a.b.c", 3)
    assert json.loads(script.requests[0][2]) == {"scope": "dev/a", "ttl_seconds": 60}
    assert len(delays) == 2
    assert delays[1] > delays[0] > 0


def test_a_broker_that_keeps_failing_is_one_error_after_every_attempt() -> None:
    delays: list[float] = []
    outage = (503, {"error": "audit_unavailable", "message": "disk full"})
    with (
        scripted([outage] * ATTEMPTS) as (url, script),
        _api(url, delays) as api,
        pytest.raises(BrokerUnavailable) as caught,
    ):
        api.mint()
    assert len(script.requests) == ATTEMPTS
    assert str(caught.value) == (
        f"the broker at {url} answered 503 audit_unavailable: disk full "
        f"(gave up after {ATTEMPTS} attempts)"
    )


def test_an_unreachable_broker_is_retried_then_reported() -> None:
    delays: list[float] = []
    url = free_loopback_url()  # nothing listens there
    with (
        _api(url, delays) as api,
        pytest.raises(BrokerUnavailable, match=f"cannot reach the broker at {url}"),
    ):
        api.mint()
    assert len(delays) == ATTEMPTS - 1


@pytest.mark.parametrize("status", [400, 401, 403, 429])
def test_a_4xx_is_never_retried_and_carries_the_brokers_code(status: int) -> None:
    delays: list[float] = []
    refusal = {"error": "scope_not_allowed", "message": "ask for less", "allowance": "ci/w/*"}
    with (
        scripted([(status, refusal), (200, MINTED)]) as (url, script),
        _api(url, delays) as api,
        pytest.raises(BrokerRefused) as caught,
    ):
        api.mint("ci/w/x/y")
    assert (len(script.requests), delays) == (1, [])
    error = caught.value
    assert (error.broker_status, error.broker_code, error.allowance) == (
        status,
        "scope_not_allowed",
        "ci/w/*",
    )
    assert (
        str(error) == f"the broker refused the request ({status} scope_not_allowed): ask for less"
    )


def test_a_mint_without_scope_or_ttl_sends_no_body_as_upstream_scripts_do() -> None:
    with scripted([(200, MINTED)]) as (url, script), _api(url, []) as api:
        api.mint()
    (path, headers, body) = script.requests[0]
    assert (path, body, headers["Authorization"]) == (
        "/v1/mint-oidc-jwt",
        b"",
        "Bearer otb_dev_x_y",
    )


def test_a_forgotten_federation_session_is_replaced_once(live_broker: StartBroker) -> None:
    broker: LiveBroker = live_broker(session_ttl_seconds=60)
    with contextlib.closing(
        BrokerApi(config_from_env({}, url=broker.url, federation_proof=True))
    ) as api:
        first = api.mint()
        api._session = "fps_forgotten"  # as after a broker restart: the session is unknown
        assert api.mint().wallet == first.wallet


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ((200, "<html>welcome to nginx</html>"), "answered not a JSON object: <html>welcome"),
        ((200, ["jwt"]), "answered not a JSON object"),
        ((200, {"jwt": "a.b.c"}), "answered no usable 'expiration'"),
    ],
)
def test_a_200_that_is_not_a_mint_answer_is_one_sentence(
    reply: tuple[int, object], says: str
) -> None:
    with (
        scripted([reply]) as (url, script),
        _api(url, []) as api,
        pytest.raises(BrokerUnavailable) as caught,
    ):
        api.mint()
    assert says in str(caught.value)
    assert str(caught.value).endswith(f"is {url} the broker?")
    assert len(script.requests) == 1
