"""Rate limits: per caller, per address for failed authentication; never on discovery/JWKS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from broker.config import Settings
from broker.errors import RateLimited
from broker.server.app import create_app
from broker.server.ratelimit import RateLimiter
from broker.testing.live import LiveBroker, StartBroker
from tests.callers.test_credentials import cli, mint

MINT = "/v1/mint-oidc-jwt"


def dev_secret(broker: LiveBroker, name: str) -> str:
    added = cli(broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", name)
    return str(added["secret"])


def test_a_caller_past_its_burst_gets_429_with_retry_after(live_broker: StartBroker) -> None:
    broker = live_broker(credential_minting=True, mint_burst=3, mint_rate_per_second=0.01)
    alice, bob = (dev_secret(broker, name) for name in ("alice", "bob"))
    statuses = [mint(broker, alice).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = mint(broker, alice)
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert mint(broker, bob).status_code == 200  # another caller is not affected


def test_federation_mints_are_limited_per_address_whatever_the_wallet(
    live_broker: StartBroker,
) -> None:
    # The caller picks its wallet by picking a proof: a fresh wallet must not mean a fresh budget.
    broker = live_broker(mint_burst=2, mint_rate_per_second=0.01)
    sessions = [
        broker.client.post("/session/create", json={"auth_token": f"p{i}"}).json()["session"]
        for i in range(3)
    ]
    statuses = [mint(broker, session).status_code for session in sessions]
    assert statuses == [200, 200, 429]


def test_failed_authentication_is_limited_per_address(live_broker: StartBroker) -> None:
    broker = live_broker(unauth_burst=5, unauth_rate_per_second=0.01)
    bad = {"Authorization": "Bearer fps_guess"}
    statuses = [broker.client.post(MINT, headers=bad).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    refused = broker.client.post("/session/create", json={"auth_token": "invalid"})
    assert refused.status_code == 429  # the same address, still cooling down


def test_bad_bearers_from_an_address_do_not_lock_out_callers_that_authenticate(
    live_broker: StartBroker,
) -> None:
    # A NAT, a proxy without trusted_proxies, other jobs on the runner: one address, many callers.
    broker = live_broker(
        credential_minting=True, unauth_burst=2, unauth_rate_per_second=0.01, mint_burst=40
    )
    ci = cli(
        broker.settings.data_dir,
        "credentials", "add", "--kind", "ci", "--name", "web", "--scope-pattern", "ci/web/run-*",
    )  # fmt: skip
    bad = {"Authorization": "Bearer otb_ci_000000000000_guess"}
    statuses = []
    for i in range(20):
        flood = [broker.client.post(MINT, headers=bad).status_code for _ in range(10)]
        assert set(flood) <= {401, 429}
        statuses.append(mint(broker, str(ci["secret"]), scope=f"ci/web/run-{i}").status_code)
    assert statuses == [200] * 20
    session = broker.client.post("/session/create", json={"auth_token": "x"})
    assert session.status_code == 200
    assert mint(broker, session.json()["session"]).status_code == 200


def test_discovery_and_jwks_are_never_limited(live_broker: StartBroker) -> None:
    broker = live_broker(unauth_burst=1, mint_burst=1, unauth_rate_per_second=0.01)
    broker.client.post(MINT, headers={"Authorization": "Bearer fps_guess"})
    broker.client.post(MINT, headers={"Authorization": "Bearer fps_guess"})
    for _ in range(50):
        assert broker.client.get("/.well-known/jwks.json").status_code == 200
        assert broker.client.get("/.well-known/openid-configuration").status_code == 200


def test_rate_limits_off_warns(make_settings, caplog) -> None:  # type: ignore[no-untyped-def]
    from broker.server.app import create_app

    create_app(make_settings(rate_limits=False))
    assert any("rate limits are OFF" in r.message for r in caplog.records)


@pytest.mark.parametrize("trusted", [False, True])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    live_broker: StartBroker, trusted: bool
) -> None:
    proxies = ["127.0.0.1"] if trusted else []
    broker = live_broker(unauth_burst=2, unauth_rate_per_second=0.01, trusted_proxies=proxies)
    statuses = [
        broker.client.post(
            MINT, headers={"Authorization": "Bearer fps_guess", "X-Forwarded-For": f"10.0.0.{i}"}
        ).status_code
        for i in range(3)
    ]
    # Untrusted, the header is ignored and all three come from one address.
    assert statuses == ([401, 401, 401] if trusted else [401, 401, 429])


@pytest.mark.parametrize(
    ("path", "body"), [(MINT, b"{}"), ("/session/create", b'{"auth_token": ""}')]
)
def test_concurrent_failures_cannot_all_pass_the_check(
    make_settings: Callable[..., Settings], path: str, body: bytes
) -> None:
    # Bodies that arrive late hold every request at its await until all of them are waiting.
    app = create_app(make_settings(unauth_burst=3, unauth_rate_per_second=0.01))
    total = 12

    async def run() -> list[int]:
        waiting = 0
        gate = asyncio.Event()

        async def late_body() -> AsyncIterator[bytes]:
            nonlocal waiting
            waiting += 1
            if waiting == total:
                gate.set()
            await gate.wait()
            yield body

        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": "Bearer fps_guess", "Content-Type": "application/json"}
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            posts = [client.post(path, headers=headers, content=late_body()) for _ in range(total)]
            return [r.status_code for r in await asyncio.gather(*posts)]

    assert sorted(asyncio.run(run())) == [401] * 3 + [429] * (total - 3)


def test_a_flood_of_fresh_addresses_does_not_wipe_anyones_debt() -> None:
    limiter = RateLimiter(rate=0.001, burst=2, what="failed authentications", max_keys=50)
    for _ in range(2):
        limiter.spend("victim", 0.0)
    for i in range(1000):  # each new address looks once and goes away with a full bucket
        limiter.check(f"10.0.{i // 250}.{i % 250}", 1.0)
    with pytest.raises(RateLimited):
        limiter.check("victim", 2.0)
    assert len(limiter) <= 50


def test_retry_after_stays_finite_at_the_slowest_rate_allowed(live_broker: StartBroker) -> None:
    # 5e-324 once overflowed math.ceil into a 500; config now bounds rates at 0.001/s.
    broker = live_broker(unauth_burst=1, unauth_rate_per_second=0.001)
    bad = {"Authorization": "Bearer fps_guess"}
    assert broker.client.post(MINT, headers=bad).status_code == 401
    refused = broker.client.post(MINT, headers=bad)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1000"
    limiter = RateLimiter(rate=0.001, burst=1, what="mints")
    for _ in range(10_000):  # spends racing past the check (mint_api.py) drive it negative
        limiter.spend("k", 0.0)
    with pytest.raises(RateLimited) as err:
        limiter.check("k", 0.0)
    assert err.value.retry_after == 10_000_000


def test_refused_bodies_spend_the_callers_own_bucket(live_broker: StartBroker) -> None:
    broker = live_broker(credential_minting=True, mint_burst=3, mint_rate_per_second=0.01)
    alice = dev_secret(broker, "alice")
    headers = {"Authorization": f"Bearer {alice}", "Content-Type": "application/json"}
    bad = [broker.client.post(MINT, headers=headers, content=b"{bad").status_code for _ in range(4)]
    assert bad == [400, 400, 400, 429]
    assert mint(broker, alice).status_code == 429
