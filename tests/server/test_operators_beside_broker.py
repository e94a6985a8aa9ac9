"""Operators run the CLI beside a live, minting broker, as separate processes, then kill it.

The store must come through intact: changes take effect in the running broker at once, every
token a client received has its audit record, and nothing revoked comes back after a restart.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Self

import httpx
import pytest

from broker.testing.live import free_loopback_url, spawn_broker

MINT = "/v1/mint-oidc-jwt"


class Operator:
    """`test-broker …` as its own process, like a person at a shell beside the broker."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}

    def run(self, *args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "broker", *args, "--json"],
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)  # type: ignore[no-any-return]


class Load:
    """Clients minting without pause; every token they receive is remembered."""

    def __init__(self, url: str, bearers: list[tuple[str, dict[str, str]]]) -> None:
        self.url = url
        self.bearers = bearers
        self.received: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(b,)) for b in bearers]

    def _run(self, bearer: tuple[str, dict[str, str]]) -> None:
        secret, body = bearer
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    resp = client.post(MINT, headers=headers, json=body)
                except httpx.HTTPError:
                    return  # the broker is gone
                if resp.status_code == 200:
                    self.received.append(resp.json()["jti"])

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture
def broker_env(tmp_path: Path) -> dict[str, str]:
    return {
        "BROKER_OIDC_ISSUER": free_loopback_url(),
        "BROKER_DATA_DIR": str(tmp_path / "data"),
        "BROKER_CREDENTIAL_MINTING": "true",
        "BROKER_RATE_LIMITS": "off",
    }


@pytest.fixture
def start(broker_env: dict[str, str]) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def spawn() -> subprocess.Popen[str]:
        procs.append(spawn_broker(broker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs[-1]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def mint(url: str, secret: str, **body: object) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{url}{MINT}", headers=headers, json=body, timeout=10).status_code


@pytest.mark.integration
def test_cli_beside_a_minting_broker_then_sigkill_keeps_the_store_whole(
    broker_env: dict[str, str], start: object
) -> None:
    url, data = broker_env["BROKER_OIDC_ISSUER"], Path(broker_env["BROKER_DATA_DIR"])
    op = Operator({k: v for k, v in broker_env.items() if k != "BROKER_OIDC_ISSUER"})
    proc = start()  # type: ignore[operator]
    session = httpx.post(f"{url}/session/create", json={"auth_token": "load"}).json()["session"]
    runner = op.run("credentials", "add", "--kind", "ci", "--name", "runner")
    doomed = op.run("credentials", "add", "--kind", "ci", "--name", "doomed")
    rotated = op.run("credentials", "add", "--kind", "ci", "--name", "rotated")
    bearers = [
        (session, {}),
        (session, {}),
        (str(runner["secret"]), {"scope": "ci/runner/load"}),
    ]
    with Load(url, bearers) as load:
        assert mint(url, str(doomed["secret"]), scope="ci/doomed/x") == 200
        op.run("credentials", "revoke", "doomed")
        # the running broker reads the store on every mint: refused at once, no restart
        assert mint(url, str(doomed["secret"]), scope="ci/doomed/x") == 401

        alice = op.run("credentials", "add", "--kind", "dev", "--name", "alice")
        assert mint(url, str(alice["secret"])) == 200

        new = op.run("credentials", "rotate", "rotated", "--grace", "0")
        assert mint(url, str(new["secret"]), scope="ci/rotated/x") == 200
        assert mint(url, str(rotated["secret"]), scope="ci/rotated/x") == 401

        for _ in range(3):
            listed = op.run("audit")
            assert listed["records"]
            assert op.run("keys", "list")["keys"]
        tokens_before_kill = len(load.received)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert tokens_before_kill > 0

    with closing(sqlite3.connect(data / "broker.sqlite3")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        recorded = {jti for (jti,) in conn.execute("SELECT jti FROM audit WHERE result = 'ok'")}
    assert set(load.received) - recorded == set()

    start()  # type: ignore[operator]
    assert mint(url, str(doomed["secret"]), scope="ci/doomed/x") == 401
    assert mint(url, str(rotated["secret"]), scope="ci/rotated/x") == 401
    assert mint(url, str(new["secret"]), scope="ci/rotated/x") == 200
    assert mint(url, str(alice["secret"])) == 200
    listed = op.run("credentials", "list")["credentials"]
    assert isinstance(listed, list)
    names = {c["name"]: c["revoked_at"] for c in listed}
    assert names.keys() == {"runner", "doomed", "rotated", "alice"}
    assert names["doomed"] is not None
