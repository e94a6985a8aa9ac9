"""Key persistence and lifecycle, on the store itself (the live-broker side is test_key_rotation)."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.errors import KeyNotFound, KeyStoreError, TooManyKeys
from broker.main import main
from broker.server.discovery import CACHE_CONTROL
from broker.store.key_records import JWKS_CACHE_SECONDS, MAX_TIME, KeyPolicy, KeyState
from broker.store.keys import KeyStore

POLICY = KeyPolicy(algorithm="ES256", rsa_bits=2048, max_published=4, reload_seconds=1.0)
NOW = 1_800_000_000
# The first moment a next key created at NOW may be promoted (verifiers have seen it by then).
READY = NOW + POLICY.promote_after


def states(store: KeyStore) -> dict[str, str]:
    return {r.kid: r.state.value for r in store.records()}


def pems(store: KeyStore) -> set[str]:
    return {p.stem for p in store.dir.glob("*.pem")}


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
    store.rotate(READY, signed_until=READY + 3600)
    new = store.snapshot()
    assert new.active.kid == old_next
    retiring = next(r for r in new.records if r.state is KeyState.RETIRING)
    assert retiring.kid == old.active.kid
    # every token the old key signed is past exp + 300 s before it leaves the JWKS
    assert retiring.retire_after == READY + 3600 + 300
    assert sorted(states(store).values()) == ["active", "next", "retiring"]


def retire_after_of(store: KeyStore, kid: str) -> int | None:
    return next(r.retire_after for r in store.records() if r.kid == kid)


@pytest.mark.parametrize(
    ("signed_until", "expected"),
    [
        (READY + 3593, READY + 3593 + 300),  # the largest exp signed, whatever the config's TTL
        (None, READY + POLICY.reload_window + 300),  # nothing signed: until a broker reloads
        (READY - 500, READY + POLICY.reload_window + 300),  # its tokens expired long ago
    ],
)
def test_a_retiring_key_is_kept_for_the_largest_exp_signed_with_it(
    store: KeyStore, signed_until: int | None, expected: int
) -> None:
    active = store.snapshot().active.kid
    store.rotate(READY, signed_until=signed_until)
    assert retire_after_of(store, active) == expected
    assert POLICY.reload_window == 2  # ceil(key_reload_seconds) + 1


def test_extend_retirement_only_ever_lengthens_a_retiring_key(store: KeyStore) -> None:
    active = store.snapshot().active.kid
    store.rotate(READY)
    planned = retire_after_of(store, active)
    assert planned is not None
    assert store.extend_retirement(active, planned + 1000)
    assert retire_after_of(store, active) == planned + 1000
    assert not store.extend_retirement(active, planned)  # never shortens
    assert retire_after_of(store, active) == planned + 1000
    new_active = store.snapshot().active.kid
    assert not store.extend_retirement(new_active, planned)  # not retiring: stays as it is
    assert retire_after_of(store, new_active) is None
    store.remove(active, READY)
    before = store.records()
    assert not store.extend_retirement(active, planned + 5000)  # gone: nothing to keep
    assert store.records() == before


def test_retiring_key_stays_published_until_its_time(store: KeyStore) -> None:
    store.rotate(READY)
    snap = store.snapshot()
    retiring = next(r for r in snap.records if r.state is KeyState.RETIRING)
    assert retiring.retire_after is not None
    assert retiring in snap.published(retiring.retire_after)
    assert retiring not in snap.published(retiring.retire_after + 1)
    store.ensure(retiring.retire_after + 1)  # prunes it from disk
    assert retiring.kid not in states(store)
    assert not (store.dir / f"{retiring.kid}.pem").exists()


def test_jwks_never_grows_past_the_bound(store: KeyStore) -> None:
    wait = POLICY.promote_after  # each rotation waits until its next key has been seen
    store.rotate(NOW + wait)
    store.rotate(NOW + 2 * wait)  # active, next, 2 retiring = 4 = max_published
    with pytest.raises(TooManyKeys, match="keys remove"):
        store.rotate(NOW + 3 * wait)
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
    policy = KeyPolicy(algorithm="RS256", rsa_bits=2048, max_published=4, reload_seconds=1)
    s = KeyStore(tmp_path, policy)
    s.ensure(NOW)
    snap = s.snapshot()
    assert snap.active.alg == "RS256"
    assert snap.signing_key.raw_value.key_size == 2048


# -- a next key signs only once verifiers can have seen it ------------------------------------


def test_promote_wait_is_the_jwks_cache_time_plus_one_reload() -> None:
    assert JWKS_CACHE_SECONDS == 60  # the max-age in CACHE_CONTROL
    assert f"max-age={JWKS_CACHE_SECONDS}" in CACHE_CONTROL
    slow = replace(POLICY, reload_seconds=2.5)
    assert slow.promote_after == 60 + 3


def test_rotate_refuses_a_next_key_verifiers_may_not_have_seen(store: KeyStore) -> None:
    before = store.records()
    with pytest.raises(KeyStoreError, match=rf"from {READY}\. .*keys rotate` again in 1 s") as err:
        store.rotate(READY - 1)
    assert not isinstance(err.value, TooManyKeys)
    assert store.records() == before
    assert pems(store) == {r.kid for r in before}  # no key generated for nothing
    store.rotate(READY)
    assert sorted(states(store).values()) == ["active", "next", "retiring"]


def test_two_quick_rotations_never_promote_an_unseen_key(store: KeyStore) -> None:
    store.rotate(READY)
    after_first = store.records()
    with pytest.raises(KeyStoreError, match="again in"):
        store.rotate(READY + 1)  # the new next key was published only a second ago
    assert store.records() == after_first
    assert pems(store) == {r.kid for r in after_first}


def test_rotate_on_a_store_without_keys_needs_no_wait(tmp_path: Path) -> None:
    # None of its keys was ever published, so no verifier holds a JWKS lacking them; this is
    # what a first `serve` does too (its first active key signs at once).
    fresh = KeyStore(tmp_path / "data", POLICY)
    fresh.rotate(NOW)
    assert sorted(states(fresh).values()) == ["active", "next", "retiring"]


def test_a_store_without_next_key_publishes_one_and_waits(store: KeyStore) -> None:
    # hand-edited: only the active key is left
    doc = json.loads((store.dir / "state.json").read_text())
    doc["keys"] = [k for k in doc["keys"] if k["state"] == "active"]
    (store.dir / "state.json").write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError, match="again in"):
        store.rotate(NOW + 1000)
    # the refused rotation still saved the next key it created, so its PEM is no orphan
    assert sorted(states(store).values()) == ["active", "next"]
    assert pems(store) == set(states(store))


# -- max_published_keys = 2 ---------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True])
def test_two_published_keys_leave_no_room_to_rotate(tmp_path: Path, existing: bool) -> None:
    small = KeyStore(tmp_path / "data", replace(POLICY, max_published=2))
    if existing:
        small.ensure(NOW)
    with pytest.raises(TooManyKeys, match="set max_published_keys to 3 or more"):
        small.rotate(READY)
    assert sorted(states(small).values()) == ["active", "next"]
    assert pems(small) == set(states(small))


def test_the_bound_refusal_names_the_second_the_retiring_key_leaves(store: KeyStore) -> None:
    bounded = KeyStore(store.dir.parent, replace(POLICY, max_published=3))
    bounded.rotate(READY)
    retire_after = next(r.retire_after for r in bounded.records() if r.retire_after)
    assert retire_after is not None
    before = bounded.records()
    # published_at keeps the key through retire_after itself, so the slot frees a second later
    with pytest.raises(TooManyKeys, match=rf"Rotate again at {retire_after + 1} "):
        bounded.rotate(READY + POLICY.promote_after)
    assert bounded.records() == before
    assert pems(bounded) == {r.kid for r in before}


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
        {"keys": [entry(created_at=10**30)]},
        {"keys": [entry(created_at=-1)]},
        {"keys": [entry(state="retiring", retire_after=MAX_TIME + 1)]},
        {"keys": [entry(state="active", activated_at=2**63)]},
        {"keys": [entry(kid="a", state="active"), entry(kid="b", state="active")]},
        {"keys": [entry(kid="a"), entry(kid="b")]},
        {"keys": [entry(kid="a", state="active"), entry(kid="a")]},
    ],
    ids=repr,
)
def test_a_hand_broken_state_file_is_a_key_store_error(store: KeyStore, doc: object) -> None:
    path = store.dir / "state.json"
    path.write_text(json.dumps(doc))
    for read in (
        store.records,
        store.snapshot,
        lambda: store.rotate(READY),
        lambda: store.ensure(READY),
        lambda: store.remove("abc", READY),
        lambda: store.extend_retirement("abc", READY),
    ):
        with pytest.raises(KeyStoreError, match=r"state\.json is corrupt .*restore it") as err:
            read()
        assert str(path) in err.value.message


@pytest.mark.parametrize("state", ["active", "next"])
def test_two_keys_in_one_state_are_corrupt_and_named(store: KeyStore, state: str) -> None:
    path = store.dir / "state.json"
    doc = json.loads(path.read_text())
    for key in doc["keys"]:
        key["state"] = state
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError, match=rf"2 keys are {state} \(") as err:
        store.records()
    for kid in (k["kid"] for k in doc["keys"]):
        assert kid in err.value.message


def test_times_at_the_ends_of_the_range_are_read(store: KeyStore) -> None:
    path = store.dir / "state.json"
    doc = json.loads(path.read_text())
    doc["keys"][0] |= {"created_at": 0}
    doc["keys"][1] |= {"created_at": MAX_TIME}
    path.write_text(json.dumps(doc))
    assert sorted(r.created_at for r in store.records()) == [0, MAX_TIME]
    listing = CliRunner().invoke(
        main, ["keys", "list"], env={"BROKER_DATA_DIR": str(path.parents[1])}
    )
    assert listing.exit_code == 0, listing.output
    assert "1970-01-01 00:00:00Z" in listing.output
    assert "9999-12-31 23:59:59Z" in listing.output


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
