"""Where the broker keeps state: the ``Store`` interface, its rows, and its implementations.

``open_store(data_dir)`` is the broker's store (SQLite, broker/store/sqlite.py);
``MemoryStore`` keeps the same contract in memory. Signing keys live beside it, in files
(broker/store/keys.py).
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
