"""Where state lives on disk: the credential and audit database, signing keys, private files.

What belongs here: the SQLite store (schema and migrations, credentials, audit records, counted
refusals; the only module that speaks SQL, and the only code that opens the database files), the
signing-key lifecycle on disk (next, active, retiring) and crash-safe 0600 file writes. It knows
nothing of HTTP or of who is calling.

The ``Store`` interface (broker/store/protocol.py): ``open_store(data_dir)`` is the broker's
store (SQLite); ``MemoryStore`` keeps the same contract in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.store.memory import MemoryStore
from broker.store.protocol import Store, StoreConflict, StoreError
from broker.store.records import DECOY, AuditRecord, CredentialRow, RefusalCount
from broker.store.sqlite import SqliteStore, exists, open_store

if TYPE_CHECKING:  # mypy --strict checks here that both implement the whole interface
    _sqlite: type[Store] = SqliteStore
    _memory: type[Store] = MemoryStore

__all__ = [
    "DECOY",
    "AuditRecord",
    "CredentialRow",
    "MemoryStore",
    "RefusalCount",
    "Store",
    "StoreConflict",
    "StoreError",
    "exists",
    "open_store",
]
