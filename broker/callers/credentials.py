"""CI bearers and personal secrets: issue, verify, rotate, revoke.

A secret reads ``otb_<kind>_<id>_<43 random chars>``: the fixed prefix lets secret scanners
spot a leak, the id finds the row, 256 random bits make guessing hopeless, so one SHA-256
(no slow KDF needed for random secrets) is all that is stored. Verification always compares
two digests, whether or not the id exists, so timing tells nothing about which ids exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

from broker.callers.claims import MintRequest, issue_findings
from broker.callers.scopes import Allowance, allowance_for
from broker.config import MIN_TOKEN_TTL, Settings
from broker.errors import (
    CredentialDamaged,
    CredentialExists,
    CredentialNotFound,
    InvalidRequest,
    ScopeMalformed,
    Unauthorized,
)
from broker.store import CredentialRow, Store, StoreConflict

SECRET_PREFIX = "otb_"  # noqa: S105 - a prefix, not a secret
CredentialKind = Literal["ci", "dev"]
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("ci", "dev")
_DUMMY = hashlib.sha256(b"no such credential").digest()


@dataclass(frozen=True, kw_only=True)
class Credential:
    """An authenticated CI or dev credential, as the mint path needs it."""

    kind: CredentialKind
    id: str
    name: str
    allowance: Allowance
    max_ttl: int
    extra_tags: Mapping[str, str]
    # Its row was damaged outside the CLI: it authenticates (so the refusal is recorded against
    # it) but may mint nothing until an operator replaces it.
    damaged: bool = False

    @property
    def home(self) -> str:
        return f"{self.kind}/{self.name}"

    def check_intact(self) -> None:
        if self.damaged:
            raise CredentialDamaged(
                f"credential {self.id} is damaged in the store (its tags, allowance or max TTL "
                "were edited outside the CLI); an operator must replace it: "
                f"`test-broker credentials revoke {self.id}`, then add it again"
            )


@dataclass(frozen=True, kw_only=True)
class CredentialInfo:
    """What `credentials list` shows: never a secret or a hash."""

    id: str
    kind: str
    name: str
    scope_pattern: str
    max_ttl: int
    extra_tags: dict[str, str]
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    previous_valid_until: int | None

    @classmethod
    def of(cls, row: CredentialRow) -> CredentialInfo:
        return cls(
            id=row.id,
            kind=row.kind,
            name=row.name,
            scope_pattern=row.scope_pattern,
            max_ttl=row.max_ttl,
            extra_tags=_extra_tags(row.extra_tags) or {},
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            previous_valid_until=row.previous_valid_until,
        )


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _new_secret(kind: str, cred_id: str) -> str:
    return f"{SECRET_PREFIX}{kind}_{cred_id}_{secrets.token_urlsafe(32)}"


def _parse(bearer: str) -> tuple[str, str] | None:
    parts = bearer.split("_", 3)
    if len(parts) != 4 or parts[0] + "_" != SECRET_PREFIX or parts[1] not in CREDENTIAL_KINDS:
        return None
    return parts[1], parts[2]


def is_credential_bearer(bearer: str) -> bool:
    return bearer.startswith(SECRET_PREFIX)


def authenticate(store: Store, bearer: str, now: int) -> Credential:
    """The caller a secret belongs to; one Unauthorized for every way it can be wrong.

    An unknown id, an unparsable bearer and a wrong secret do the same work: a decoy row stands
    in for a missing one (Store.lookup_credential) and every check runs on whatever was found.
    """
    parsed = _parse(bearer)
    kind, cred_id = parsed if parsed else ("", "")
    row = store.lookup_credential(cred_id)
    digest = _digest(bearer)
    # A row damaged outside the CLI fails closed: a hash that is no hash matches nothing, a time
    # that is no time revokes, and any other damage refuses the mint (credential_damaged).
    current_ok = hmac.compare_digest(digest, _hash(row.secret_hash))
    previous_ok = hmac.compare_digest(digest, _hash(row.previous_hash))
    grace_until, revoked_at, expires_at = map(
        _time, (row.previous_valid_until, row.revoked_at, row.expires_at)
    )
    in_grace = previous_ok and grace_until is not None and now < grace_until
    live = revoked_at is None and (expires_at is None or now < expires_at)
    # A decoy's kind is "", which no parsed bearer carries.
    if not (row.kind == kind and live and (current_ok or in_grace)):
        raise Unauthorized()
    tags = _extra_tags(row.extra_tags)
    try:
        allowance = Allowance(row.scope_pattern)
    except (ScopeMalformed, TypeError):
        allowance = None
    max_ttl = _time(row.max_ttl)
    return Credential(
        kind="ci" if row.kind == "ci" else "dev",
        id=row.id,
        name=row.name,
        allowance=allowance or Allowance(f"{row.kind}/damaged"),
        max_ttl=max_ttl or 0,
        extra_tags=tags or {},
        damaged=tags is None or allowance is None or not max_ttl,
    )


# Both make the same calls whatever they are given, so a decoy costs what a row costs.
def _hash(value: object) -> bytes:
    candidate = value if isinstance(value, bytes) else b""
    return candidate if len(candidate) == len(_DUMMY) else _DUMMY


def _time(value: object) -> int | None:
    """An integer column as stored, or None; damage (text, a float) reads as a revocation."""
    is_bool = isinstance(value, bool)
    if isinstance(value, int) and not is_bool:
        return value
    return None if value is None else 0


def _extra_tags(text: object) -> dict[str, str] | None:
    """A credential's fixed tags, or None if the row was damaged outside the CLI."""
    try:
        tags = json.loads(text)  # type: ignore[arg-type]  # a damaged column may be no text
    except (ValueError, TypeError):
        return None
    if not isinstance(tags, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return None
    return tags


def check_mintable(
    settings: Settings, *, kind: CredentialKind, name: str, extra_tags: Mapping[str, str], now: int
) -> None:
    """Refuse now a credential that every mint would refuse (too many or too long tags)."""
    smallest = MintRequest(
        kind=kind,
        caller_id="",
        scope=f"{kind}/{name}",
        max_ttl=MIN_TOKEN_TTL,
        extra_tags=extra_tags,
    )
    findings = issue_findings(settings, smallest, now)
    if findings:
        first = findings[0]
        raise InvalidRequest(
            f"every token for this credential would break STS rule {first.rule}: "
            f"{first.detail} ({first.fix})"
        )


def add(
    store: Store,
    *,
    kind: CredentialKind,
    name: str,
    max_ttl: int,
    now: int,
    scope_pattern: str | None = None,
    extra_tags: Mapping[str, str] = MappingProxyType({}),
    expires_at: int | None = None,
) -> tuple[CredentialInfo, str]:
    """Create a credential; returns it with its secret, which is never available again.

    Without a pattern, tags or expiry it is the plain credential: allowance ``<kind>/<name>/**``.
    """
    allowance = allowance_for(kind, name, scope_pattern)
    cred_id = secrets.token_hex(6)
    secret = _new_secret(kind, cred_id)
    row = CredentialRow(
        id=cred_id,
        kind=kind,
        name=name,
        secret_hash=_digest(secret),
        previous_hash=None,
        previous_valid_until=None,
        scope_pattern=allowance.pattern,
        max_ttl=max_ttl,
        extra_tags=json.dumps(dict(extra_tags), sort_keys=True),
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
        last_used_at=None,
    )
    try:
        store.insert_credential(row)
    except StoreConflict:
        raise CredentialExists(
            f"a live {kind} credential named {name!r} exists; rotate or revoke it first"
        ) from None
    return CredentialInfo.of(row), secret


def find(store: Store, ref: str) -> CredentialRow:
    """A live credential by id, or by name when the name is unambiguous."""
    live = [r for r in store.list_credentials() if r.revoked_at is None]
    hits = [r for r in live if r.id == ref] or [r for r in live if r.name == ref]
    if len(hits) != 1:
        why = "several kinds use that name; give the id" if hits else "no live credential"
        raise CredentialNotFound(f"{ref!r}: {why} (see `test-broker credentials list`)")
    return hits[0]


def revoke(store: Store, ref: str, now: int) -> CredentialInfo:
    row = find(store, ref)
    store.update_credential(row.id, revoked_at=now)
    return CredentialInfo.of(replace(row, revoked_at=now))


def rotate(store: Store, ref: str, grace: int, now: int) -> tuple[CredentialInfo, str]:
    """A new secret; the old one keeps working for ``grace`` seconds (running CI jobs)."""
    row = find(store, ref)
    secret = _new_secret(row.kind, row.id)
    changes = {
        "secret_hash": _digest(secret),
        "previous_hash": row.secret_hash,
        "previous_valid_until": now + grace,
    }
    store.update_credential(row.id, **changes)
    return CredentialInfo.of(replace(row, **changes)), secret  # type: ignore[arg-type]
