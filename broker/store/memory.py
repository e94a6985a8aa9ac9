"""``MemoryStore``: the ``Store`` in a dict and two lists, for fast tests and throwaway brokers.

It keeps every rule of the contract the SQLite store keeps (one live credential per kind and
name, the decoy row, all-or-nothing batches, last use never moved back), and a lock, so one
instance may serve the event loop and the audit writer thread at once. Nothing survives
``close``-and-reopen: there is nothing to reopen.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from broker.store.protocol import StoreConflict
from broker.store.records import (
    CREDENTIAL_FIELDS,
    DECOY,
    AuditRecord,
    CredentialRow,
    RefusalCount,
    marks_used,
)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: dict[str, CredentialRow] = {}
        self._audit: list[AuditRecord] = []
        self._refusals: dict[tuple[int, str, str], int] = {}

    def lookup_credential(self, cred_id: str) -> CredentialRow:
        # One dict lookup whether or not the id exists.
        return self._credentials.get(cred_id, DECOY)

    def get_credential(self, cred_id: str) -> CredentialRow | None:
        return self._credentials.get(cred_id)

    def list_credentials(self) -> list[CredentialRow]:
        with self._lock:
            rows = list(self._credentials.values())
        return sorted(rows, key=lambda r: (r.created_at, r.id))

    def insert_credential(self, row: CredentialRow) -> None:
        with self._lock:
            if row.id in self._credentials:
                raise StoreConflict(f"a credential with id {row.id!r} exists")
            self._check_live_name(row)
            self._credentials[row.id] = row

    def update_credential(self, cred_id: str, **changes: object) -> None:
        unknown = sorted(set(changes) - set(CREDENTIAL_FIELDS))
        if unknown:
            raise TypeError(f"credentials have no field {', '.join(unknown)}")
        with self._lock:
            row = self._credentials.get(cred_id)
            if row is None:
                return
            new = replace(row, **changes)  # type: ignore[arg-type]
            if new.id != cred_id and new.id in self._credentials:
                raise StoreConflict(f"a credential with id {new.id!r} exists")
            self._check_live_name(new, besides=cred_id)
            del self._credentials[cred_id]
            self._credentials[new.id] = new

    def _check_live_name(self, row: CredentialRow, besides: str | None = None) -> None:
        if row.revoked_at is not None:
            return
        for other in self._credentials.values():
            if (
                other.id != besides
                and other.revoked_at is None
                and (other.kind, other.name) == (row.kind, row.name)
            ):
                raise StoreConflict(f"a live {row.kind} credential named {row.name!r} exists")

    def write_audit(
        self, records: Sequence[AuditRecord], refusals: Sequence[RefusalCount] = ()
    ) -> None:
        with self._lock:  # nothing below can fail half-way: all or nothing
            self._audit.extend(AuditRecord(*r) for r in records)
            for cred_id, at in marks_used(records):
                row = self._credentials.get(cred_id)
                if row is not None:
                    last = max(row.last_used_at or 0, at)
                    self._credentials[cred_id] = replace(row, last_used_at=last)
            for r in refusals:
                key = (r.minute, r.client, r.error)
                self._refusals[key] = self._refusals.get(key, 0) + r.count

    def read_audit(
        self, *, since: float | None = None, caller: str | None = None
    ) -> list[AuditRecord]:
        with self._lock:
            records = list(self._audit)
        return [
            r
            for r in records
            if (since is None or r.at >= since)
            and (caller is None or caller in (r.caller_id, r.caller_kind))
        ]

    def read_refusals(self, *, since: float | None = None) -> list[RefusalCount]:
        start = -1 if since is None else int(since) // 60 * 60
        with self._lock:
            counts = sorted(self._refusals.items())
        return [RefusalCount(*key, count) for key, count in counts if key[0] >= start]

    def max_exp(self, kid: str) -> int | None:
        with self._lock:
            exps = [r.exp for r in self._audit if r.kid == kid and r.result == "ok"]
        known = [e for e in exps if e is not None]
        return max(known) if known else None

    def close(self) -> None:
        pass
