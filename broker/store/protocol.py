"""``Store``: where credentials, audit records and refusal counts live, and how it fails.

A small interface, as httpx's ``BaseTransport`` or SPIRE's ``jwks_source``: the callers, the
server and the CLI see only these methods and these exceptions, never the database behind
them. ``broker/store/sqlite.py`` implements it on disk, ``broker/store/memory.py`` in a dict;
``tests/store/test_store_contract.py`` holds every implementation to the same tests.

A store raises only ``StoreError`` (and its subclasses) for its own faults: a locked, damaged or
unwritable database, a schema newer than this broker. The caller decides what that means to its
user: 503 ``store_unavailable`` or ``audit_unavailable`` in the server, one error line in the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from broker.store.records import AuditRecord, CredentialRow, RefusalCount


class StoreError(Exception):
    """The store could not do what was asked; its message says what went wrong."""


class StoreConflict(StoreError):
    """A write would break a uniqueness rule: an id, or one live credential per (kind, name)."""


class Store(Protocol):
    def lookup_credential(self, cred_id: str) -> CredentialRow:
        """The row of ``cred_id``, or ``DECOY``, by the same work either way (for authentication:
        the time it takes must not tell whether the id exists)."""
        ...

    def get_credential(self, cred_id: str) -> CredentialRow | None: ...

    def list_credentials(self) -> list[CredentialRow]:
        """Every credential, revoked ones too, oldest first (then by id)."""
        ...

    def insert_credential(self, row: CredentialRow) -> None:
        """Add a credential; ``StoreConflict`` if its id or a live (kind, name) exists."""
        ...

    def update_credential(self, cred_id: str, **changes: object) -> None:
        """Set fields of one credential (names of ``CredentialRow`` fields; ``TypeError`` for
        any other); an unknown id changes nothing; ``StoreConflict`` as for insert."""
        ...

    def write_audit(
        self, records: Sequence[AuditRecord], refusals: Sequence[RefusalCount] = ()
    ) -> None:
        """Commit a batch at once, durably (group commit): the records, each successful CI/dev
        mint as its credential's ``last_used_at`` (never moved back), and ``refusals`` added to
        the counts already held for their (minute, client, error). All or nothing."""
        ...

    def read_audit(
        self, *, since: float | None = None, caller: str | None = None
    ) -> list[AuditRecord]:
        """Records in write order; ``caller`` matches a caller id or a caller kind."""
        ...

    def read_refusals(self, *, since: float | None = None) -> list[RefusalCount]:
        """Counts from the minute holding ``since`` on, by minute, client and error."""
        ...

    def max_exp(self, kid: str) -> int | None:
        """The latest exp of any token handed out signed by ``kid`` (every one has its record)."""
        ...

    def close(self) -> None: ...
