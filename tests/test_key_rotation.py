"""Rotation on a running broker: done by the CLI, picked up without a restart, no token orphaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest

from tests.conftest import LiveBroker, StartBroker, wait_until


def cli(data_dir: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "BROKER_DATA_DIR": str(data_dir)}
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


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_cli_rotation_is_picked_up_and_old_tokens_keep_verifying(
    live_broker: StartBroker, alg: str
) -> None:
    broker = live_broker(key_algorithm=alg)
    data = broker.settings.data_dir
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


def test_rotation_refused_past_the_bound_names_the_way_out(tmp_path: Path) -> None:
    env = {**os.environ, "BROKER_DATA_DIR": str(tmp_path), "BROKER_MAX_PUBLISHED_KEYS": "3"}
    run = [sys.executable, "-m", "broker", "keys", "rotate"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 1
    assert "max_published_keys" in second.stderr
    assert "keys remove" in second.stderr


def test_a_broken_state_file_does_not_stop_the_reloader(
    live_broker: StartBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = live_broker()
    data = broker.settings.data_dir
    state = data / "keys" / "state.json"
    good = state.read_text()

    def replace(text: str) -> None:  # by rename, as the CLI writes it
        tmp = state.with_name("state.tmp")
        tmp.write_text(text)
        tmp.replace(state)

    before = published(broker)
    replace('{"version": 1, "keys": [{"kid": "hand-edited"}]}')
    wait_until(lambda: any("could not be read" in r.getMessage() for r in caplog.records))
    assert published(broker) == before  # the old keys stay published
    replace(good)
    new_next = next(k for k, s in states(cli(data, "rotate")).items() if s == "next")
    wait_until(lambda: new_next in published(broker))  # still reloading
