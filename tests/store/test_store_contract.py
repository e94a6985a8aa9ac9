"""The Store contract: every implementation passes the very same tests.

As node-oidc-provider's one shared adapter test: the ``store`` fixture is parametrized over the
implementations, so a new one (PostgreSQL, say) joins by adding one line to ``IMPLEMENTATIONS``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType

import pytest

from broker.store import (
    DECOY,
    AuditRecord,
    CredentialRow,
    MemoryStore,
    RefusalCount,
    Store,
    StoreConflict,
    StoreError,
    open_store,
)

IMPLEMENTATIONS: dict[str, Callable[[Path], Store]] = {
    "sqlite": open_store,
    "memory": lambda _: MemoryStore(),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = IMPLEMENTATIONS[request.param](tmp_path)
    yield opened
    opened.close()


def row(cred_id: str, kind: str = "ci", name: str = "web", **fields: object) -> CredentialRow:
    base = CredentialRow(
        id=cred_id,
        kind=kind,
        name=name,
        secret_hash=bytes([1]) * 32,
        previous_hash=None,
        previous_valid_until=None,
        scope_pattern=f"{kind}/{name}/*",
        max_ttl=900,
        extra_tags="{}",
        created_at=1000,
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def record(
    at: float, kind: str | None, caller: str | None, result: str = "ok", **fields: object
) -> AuditRecord:
    base = AuditRecord(at, kind, caller, "sub", "scope", "jti", "kid-a", "127.0.0.1", result, None)
    return base._replace(**fields)


# -- credentials --------------------------------------------------------------------------------


def test_an_inserted_credential_is_got_and_listed_oldest_first(store: Store) -> None:
    late = row("bbb", name="late", created_at=2000, extra_tags='{"team": "qa"}')
    early_b = row("ccc", kind="dev", name="b", previous_hash=bytes(32), previous_valid_until=5)
    early_a = row("aaa", kind="dev", name="a", expires_at=9000)
    for r in (late, early_b, early_a):
        store.insert_credential(r)
    assert store.get_credential("bbb") == late
    assert store.get_credential("nope") is None
    assert store.list_credentials() == [early_a, early_b, late]  # created_at, then id


def test_an_empty_store_lists_nothing(store: Store) -> None:
    assert store.list_credentials() == []
    assert store.read_audit() == []
    assert store.read_refusals() == []


def test_update_sets_only_the_named_fields(store: Store) -> None:
    store.insert_credential(row("aaa"))
    store.update_credential(
        "aaa", secret_hash=bytes([2]) * 32, previous_hash=bytes([1]) * 32, previous_valid_until=7
    )
    changed = row("aaa", secret_hash=bytes([2]) * 32, previous_hash=bytes([1]) * 32)
    assert store.get_credential("aaa") == replace(changed, previous_valid_until=7)
    store.update_credential("aaa", revoked_at=1500)
    assert store.get_credential("aaa") == replace(changed, previous_valid_until=7, revoked_at=1500)


def test_updating_an_unknown_id_changes_nothing(store: Store) -> None:
    store.insert_credential(row("aaa"))
    store.update_credential("zzz", revoked_at=1500)
    assert store.list_credentials() == [row("aaa")]


def test_update_refuses_a_name_that_is_no_field(store: Store) -> None:
    store.insert_credential(row("aaa"))
    with pytest.raises(TypeError, match="no field"):
        store.update_credential("aaa", colour="red")
    assert store.get_credential("aaa") == row("aaa")


def test_one_live_credential_per_kind_and_name(store: Store) -> None:
    store.insert_credential(row("aaa", kind="ci", name="web"))
    with pytest.raises(StoreConflict):
        store.insert_credential(row("bbb", kind="ci", name="web"))
    store.insert_credential(row("ccc", kind="dev", name="web"))  # another kind: its own name
    store.update_credential("aaa", revoked_at=1500)
    store.insert_credential(row("ddd", kind="ci", name="web"))  # the old one is revoked
    with pytest.raises(StoreConflict):  # bringing the revoked one back would make two live
        store.update_credential("aaa", revoked_at=None)
    assert [r.id for r in store.list_credentials()] == ["aaa", "ccc", "ddd"]


def test_an_id_is_unique_and_a_conflict_is_a_store_error(store: Store) -> None:
    store.insert_credential(row("aaa", revoked_at=1))
    with pytest.raises(StoreConflict) as raised:
        store.insert_credential(row("aaa", name="other"))
    assert isinstance(raised.value, StoreError)
    assert store.get_credential("aaa") == row("aaa", revoked_at=1)


# -- the decoy ----------------------------------------------------------------------------------


def test_lookup_finds_the_row_or_the_decoy(store: Store) -> None:
    store.insert_credential(row("aaa"))
    assert store.lookup_credential("aaa") == row("aaa")
    assert store.lookup_credential("zzz") == DECOY
    assert store.lookup_credential("") == DECOY
    assert DECOY.kind == ""  # no bearer's kind: nothing authenticates against it
    assert DECOY.revoked_at is not None


def _calls(action: Callable[[], object]) -> list[str]:
    """The Python and C functions ``action`` calls, in order (what its work is made of)."""
    calls: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event in ("call", "c_call"):
            calls.append(getattr(arg, "__qualname__", "") or frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def test_lookup_does_the_same_work_for_an_unknown_id(store: Store) -> None:
    store.insert_credential(row("aaaaaaaaaaaa"))
    store.lookup_credential("bbbbbbbbbbbb")  # warm any cache a first call fills
    known = _calls(lambda: store.lookup_credential("aaaaaaaaaaaa"))
    unknown = _calls(lambda: store.lookup_credential("bbbbbbbbbbbb"))
    assert known == unknown
    assert any("lookup_credential" in call for call in known)


# -- audit records ------------------------------------------------------------------------------


def test_audit_records_read_back_in_write_order(store: Store) -> None:
    batch = [record(10.5, "ci", "aaa", exp=400), record(9.0, None, None, "refused", error="x")]
    store.write_audit(batch)
    exchanged = record(11.5, "exchange", "https://ci.test", subject='{"iss": "https://ci.test"}')
    store.write_audit([record(11.0, "fed", "0xabc"), exchanged])
    assert store.read_audit() == [*batch, record(11.0, "fed", "0xabc"), exchanged]


def test_audit_filters_by_time_and_by_caller_id_or_kind(store: Store) -> None:
    a, b, c = record(10.0, "ci", "aaa"), record(20.0, "dev", "bbb"), record(30.0, "ci", "ccc")
    store.write_audit([a, b, c])
    assert store.read_audit(since=20.0) == [b, c]  # since is inclusive
    assert store.read_audit(caller="ci") == [a, c]
    assert store.read_audit(caller="bbb") == [b]
    assert store.read_audit(since=15.0, caller="ci") == [c]
    assert store.read_audit(caller="nobody") == []


def test_a_successful_credential_mint_marks_its_last_use(store: Store) -> None:
    for r in (row("aaa"), row("bbb", kind="dev", name="b"), row("ccc", name="c")):
        store.insert_credential(r)
    store.write_audit(
        [
            record(2000.9, "ci", "aaa"),  # whole seconds
            record(2500.0, "dev", "bbb", "refused", error="scope_not_allowed"),
            record(2600.0, "fed", "ccc"),  # not a credential's kind
            record(2700.0, "ci", "zzz"),  # no such credential: nothing to mark
        ]
    )
    used = {r.id: r.last_used_at for r in store.list_credentials()}
    assert used == {"aaa": 2000, "bbb": None, "ccc": None}
    store.write_audit([record(1500.0, "ci", "aaa")])  # a late, older record
    assert store.get_credential("aaa") == row("aaa", last_used_at=2000)  # never moved back
    store.write_audit([record(3000.0, "ci", "aaa"), record(2999.0, "ci", "aaa")])
    assert store.get_credential("aaa") == row("aaa", last_used_at=3000)


def test_refusal_counts_add_up_per_minute_client_and_error(store: Store) -> None:
    store.write_audit([], [RefusalCount(60, "10.0.0.1", "unauthorized", 3)])
    store.write_audit(
        [record(61.0, None, None, "refused", error="unauthorized")],
        [
            RefusalCount(60, "10.0.0.1", "unauthorized", 2),  # the same key: added
            RefusalCount(60, "10.0.0.1", "invalid_json", 1),
            RefusalCount(0, "*", "unauthorized", 5),
            RefusalCount(120, "10.0.0.2", "unauthorized", 1),
        ],
    )
    assert store.read_refusals() == [
        RefusalCount(0, "*", "unauthorized", 5),
        RefusalCount(60, "10.0.0.1", "invalid_json", 1),
        RefusalCount(60, "10.0.0.1", "unauthorized", 5),
        RefusalCount(120, "10.0.0.2", "unauthorized", 1),
    ]
    # since: from the start of the minute holding it
    assert [r.minute for r in store.read_refusals(since=119.5)] == [60, 60, 120]
    assert len(store.read_audit()) == 1


def test_max_exp_is_the_latest_exp_handed_out_with_a_kid(store: Store) -> None:
    assert store.max_exp("kid-a") is None
    store.write_audit(
        [
            record(1.0, "ci", "aaa", exp=500),
            record(2.0, "ci", "aaa", exp=900),
            record(3.0, "ci", "aaa", "refused", exp=5000),  # nothing handed out
            record(4.0, "ci", "aaa", kid="kid-b", exp=7000),
            record(5.0, "ci", "aaa", exp=None),  # an old record, from before exp was kept
        ]
    )
    assert store.max_exp("kid-a") == 900
    assert store.max_exp("kid-b") == 7000
    assert store.max_exp("kid-c") is None
