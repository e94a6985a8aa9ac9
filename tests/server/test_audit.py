"""Every mint attempt is audited, and no token leaves before its record is on disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from broker.main import main
from broker.testing.live import (
    LiveBroker,
    StartBroker,
    free_loopback_url,
    spawn_broker,
    wait_until,
)


def audit_rows(data: Path, result: str | None = None) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data / "broker.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [r for r in rows if result is None or r["result"] == result]


def session(broker: LiveBroker) -> str:
    return str(broker.client.post("/session/create", json={"auth_token": "a"}).json()["session"])


def test_1000_concurrent_mints_have_1000_success_records(live_broker: StartBroker) -> None:
    broker = live_broker(rate_limits=False)
    bearer = session(broker)

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=broker.url, limits=limits, timeout=30) as client:
            headers = {"Authorization": f"Bearer {bearer}"}
            responses = await asyncio.gather(
                *(client.post("/v1/mint-oidc-jwt", headers=headers) for _ in range(1000))
            )
        return [r.json()["jti"] for r in responses if r.status_code == 200]

    jtis = asyncio.run(run())
    assert len(jtis) == 1000
    recorded = {r["jti"] for r in audit_rows(broker.settings.data_dir, "ok")}
    assert recorded == set(jtis)


def refusal_rows(data: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data / "broker.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM refusals ORDER BY minute, client, error").fetchall()
    finally:
        conn.close()


def test_refusals_are_recorded_with_their_code(live_broker: StartBroker) -> None:
    broker = live_broker()
    broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": "Bearer fps_nope"})
    good = {"Authorization": f"Bearer {session(broker)}"}
    broker.client.post("/v1/mint-oidc-jwt", headers=good, json={"scope": "0xdeadbeef"})
    minted = broker.client.post("/v1/mint-oidc-jwt", headers=good).json()
    # refusals are written without waiting; the success after them commits them too
    rows = audit_rows(broker.settings.data_dir)
    assert [(r["result"], r["caller_kind"]) for r in rows] == [
        ("scope_not_allowed", "fed"),
        ("ok", "fed"),
    ]
    assert rows[1]["kid"]
    assert rows[1]["exp"] == minted["expiration"]
    assert rows[1]["sub"].startswith("agentkeys:agent:0x")
    assert rows[0]["client"] == "127.0.0.1"
    # before authentication there is nobody to hold to account: a count per address and minute
    [(client, error, count)] = [
        (r["client"], r["error"], r["count"]) for r in refusal_rows(broker.settings.data_dir)
    ]
    assert (client, error, count) == ("127.0.0.1", "unauthorized", 1)


def test_a_flood_of_junk_bearers_adds_a_bounded_number_of_rows(live_broker: StartBroker) -> None:
    broker = live_broker(unauth_burst=50, unauth_rate_per_second=1)
    junk = 600

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=broker.url, timeout=10) as client:

            async def worker(n: int) -> list[int]:
                return [
                    (
                        await client.post(
                            "/v1/mint-oidc-jwt", headers={"Authorization": "Bearer junk"}
                        )
                    ).status_code
                    for _ in range(n)
                ]

            results = await asyncio.gather(*(worker(junk // 30) for _ in range(30)))
            return [s for r in results for s in r]

    statuses = asyncio.run(flood())
    assert sorted(set(statuses)) == [401, 429]
    # a success commits whatever was counted before it
    broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {session(broker)}"})
    data = broker.settings.data_dir
    assert [r["result"] for r in audit_rows(data)] == ["ok"]
    refusals = refusal_rows(data)
    minutes = {r["minute"] for r in refusals}
    assert len(refusals) <= 2 * len(minutes) <= 2 * 2  # (401, 429) per minute; the flood spans <= 2
    assert sum(r["count"] for r in refusals) == junk
    assert {(r["client"], r["error"]) for r in refusals} == {
        ("127.0.0.1", "unauthorized"),
        ("127.0.0.1", "rate_limited"),
    }


def test_audit_command_lists_and_filters(live_broker: StartBroker) -> None:
    broker = live_broker()
    broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {session(broker)}"})
    env = {"BROKER_DATA_DIR": str(broker.settings.data_dir)}
    out = CliRunner().invoke(main, ["audit", "--caller", "fed", "--json"], env=env)
    assert out.exit_code == 0, out.output
    [record] = json.loads(out.output)["records"]
    assert record["result"] == "ok"
    later = CliRunner().invoke(
        main, ["audit", "--since", "2999-01-01T00:00:00Z", "--json"], env=env
    )
    assert json.loads(later.output)["records"] == []
    text = CliRunner().invoke(main, ["audit"], env=env).output
    assert text.splitlines()[0].split()[:3] == ["TIME", "KIND", "CALLER"]


@pytest.mark.integration
def test_sigkill_mid_load_loses_no_record_of_a_delivered_token(tmp_path: Path) -> None:
    url = free_loopback_url()
    env = {"BROKER_OIDC_ISSUER": url, "BROKER_DATA_DIR": str(tmp_path), "BROKER_RATE_LIMITS": "off"}
    proc = spawn_broker(env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bearer = httpx.post(f"{url}/session/create", json={"auth_token": "k"}).json()["session"]
        received: list[str] = []
        enough = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=url, timeout=5) as client:
                while True:
                    try:
                        resp = client.post(
                            "/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"}
                        )
                    except httpx.HTTPError:
                        return  # the broker is gone
                    received.append(resp.json()["jti"])
                    if len(received) >= 200:
                        enough.set()

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        assert enough.wait(60)
        os.killpg(proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    recorded = {r["jti"] for r in audit_rows(tmp_path, "ok")}
    missing = set(received) - recorded
    assert received
    assert missing == set()


def test_refusals_from_many_addresses_count_under_star_past_the_bound(
    live_broker: StartBroker,
) -> None:
    from broker.server.audit import MAX_REFUSAL_CLIENTS

    broker = live_broker(trusted_proxies=["127.0.0.1"])
    addresses = [f"10.0.{i // 200}.{i % 200}" for i in range(MAX_REFUSAL_CLIENTS + 40)]
    for address in addresses:
        broker.client.post(
            "/v1/mint-oidc-jwt",
            headers={"Authorization": "Bearer junk", "X-Forwarded-For": address},
        )
    broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {session(broker)}"})
    refusals = refusal_rows(broker.settings.data_dir)
    per_minute: dict[int, set[str]] = {}
    for r in refusals:
        per_minute.setdefault(r["minute"], set()).add(r["client"])
    assert all(len(clients) <= MAX_REFUSAL_CLIENTS + 1 for clients in per_minute.values())
    if len(per_minute) == 1:  # else the requests straddled a minute and may each fit the bound
        assert "*" in next(iter(per_minute.values()))
    assert sum(r["count"] for r in refusals) == len(addresses)


def test_a_federation_sessions_429s_are_counted_not_recorded(live_broker: StartBroker) -> None:
    # A session costs nothing to make, so its refusals at the rate limit are as free as junk.
    broker = live_broker(mint_burst=2, mint_rate_per_second=0.01)
    good = {"Authorization": f"Bearer {session(broker)}"}
    statuses = [
        broker.client.post("/v1/mint-oidc-jwt", headers=good).status_code for _ in range(40)
    ]
    assert statuses == [200, 200] + [429] * 38
    broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": "Bearer junk"})
    data = broker.settings.data_dir
    wait_until(lambda: sum(r["count"] for r in refusal_rows(data)) == 39)
    assert [r["result"] for r in audit_rows(data)] == ["ok", "ok"]
