"""Rotation on a running broker: done by the CLI, picked up without a restart, no token orphaned."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt as pyjwt
import pytest
from click.testing import CliRunner

from broker.callers.claims import MintRequest
from broker.cli import main as broker_cli
from broker.config import Settings
from broker.server.keyring import KeyRing
from broker.server.mint import Minter
from broker.store.key_records import KeyPolicy
from broker.store.keys import KeyStore
from broker.testing.live import LiveBroker, StartBroker, wait_until


def cli(data_dir: Path, *args: str, **env_vars: str) -> dict[str, object]:
    env = {**os.environ, "BROKER_DATA_DIR": str(data_dir), **env_vars}
    out = subprocess.run(
        [sys.executable, "-m", "broker", "keys", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def published(broker: LiveBroker) -> set[str]:
    return {k["kid"] for k in broker.client.get("/.well-known/jwks.json").json()["keys"]}


def mint(broker: LiveBroker) -> str:
    bearer = broker.client.post("/session/create", json={"auth_token": "p"}).json()["session"]
    resp = broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"})
    return resp.json()["jwt"]  # type: ignore[no-any-return]


def verifies(broker: LiveBroker, token: str) -> bool:
    jwks = pyjwt.PyJWKSet.from_dict(broker.client.get("/.well-known/jwks.json").json())
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = next((k for k in jwks.keys if k.key_id == kid), None)
    if key is None:
        return False
    pyjwt.decode(token, key, algorithms=["ES256", "RS256"], audience="sts.amazonaws.com")
    return True


def kid_of(token: str) -> str:
    return pyjwt.get_unverified_header(token)["kid"]  # type: ignore[no-any-return]


def states(listing: dict[str, object]) -> dict[str, str]:
    return {k["kid"]: k["state"] for k in listing["keys"]}  # type: ignore[attr-defined]


def key_store(data_dir: Path, alg: str = "ES256", max_published: int = 4) -> KeyStore:
    policy = KeyPolicy(
        algorithm=alg,
        rsa_bits=2048,
        max_published=max_published,
        reload_seconds=1.0,
    )
    return KeyStore(data_dir, policy)


def keys_published_an_hour_ago(data_dir: Path, alg: str = "ES256") -> Path:
    """A store as a broker that has run a while leaves it: its next key may be promoted now."""
    key_store(data_dir, alg).ensure(int(time.time()) - 3600)
    return data_dir


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_cli_rotation_is_picked_up_and_old_tokens_keep_verifying(
    live_broker: StartBroker, tmp_path: Path, alg: str
) -> None:
    data = keys_published_an_hour_ago(tmp_path / "data", alg)
    broker = live_broker(key_algorithm=alg, data_dir=data)
    before = states(cli(data, "list"))
    old_active = next(k for k, s in before.items() if s == "active")
    old_next = next(k for k, s in before.items() if s == "next")
    assert published(broker) == set(before)
    token_before = mint(broker)
    assert kid_of(token_before) == old_active

    after = states(cli(data, "rotate"))
    new_next = next(k for k, s in after.items() if s == "next")
    assert after[old_next] == "active"
    assert after[old_active] == "retiring"

    wait_until(lambda: new_next in published(broker))
    assert published(broker) == {old_active, old_next, new_next}
    assert kid_of(mint(broker)) == old_next  # the key published before it signs
    assert verifies(broker, token_before)  # the retiring key is still published


def test_keys_remove_is_a_kill_switch(live_broker: StartBroker) -> None:
    broker = live_broker()
    data = broker.settings.data_dir
    token = mint(broker)
    victim = kid_of(token)
    cli(data, "remove", victim)
    wait_until(lambda: victim not in published(broker))
    assert not verifies(broker, token)
    assert kid_of(mint(broker)) != victim


def test_tokens_from_before_a_restart_still_verify(
    live_broker: StartBroker, tmp_path: Path
) -> None:
    data = tmp_path / "persist"
    token = mint(live_broker(data_dir=data))
    restarted = live_broker(data_dir=data)
    assert verifies(restarted, token)
    assert kid_of(mint(restarted)) == kid_of(token)


def rotate_via_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    run = [sys.executable, "-m", "broker", "keys", "rotate"]
    return subprocess.run(
        run, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_rotation_refused_past_the_bound_names_the_way_out(tmp_path: Path) -> None:
    # one rotation two hours ago: active, next (published since) and a retiring key = 3
    hours_ago = int(time.time()) - 7200
    key_store(tmp_path, max_published=3).ensure(hours_ago)
    key_store(tmp_path, max_published=3).rotate(hours_ago + 3600, signed_until=hours_ago + 7200)
    refused = rotate_via_cli({"BROKER_DATA_DIR": str(tmp_path), "BROKER_MAX_PUBLISHED_KEYS": "3"})
    assert refused.returncode == 1
    assert "max_published_keys" in refused.stderr
    assert "keys remove" in refused.stderr


def test_a_second_rotation_right_after_the_first_is_refused_until_the_jwks_caches_expire(
    tmp_path: Path,
) -> None:
    env = {"BROKER_DATA_DIR": str(keys_published_an_hour_ago(tmp_path))}
    first = rotate_via_cli(env)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "keys" / "state.json").read_bytes()
    second = rotate_via_cli(env)
    assert second.returncode == 1
    assert second.stderr.startswith("error: next key ")
    assert "verifiers may cache the JWKS for 60 s" in second.stderr
    assert "keys rotate` again in" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert (tmp_path / "keys" / "state.json").read_bytes() == before


def _damaged(good: str, damage: str) -> str:
    doc = json.loads(good)
    if damage == "hand-edited":
        doc["keys"] = [{"kid": "hand-edited"}]
    elif damage == "created-1e30":
        doc["keys"][0]["created_at"] = 10**30
    elif damage == "two-active":
        for key in doc["keys"]:
            key["state"] = "active"
    return json.dumps(doc)


@pytest.mark.parametrize("damage", ["hand-edited", "created-1e30", "two-active"])
def test_a_broken_state_file_does_not_stop_the_reloader(
    live_broker: StartBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    data = keys_published_an_hour_ago(tmp_path / "data")
    broker = live_broker(data_dir=data)
    state = data / "keys" / "state.json"
    good = state.read_text()

    def replace(text: str) -> None:  # by rename, as the CLI writes it
        tmp = state.with_name("state.tmp")
        tmp.write_text(text)
        tmp.replace(state)

    before = published(broker)
    replace(_damaged(good, damage))
    wait_until(lambda: any("could not be read" in r.getMessage() for r in caplog.records))
    assert all(r.levelname == "WARNING" for r in caplog.records if "could not be" in r.message)
    assert published(broker) == before  # the old keys stay published
    replace(good)
    new_next = next(k for k, s in states(cli(data, "rotate")).items() if s == "next")
    wait_until(lambda: new_next in published(broker))  # still reloading


# -- a retiring key stays published for every token the broker signed with it ------------------


def mint_for(broker: LiveBroker, ttl: int) -> str:
    bearer = broker.client.post("/session/create", json={"auth_token": "p"}).json()["session"]
    resp = broker.client.post(
        "/v1/mint-oidc-jwt",
        headers={"Authorization": f"Bearer {bearer}"},
        json={"ttl_seconds": ttl},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["jwt"]  # type: ignore[no-any-return]


def retire_after(listing: dict[str, object], kid: str) -> int:
    return next(k["retire_after"] for k in listing["keys"] if k["kid"] == kid)  # type: ignore[attr-defined]


def test_a_broker_extends_a_retiring_key_the_cli_retired_too_early(
    live_broker: StartBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker allows 3600 s tokens; the CLI's own config says 600 s and its audit cannot
    # tell (as with the placeholder store.max_exp), so it plans "one reload from now + 300 s".
    caplog.set_level(logging.INFO, logger="broker.keys")
    monkeypatch.setattr(broker_cli, "_signed_until", lambda settings, kid: None)
    data = keys_published_an_hour_ago(tmp_path / "data")
    broker = live_broker(data_dir=data, max_token_ttl_seconds=3600)
    token = mint_for(broker, 3600)
    old = kid_of(token)
    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    env = {"BROKER_DATA_DIR": str(data), "BROKER_MAX_TOKEN_TTL_SECONDS": "600"}
    rotated = CliRunner().invoke(broker_cli.main, ["keys", "rotate", "--json"], env=env)
    assert rotated.exit_code == 0, rotated.output
    planned = retire_after(json.loads(rotated.output), old)
    assert planned < exp + 300  # the CLI's estimate alone would orphan the token
    wait_until(lambda: retire_after(cli(data, "list"), old) == exp + 300)
    assert any(f"kept published until {exp + 300}" in r.getMessage() for r in caplog.records)
    assert old in published(broker)
    assert verifies(broker, token)


def test_tokens_signed_before_the_broker_notices_a_rotation_keep_their_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(data_dir=keys_published_an_hour_ago(tmp_path / "data"))
    ring = KeyRing(key_store(settings.data_dir), int(time.time()))
    minter = Minter(settings, ring)
    wallet = "0x" + "ab" * 20
    request = MintRequest(kind="fed", caller_id=wallet, scope=wallet, max_ttl=3600)
    old = ring.snapshot.active.kid
    now = int(time.time())
    key_store(settings.data_dir).rotate(now)  # the CLI, before this broker's next reload
    late = minter.mint(request, ttl=3600, now=now + 1)
    assert late.kid == old  # the ring has not reloaded yet: it still signs with the old key
    ring.refresh(now + 1)
    kept = next(r for r in key_store(settings.data_dir).records() if r.kid == old)
    assert kept.retire_after == late.expiration + 300
    assert ring.snapshot.active.kid != old  # and it signs with the new key from now on
    assert old in {r.kid for r in ring.snapshot.published(late.expiration + 300)}
