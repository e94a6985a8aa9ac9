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
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, RSAKey

from broker.errors import KeyNotFound, KeyStoreError, TooManyKeys
from broker.files import atomic_write, private_dir

STS_LEEWAY_SECONDS = 300
STATE_FILE = "state.json"

SigningKey = ECKey | RSAKey


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRING = "retiring"


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    kid: str
    alg: str
    state: KeyState
    created_at: int
    activated_at: int | None = None
    # A retiring key may be dropped from the JWKS after this time.
    retire_after: int | None = None

    def published_at(self, now: int) -> bool:
        return self.retire_after is None or now <= self.retire_after


@dataclass(frozen=True, kw_only=True)
class KeyPolicy:
    """What the store needs from the config."""

    algorithm: str
    rsa_bits: int
    max_published: int
    max_token_ttl: int
    reload_seconds: float

    @property
    def retire_margin(self) -> int:
        # Tokens a running broker signs before it notices the rotation are covered too.
        return self.max_token_ttl + STS_LEEWAY_SECONDS + math.ceil(self.reload_seconds) + 1


@dataclass(frozen=True)
class KeySnapshot:
    """An immutable view of the keys a running broker publishes and signs with."""

    records: tuple[KeyRecord, ...]
    private: dict[str, SigningKey]
    stamp: tuple[int, int, int]

    @property
    def active(self) -> KeyRecord:
        return next(r for r in self.records if r.state is KeyState.ACTIVE)

    @property
    def signing_key(self) -> SigningKey:
        return self.private[self.active.kid]

    def published(self, now: int) -> tuple[KeyRecord, ...]:
        return tuple(r for r in self.records if r.published_at(now))

    def public_jwks(self, now: int) -> list[dict[str, Any]]:
        return [public_jwk(self.private[r.kid], r.alg) for r in self.published(now)]


def public_jwk(key: SigningKey, alg: str) -> dict[str, Any]:
    """The JWK AWS accepts: kty, kid, alg, use=sig, key material; never key_ops or private parts."""
    material = key.as_dict(private=False)
    head = {"kty": material.pop("kty"), "kid": key.thumbprint(), "alg": alg, "use": "sig"}
    return head | {k: v for k, v in material.items() if k not in ("kid", "alg", "use")}


def generate_key(algorithm: str, rsa_bits: int) -> SigningKey:
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", private=True)
    return RSAKey.generate_key(rsa_bits, private=True)


def _load_pem(pem: bytes, alg: str) -> SigningKey:
    return ECKey.import_key(pem) if alg.startswith("ES") else RSAKey.import_key(pem)


class KeyStore:
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
        try:
            raw = json.loads((self.dir / STATE_FILE).read_bytes())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise KeyStoreError(f"{self.dir / STATE_FILE} is corrupt ({exc}); restore it") from None
        return [KeyRecord(**{**r, "state": KeyState(r["state"])}) for r in raw["keys"]]

    def snapshot(self, previous: KeySnapshot | None = None) -> KeySnapshot:
        """Read the keys; PEMs already parsed in ``previous`` are reused (RSA parsing is slow)."""
        stamp = self.stamp()
        records = tuple(self.records())
        if not any(r.state is KeyState.ACTIVE for r in records):
            raise KeyStoreError(
                f"no active key in {self.dir}; run `test-broker serve` to create one"
            )
        cache = previous.private if previous else {}
        private = {
            r.kid: cache.get(r.kid) or _load_pem((self.dir / f"{r.kid}.pem").read_bytes(), r.alg)
            for r in records
        }
        return KeySnapshot(records, private, stamp)

    # -- writing (under the lock) ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        # Both levels: mkdir(parents=True) would leave a missing data dir at the umask's mode.
        private_dir(self.dir.parent)
        private_dir(self.dir)
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self.records()
            before = list(records)
            yield records
            if records != before:
                self._save(records)

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

    def rotate(self, now: int) -> list[KeyRecord]:
        """Promote next to active, retire the old active key, publish a fresh next key."""
        with self._locked() as records:
            self._prune(records, now)
            self._ensure(records, now)
            if len(records) + 1 > self.policy.max_published:
                retiring = [r for r in records if r.state is KeyState.RETIRING]
                soonest = min(r.retire_after or now for r in retiring)
                raise TooManyKeys(
                    f"rotating would publish {len(records) + 1} keys, above max_published_keys "
                    f"({self.policy.max_published}); retiring keys still protect live tokens. "
                    f"Wait until {soonest} (unix time) or drop one with `test-broker keys remove KID`"
                )
            retire_after = now + self.policy.retire_margin
            for i, r in enumerate(records):
                if r.state is KeyState.ACTIVE:
                    records[i] = replace(r, state=KeyState.RETIRING, retire_after=retire_after)
                elif r.state is KeyState.NEXT:
                    records[i] = replace(r, state=KeyState.ACTIVE, activated_at=now)
            records.append(self._new(KeyState.NEXT, now))
            return list(records)

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
