"""The audit writer on an in-memory store: group commit, and a failing store withholds tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from broker.errors import AuditUnavailable
from broker.server.audit import AuditLog
from broker.store import AuditRecord, MemoryStore, RefusalCount, StoreError


class SlowStore(MemoryStore):
    """Each commit takes an fsync's time, and says how many records it carried."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail = fail

    def write_audit(
        self, records: Sequence[AuditRecord], refusals: Sequence[RefusalCount] = ()
    ) -> None:
        time.sleep(0.005)
        if self.fail:
            raise StoreError("disk I/O error")
        self.batches.append(len(records))
        super().write_audit(records, refusals)


def record(n: int) -> AuditRecord:
    return AuditRecord(float(n), "ci", "aaa", "s", "ci/x", f"jti-{n}", "k", "c", "ok", None, n)


async def commit_in_waves(audit: AuditLog, waves: int, per_wave: int) -> None:
    pending = []
    for wave in range(waves):
        n = wave * per_wave
        pending += [asyncio.create_task(audit.commit(record(n + i))) for i in range(per_wave)]
        await asyncio.sleep(0.001)  # the next wave arrives while the writer commits
    await asyncio.gather(*pending)


def test_records_that_queue_meanwhile_share_one_commit() -> None:
    store = SlowStore()
    audit = AuditLog(lambda: store)

    async def run() -> None:
        audit.start(asyncio.get_running_loop())
        try:
            await commit_in_waves(audit, waves=20, per_wave=25)
        finally:
            audit.stop()

    asyncio.run(run())
    assert sorted(r.jti or "" for r in store.read_audit()) == sorted(f"jti-{n}" for n in range(500))
    assert sum(store.batches) == 500
    assert len(store.batches) < 20  # fewer commits than waves: batches grew while one committed


def test_a_failing_store_withholds_every_waiting_token() -> None:
    audit = AuditLog(lambda: SlowStore(fail=True))

    async def run() -> list[BaseException | None]:
        audit.start(asyncio.get_running_loop())
        try:
            tasks = [audit.commit(record(n)) for n in range(10)]
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            audit.stop()

    outcomes = asyncio.run(run())
    assert all(isinstance(o, AuditUnavailable) for o in outcomes)
    assert "disk I/O error" in str(outcomes[0])


def test_a_store_that_cannot_be_opened_fails_start() -> None:
    def unopenable() -> MemoryStore:
        raise StoreError("unable to open database file")

    async def run() -> None:
        AuditLog(unopenable).start(asyncio.get_running_loop())

    with pytest.raises(StoreError):
        asyncio.run(run())


class BuggyStore(MemoryStore):
    def write_audit(
        self, records: Sequence[AuditRecord], refusals: Sequence[RefusalCount] = ()
    ) -> None:
        raise RuntimeError("a bug, not a store error")


def test_a_writer_bug_withholds_the_tokens_instead_of_hanging_every_mint() -> None:
    audit = AuditLog(BuggyStore)

    async def run() -> list[BaseException | None]:
        audit.start(asyncio.get_running_loop())
        try:
            first = await asyncio.gather(audit.commit(record(1)), return_exceptions=True)
            later = await asyncio.gather(audit.commit(record(2)), return_exceptions=True)
            return [*first, *later]
        finally:
            audit.stop()

    outcomes = asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert all(isinstance(o, AuditUnavailable) for o in outcomes)  # and the writer lives on
