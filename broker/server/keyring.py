"""The running broker's view of its keys: one snapshot and the JWKS rendered from it.

The ``keys`` CLI rewrites the store while a broker runs; ``refresh`` (called periodically)
notices the rewrite, or a retiring key passing its time, and swaps both at once.

The ring also remembers the largest ``exp`` this process signed with each key. The CLI retires
a key with what it can know (the audit, broker/cli/main.py ``_signed_until``); tokens this broker
signed after that, before its reload noticed, or with a longer TTL than the CLI's config
allows, are covered here: ``refresh`` extends such a key's retire_after to their exp + leeway.
"""

from __future__ import annotations

import logging

from broker.errors import KeyStoreError
from broker.server.discovery import StaticDocument, jwks_document, published_algorithms
from broker.store.key_records import KeySnapshot
from broker.store.keys import KeyStore
from broker.sts.catalogue import LEEWAY as STS_LEEWAY_SECONDS

log = logging.getLogger("broker.keys")
# A PEM pruned meanwhile, a half-edited or hand-broken state file (wrong shapes), a lock error.
_UNREADABLE = (OSError, ValueError, LookupError, TypeError, KeyStoreError)


class KeyRing:
    def __init__(self, store: KeyStore, now: int) -> None:
        self.store = store
        self.snapshot = store.snapshot()
        self._published = self.snapshot.published(now)
        public = self.snapshot.public_jwks(now)
        self.jwks = jwks_document(public)
        self.algorithms = published_algorithms(public)
        self._signed_until: dict[str, int] = {}

    def note_signed(self, kid: str, exp: int) -> None:
        """Called for every token signed: its key must stay published until exp + leeway."""
        if exp > self._signed_until.get(kid, 0):
            self._signed_until[kid] = exp

    def signed_until(self, kid: str) -> int | None:
        return self._signed_until.get(kid)

    def refresh(self, now: int) -> bool:
        """Pick up store changes; True if the JWKS changed. A failed read keeps the old view."""
        snapshot = self.snapshot
        try:
            if self.store.stamp() != snapshot.stamp:
                snapshot = self.store.snapshot(previous=snapshot)
            if self._keep_signed_keys(snapshot):
                snapshot = self.store.snapshot(previous=snapshot)
        except _UNREADABLE as exc:
            log.warning("key store changed but could not be read yet, keeping old keys: %s", exc)
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

    def _keep_signed_keys(self, snapshot: KeySnapshot) -> bool:
        """Extend retiring keys this broker signed with past their planned time; True if any."""
        kids = {r.kid for r in snapshot.records}
        for gone in self._signed_until.keys() - kids:  # removed keys: nothing left to protect
            del self._signed_until[gone]
        extended = False
        for r in snapshot.records:
            exp = self._signed_until.get(r.kid)
            if r.retire_after is None or exp is None or r.retire_after >= exp + STS_LEEWAY_SECONDS:
                continue
            until = exp + STS_LEEWAY_SECONDS
            try:
                done = self.store.extend_retirement(r.kid, until, blocking=False)
            except BlockingIOError:  # the CLI holds the lock; the key has minutes left
                continue
            except _UNREADABLE as exc:  # never let this stop the reload (`keys remove` must work)
                log.warning("could not extend retiring key %s, retrying: %s", r.kid, exc)
                continue
            if done:
                extended = True
                log.info(
                    "retiring key %s signed tokens valid until %d; kept published until %d "
                    "(was %d)",
                    r.kid,
                    exp,
                    until,
                    r.retire_after,
                )
        return extended
