"""Key persistence and lifecycle, on the store itself (the live-broker side is test_key_rotation)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import main
from broker.errors import KeyNotFound, KeyStoreError, TooManyKeys
from broker.keys import KeyPolicy, KeyState, KeyStore

POLICY = KeyPolicy(
    algorithm="ES256", rsa_bits=2048, max_published=4, max_token_ttl=3600, reload_seconds=1.0
)
NOW = 1_800_000_000


def states(store: KeyStore) -> dict[str, str]:
    return {r.kid: r.state.value for r in store.records()}


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    s = KeyStore(tmp_path / "data", POLICY)
    s.ensure(NOW)
    return s


def test_first_start_creates_active_and_published_next(store: KeyStore) -> None:
    assert sorted(states(store).values()) == ["active", "next"]


def test_files_are_private(store: KeyStore) -> None:
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    files = list(store.dir.iterdir())
    assert {p.suffix for p in files if not p.name.startswith(".")} == {".json", ".pem"}
    for path in files:
        if path.name != ".lock":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    leftovers = [p.name for p in files if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == [], "atomic writes left temp files behind"


def test_restart_keeps_the_same_kids(store: KeyStore, tmp_path: Path) -> None:
    before = store.snapshot()
    again = KeyStore(tmp_path / "data", POLICY)
    again.ensure(NOW + 10)
    after = again.snapshot()
    assert before.active.kid == after.active.kid
    assert {r.kid for r in before.records} == {r.kid for r in after.records}


def test_kid_is_rfc7638_thumbprint(store: KeyStore) -> None:
    snap = store.snapshot()
    for record in snap.records:
        assert snap.private[record.kid].thumbprint() == record.kid


def test_rotate_promotes_the_already_published_next_key(store: KeyStore) -> None:
    old = store.snapshot()
    old_next = next(r.kid for r in old.records if r.state is KeyState.NEXT)
    store.rotate(NOW + 100)
    new = store.snapshot()
    assert new.active.kid == old_next
    retiring = next(r for r in new.records if r.state is KeyState.RETIRING)
    assert retiring.kid == old.active.kid
    # every token the old key signed (ttl <= 3600) is past exp + 300 s before it leaves the JWKS
    assert retiring.retire_after is not None
    assert retiring.retire_after >= NOW + 100 + 3600 + 300
    assert sorted(states(store).values()) == ["active", "next", "retiring"]


def test_retiring_key_stays_published_until_its_time(store: KeyStore) -> None:
    store.rotate(NOW)
    snap = store.snapshot()
    retiring = next(r for r in snap.records if r.state is KeyState.RETIRING)
    assert retiring.retire_after is not None
    assert retiring in snap.published(retiring.retire_after)
    assert retiring not in snap.published(retiring.retire_after + 1)
    store.ensure(retiring.retire_after + 1)  # prunes it from disk
    assert retiring.kid not in states(store)
    assert not (store.dir / f"{retiring.kid}.pem").exists()


def test_jwks_never_grows_past_the_bound(store: KeyStore) -> None:
    store.rotate(NOW)
    store.rotate(NOW + 1)  # active, next, 2 retiring = 4 = max_published
    with pytest.raises(TooManyKeys, match="keys remove"):
        store.rotate(NOW + 2)
    assert len(store.records()) == 4


def test_remove_active_key_promotes_next_and_publishes_a_new_next(store: KeyStore) -> None:
    old = store.snapshot()
    store.remove(old.active.kid, NOW)
    remaining = states(store)
    assert old.active.kid not in remaining
    assert sorted(remaining.values()) == ["active", "next"]
    assert not (store.dir / f"{old.active.kid}.pem").exists()


def test_remove_unknown_kid_names_the_known_ones(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound, match="known kids"):
        store.remove("nope", NOW)


def test_rs256_keys_are_generated_with_the_configured_size(tmp_path: Path) -> None:
    policy = KeyPolicy(
        algorithm="RS256", rsa_bits=2048, max_published=4, max_token_ttl=300, reload_seconds=1
    )
    s = KeyStore(tmp_path, policy)
    s.ensure(NOW)
    snap = s.snapshot()
    assert snap.active.alg == "RS256"
    assert snap.signing_key.raw_value.key_size == 2048


# -- a hand-broken store is one KeyStoreError naming the file and the way out -------------------


def entry(**changes: object) -> dict[str, object]:
    good: dict[str, object] = {"kid": "abc", "alg": "ES256", "state": "next", "created_at": NOW}
    return {k: v for k, v in (good | changes).items() if v is not ...}


@pytest.mark.parametrize(
    "doc",
    [
        {},
        [],
        {"keys": "none"},
        {"keys": ["abc"]},
        {"keys": [entry(state=...)]},
        {"keys": [entry(state="spare")]},
        {"keys": [entry(kid="../../etc/passwd")]},
        {"keys": [entry(alg="HS256")]},
        {"keys": [entry(created_at="yesterday")]},
        {"keys": [entry(retire_after=1.5)]},
        {"keys": [entry(colour="red")]},
    ],
    ids=repr,
)
def test_a_hand_broken_state_file_is_a_key_store_error(store: KeyStore, doc: object) -> None:
    path = store.dir / "state.json"
    path.write_text(json.dumps(doc))
    for read in (store.records, store.snapshot, lambda: store.rotate(NOW)):
        with pytest.raises(KeyStoreError, match=r"state\.json is corrupt .*restore it") as err:
            read()
        assert str(path) in err.value.message


def test_a_missing_pem_is_a_key_store_error(store: KeyStore) -> None:
    active = store.snapshot().active
    pem = store.dir / f"{active.kid}.pem"
    pem.unlink()
    with pytest.raises(KeyStoreError, match=r"is missing but .*state\.json lists key") as err:
        store.snapshot()
    assert str(pem) in err.value.message
    assert "restore it" in err.value.message


def test_a_damaged_or_swapped_pem_is_a_key_store_error(store: KeyStore) -> None:
    snap = store.snapshot()
    other = next(r.kid for r in snap.records if r.kid != snap.active.kid)
    active_pem = store.dir / f"{snap.active.kid}.pem"
    active_pem.write_bytes(b"not a key")
    with pytest.raises(KeyStoreError, match="is not a ES256 private key"):
        store.snapshot()
    active_pem.write_bytes((store.dir / f"{other}.pem").read_bytes())
    with pytest.raises(KeyStoreError, match=f"holds a different key than kid {snap.active.kid}"):
        store.snapshot()


def test_the_cli_reports_a_broken_state_file_in_one_line(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, POLICY)
    store.ensure(NOW)
    (store.dir / "state.json").write_text("{}")
    result = CliRunner().invoke(main, ["keys", "list"], env={"BROKER_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {store.dir / 'state.json'} is corrupt")
    assert len(result.output.strip().splitlines()) == 1
