"""Signing keys on disk and their lifecycle: next → active → retiring → removed.

Layout under ``<data_dir>/keys`` (directory 0700, files 0600, every write atomic and fsynced):
``state.json`` lists the keys and their states; ``<kid>.pem`` holds each private key.
Writers (``serve`` at start, the ``keys`` CLI) take an exclusive ``flock`` on ``.lock``; a running
broker only reads, and notices a rewrite because ``state.json`` is replaced by rename.

Why the states: AWS STS must already see a key in the JWKS when a token signed by it arrives, so
a key is published as *next* before it signs; after a rotation the old key *retires* and stays
published until every token it may have signed is past exp + 300 s (STS's clock leeway).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

from joserfc.errors import JoseError

from broker.config import Settings
from broker.errors import KeyNotFound, KeyStoreError, TooManyKeys
from broker.store.files import atomic_write, private_dir
from broker.store.key_records import (
    JWKS_CACHE_SECONDS,
    KeyPolicy,
    KeyRecord,
    KeySnapshot,
    KeyState,
    SigningKey,
    check_unique,
    generate_key,
    load_pem,
    parse_record,
)
from broker.sts.catalogue import LEEWAY as STS_LEEWAY_SECONDS

STATE_FILE = "state.json"


_REBUILD = (
    "restore it from a backup, or move the keys directory aside and run `test-broker serve` "
    "to create new keys (tokens signed by the old ones stop verifying)"
)


class KeyStore:
    @classmethod
    def for_settings(cls, settings: Settings) -> KeyStore:
        policy = KeyPolicy(
            algorithm=settings.key_algorithm,
            rsa_bits=settings.rsa_key_bits,
            max_published=settings.max_published_keys,
            reload_seconds=settings.key_reload_seconds,
        )
        return cls(settings.data_dir, policy)

    def __init__(self, data_dir: Path, policy: KeyPolicy) -> None:
        self.dir = data_dir / "keys"
        self.policy = policy

    # -- reading -----------------------------------------------------------------------------

    def stamp(self) -> tuple[int, int, int]:
        """Changes whenever state.json is replaced (rename gives a new inode)."""
        try:
            st = (self.dir / STATE_FILE).stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def records(self) -> list[KeyRecord]:
        path = self.dir / STATE_FILE
        try:
            raw = json.loads(path.read_bytes())
            if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
                raise TypeError('expected {"version": 1, "keys": [...]}')
            records = [parse_record(r) for r in raw["keys"]]
            check_unique(records)
            return records
        except FileNotFoundError:
            return []
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise KeyStoreError(f"{path} is corrupt ({exc}); {_REBUILD}") from None

    def snapshot(self, previous: KeySnapshot | None = None) -> KeySnapshot:
        """Read the keys; PEMs already parsed in ``previous`` are reused (RSA parsing is slow)."""
        stamp = self.stamp()
        records = tuple(self.records())
        if not any(r.state is KeyState.ACTIVE for r in records):
            raise KeyStoreError(
                f"no active key in {self.dir}; run `test-broker serve` to create one"
            )
        cache = previous.private if previous else {}
        private = {r.kid: cache.get(r.kid) or self._load(r) for r in records}
        return KeySnapshot(records, private, stamp)

    def _load(self, record: KeyRecord) -> SigningKey:
        path = self.dir / f"{record.kid}.pem"
        try:
            key = load_pem(path.read_bytes(), record.alg)
        except FileNotFoundError:
            raise KeyStoreError(
                f"{path} is missing but {self.dir / STATE_FILE} lists key {record.kid} "
                f"({record.state}); {_REBUILD}"
            ) from None
        except (ValueError, TypeError, JoseError) as exc:
            why = str(exc).split(". ")[0]  # cryptography's message runs on for lines
            raise KeyStoreError(
                f"{path} is not a {record.alg} private key ({why}); {_REBUILD}"
            ) from None
        if key.thumbprint() != record.kid:
            raise KeyStoreError(f"{path} holds a different key than kid {record.kid}; {_REBUILD}")
        return key

    # -- writing (under the lock) ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, blocking: bool = True) -> Iterator[list[KeyRecord]]:
        # Both levels: mkdir(parents=True) would leave a missing data dir at the umask's mode.
        private_dir(self.dir.parent)
        private_dir(self.dir)
        with open(self.dir / ".lock", "a") as lock:
            # Non-blocking raises BlockingIOError while another writer holds the lock.
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            records = self.records()
            before = list(records)
            yield records
            if records != before:
                self._save(records)

    def copy_to(self, target: KeyStore) -> list[KeyRecord]:
        """Copy every key, each checked, into ``target``, which holds none; both locks are held,
        so the states and the PEM files copied agree (a backup beside a running broker)."""
        with self._locked() as records, target._locked() as copied:
            if copied:
                raise KeyStoreError(f"{target.dir} already holds keys; copy into an empty one")
            for record in records:
                pem = self._load(record).as_pem(private=True)
                atomic_write(target.dir / f"{record.kid}.pem", pem)
            copied[:] = records
        return records

    def _save(self, records: list[KeyRecord]) -> None:
        doc = {"version": 1, "keys": [asdict(r) for r in records]}
        atomic_write(self.dir / STATE_FILE, json.dumps(doc, indent=2).encode() + b"\n")
        kept = {f"{r.kid}.pem" for r in records}
        for pem in self.dir.glob("*.pem"):
            if pem.name not in kept:
                pem.unlink()

    def _new(self, state: KeyState, now: int) -> KeyRecord:
        key = generate_key(self.policy.algorithm, self.policy.rsa_bits)
        kid = key.thumbprint()
        atomic_write(self.dir / f"{kid}.pem", key.as_pem(private=True))
        activated = now if state is KeyState.ACTIVE else None
        return KeyRecord(
            kid=kid,
            alg=self.policy.algorithm,
            state=state,
            created_at=now,
            activated_at=activated,
        )

    @staticmethod
    def _prune(records: list[KeyRecord], now: int) -> None:
        records[:] = [r for r in records if r.published_at(now)]

    def _ensure(self, records: list[KeyRecord], now: int) -> None:
        if not any(r.state is KeyState.ACTIVE for r in records):
            records.append(self._new(KeyState.ACTIVE, now))
        if not any(r.state is KeyState.NEXT for r in records):
            records.append(self._new(KeyState.NEXT, now))

    def ensure(self, now: int) -> None:
        """Make sure an active and a next key exist; drop retiring keys past their time."""
        with self._locked() as records:
            self._prune(records, now)
            self._ensure(records, now)

    def rotate(self, now: int, signed_until: int | None = None) -> list[KeyRecord]:
        """Promote next to active, retire the old active key, publish a fresh next key.

        ``signed_until`` is the largest exp known to have been signed with the active key (None:
        none known). The old key stays published until then, or until a running broker has had
        a reload to notice and extend it, plus STS's leeway.

        Refused (with the time it becomes possible) while verifiers may not have seen the next
        key yet, or while the rotation would publish more than max_published keys. A refusal
        still saves what it pruned or published, so no key file is left outside state.json.
        """
        with self._locked() as records:
            self._prune(records, now)
            # A store without keys has never published any, so no verifier can hold a JWKS
            # that lacks its first next key: it may sign at once, like a first `serve`'s key.
            fresh = not records
            self._ensure(records, now)
            refusal = self._rotation_refusal(records, now, fresh=fresh)
            if refusal is None:
                covered = max(signed_until or 0, now + self.policy.reload_window)
                retire_after = covered + STS_LEEWAY_SECONDS
                for i, r in enumerate(records):
                    if r.state is KeyState.ACTIVE:
                        records[i] = replace(r, state=KeyState.RETIRING, retire_after=retire_after)
                    elif r.state is KeyState.NEXT:
                        records[i] = replace(r, state=KeyState.ACTIVE, activated_at=now)
                records.append(self._new(KeyState.NEXT, now))
                return list(records)
        raise refusal

    def _rotation_refusal(
        self, records: list[KeyRecord], now: int, *, fresh: bool
    ) -> KeyStoreError | None:
        bound = self.policy.max_published
        if len(records) + 1 > bound:
            retiring = [r.retire_after for r in records if r.retire_after is not None]
            if not retiring:
                return TooManyKeys(
                    f"max_published_keys is {bound}, but a rotation publishes {len(records) + 1} "
                    "keys (next, active and the retiring old key, which must stay published "
                    "until its tokens expire); set max_published_keys to 3 or more, or replace "
                    "the active key at once with `test-broker keys remove KID`"
                )
            # published_at keeps a key through its retire_after second
            soonest = min(retiring) + 1
            return TooManyKeys(
                f"rotating would publish {len(records) + 1} keys, above max_published_keys "
                f"({bound}); retiring keys still protect live tokens. Rotate again at "
                f"{soonest} (unix time, in {soonest - now} s) or drop one with "
                "`test-broker keys remove KID`"
            )
        upcoming = next(r for r in records if r.state is KeyState.NEXT)
        ready = upcoming.created_at + self.policy.promote_after
        if not fresh and now < ready:
            return KeyStoreError(
                f"next key {upcoming.kid} was published at {upcoming.created_at} (unix time); "
                f"verifiers may cache the JWKS for {JWKS_CACHE_SECONDS} s after a running broker "
                f"reloads it (every {self.policy.reload_seconds:g} s), so it may sign only from "
                f"{ready}. Run `test-broker keys rotate` again in {ready - now} s "
                "(or, if the active key is compromised, `test-broker keys remove KID` now)"
            )
        return None

    def extend_retirement(self, kid: str, until: int, *, blocking: bool = True) -> bool:
        """Keep retiring key ``kid`` published through ``until``; True if that changed anything.

        Never shortens, and does nothing to a key that is gone or not retiring: a running broker
        calls it for tokens it signed before it noticed a rotation (broker/server/keyring.py), with
        ``blocking=False`` so that a CLI generating an RSA key under the lock cannot stall the
        event loop (BlockingIOError: try again at the next reload).
        """
        with self._locked(blocking=blocking) as records:
            for i, r in enumerate(records):
                if r.kid == kid and r.retire_after is not None and r.retire_after < until:
                    records[i] = replace(r, retire_after=until)
                    return True
        return False

    def remove(self, kid: str, now: int) -> list[KeyRecord]:
        """Emergency kill switch: unpublish a key at once; tokens it signed stop verifying."""
        with self._locked() as records:
            victim = next((r for r in records if r.kid == kid), None)
            if victim is None:
                known = ", ".join(r.kid for r in records) or "none"
                raise KeyNotFound(f"no key with kid {kid!r}; known kids: {known}")
            records.remove(victim)
            if victim.state is KeyState.ACTIVE:
                # The next key is already published, so it can sign at once.
                for i, r in enumerate(records):
                    if r.state is KeyState.NEXT:
                        records[i] = replace(r, state=KeyState.ACTIVE, activated_at=now)
            self._ensure(records, now)
            return list(records)
