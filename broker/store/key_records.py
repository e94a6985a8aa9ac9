"""What the key store holds: key records, their states and checks, and the snapshot a broker
signs with; the JWK a verifier sees. Reading and writing them on disk is broker/store/keys.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from joserfc.jwk import ECKey, RSAKey

# How long a verifier (AWS STS) may keep the JWKS it fetched (the server's Cache-Control): short,
# so an emergency `keys remove` reaches caches within a minute; a next key waits this long.
JWKS_CACHE_SECONDS = 60
# Times in state.json are unix seconds up to 9999-12-31T23:59:59Z, the last one datetime (and so
# `keys list`) can show; anything outside 0..MAX_TIME is a hand edit or damage.
MAX_TIME = 253_402_300_799

# A kid is an RFC 7638 thumbprint (base64url); anything else in state.json is a hand edit, and
# it names a file, so it must not be a path.
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")

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
    reload_seconds: float

    @property
    def reload_window(self) -> int:
        """How long a running broker may keep signing with a key the CLI has just retired.

        Tokens it signs meanwhile are covered by the broker itself: its next reload extends the
        retiring key's time to their exp (broker/server/keyring.py), before this window runs out.
        """
        return math.ceil(self.reload_seconds) + 1

    @property
    def promote_after(self) -> int:
        """How long a next key must have been published before it may sign.

        A running broker publishes it within one reload; a verifier that fetched the JWKS just
        before that keeps the old copy for the cache lifetime.
        """
        return JWKS_CACHE_SECONDS + math.ceil(self.reload_seconds)


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


def load_pem(pem: bytes, alg: str) -> SigningKey:
    return ECKey.import_key(pem) if alg.startswith("ES") else RSAKey.import_key(pem)


def _optional_int(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def parse_record(raw: object) -> KeyRecord:
    """One entry of state.json, checked field by field (a hand edit can put anything there)."""
    if not isinstance(raw, dict):
        raise TypeError(f"a key entry is {type(raw).__name__}, not an object")
    fields = {"kid", "alg", "state", "created_at", "activated_at", "retire_after"}
    if missing := {"kid", "alg", "state", "created_at"} - raw.keys():
        raise ValueError(f"a key entry lacks {', '.join(sorted(missing))}")
    if unknown := raw.keys() - fields:
        raise ValueError(f"a key entry has unknown fields {', '.join(sorted(map(str, unknown)))}")
    kid, alg = raw["kid"], raw["alg"]
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise ValueError(f"kid {kid!r} is not an RFC 7638 thumbprint")
    if alg not in ("ES256", "RS256"):
        raise ValueError(f"key {kid}: alg {alg!r} is not ES256 or RS256")
    if raw["state"] not in tuple(KeyState):
        raise ValueError(f"key {kid}: state {raw['state']!r} is not one of next, active, retiring")
    created, activated, retire = raw["created_at"], raw.get("activated_at"), raw.get("retire_after")
    if not isinstance(created, int) or not all(map(_optional_int, (created, activated, retire))):
        raise ValueError(f"key {kid}: created_at/activated_at/retire_after must be unix seconds")
    for name in ("created_at", "activated_at", "retire_after"):
        value = raw.get(name)
        if value is not None and not 0 <= value <= MAX_TIME:
            raise ValueError(f"key {kid}: {name} {value} is not a unix time in 0..{MAX_TIME}")
    return KeyRecord(
        kid=kid,
        alg=alg,
        state=KeyState(raw["state"]),
        created_at=created,
        activated_at=activated,
        retire_after=retire,
    )


def check_unique(records: list[KeyRecord]) -> None:
    """One active key (which one would sign?), one next key, each kid once."""
    for state in (KeyState.ACTIVE, KeyState.NEXT):
        kids = [r.kid for r in records if r.state is state]
        if len(kids) > 1:
            raise ValueError(f"{len(kids)} keys are {state} ({', '.join(kids)}); one at most")
    kids = [r.kid for r in records]
    if dupes := sorted({kid for kid in kids if kids.count(kid) > 1}):
        raise ValueError(f"kid {', '.join(dupes)} is listed more than once")
