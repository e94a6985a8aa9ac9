"""The running broker's view of its keys: one snapshot and the JWKS rendered from it.

The ``keys`` CLI rewrites the store while a broker runs; ``refresh`` (called periodically)
notices the rewrite, or a retiring key passing its time, and swaps both at once.
"""

from __future__ import annotations

import logging

from broker.discovery import StaticDocument, jwks_document, published_algorithms
from broker.errors import KeyStoreError
from broker.keys import KeyStore

log = logging.getLogger("broker.keys")


class KeyRing:
    def __init__(self, store: KeyStore, now: int) -> None:
        self.store = store
        self.snapshot = store.snapshot()
        self._published = self.snapshot.published(now)
        public = self.snapshot.public_jwks(now)
        self.jwks = jwks_document(public)
        self.algorithms = published_algorithms(public)

    def refresh(self, now: int) -> bool:
        """Pick up store changes; True if the JWKS changed. A failed read keeps the old view."""
        snapshot = self.snapshot
        if self.store.stamp() != snapshot.stamp:
            try:
                snapshot = self.store.snapshot(previous=snapshot)
            # A PEM pruned meanwhile, a half-edited or hand-broken state file (wrong shapes).
            except (OSError, ValueError, LookupError, TypeError, KeyStoreError) as exc:
                log.warning(
                    "key store changed but could not be read yet, keeping old keys: %s", exc
                )
                return False
        published = snapshot.published(now)
        if snapshot is self.snapshot and published == self._published:
            return False
        public = snapshot.public_jwks(now)
        jwks: StaticDocument = jwks_document(public)
        changed = jwks != self.jwks
        # Rebind, never mutate: a request in flight keeps a consistent (snapshot, jwks) pair.
        self.snapshot, self._published, self.jwks = snapshot, published, jwks
        self.algorithms = published_algorithms(public)
        if changed:
            log.info("published keys now %s", [r.kid for r in published])
        return changed
