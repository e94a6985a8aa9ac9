"""What the store holds: credential rows, audit records, refusal counts, and the decoy row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple


@dataclass(frozen=True)
class CredentialRow:
    id: str
    kind: str
    name: str
    secret_hash: bytes
    previous_hash: bytes | None
    previous_valid_until: int | None
    scope_pattern: str
    max_ttl: int
    extra_tags: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


CREDENTIAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CredentialRow))


class AuditRecord(NamedTuple):
    """One mint attempt; a tuple so a batch goes to SQLite without per-field copying."""

    at: float
    caller_kind: str | None
    caller_id: str | None
    sub: str | None
    scope: str | None
    jti: str | None
    kid: str | None
    client: str | None
    result: str
    error: str | None
    exp: int | None = None
    # Token exchange: the job token's iss, sub, jti and the claims the scope came from (JSON).
    subject: str | None = None


@dataclass(frozen=True)
class RefusalCount:
    """Refusals before authentication of one client address, error and minute."""

    minute: int  # unix seconds at the start of the minute
    client: str
    error: str
    count: int


# What an unknown id finds: no kind matches it, so nothing authenticates against it.
DECOY = CredentialRow(
    id="",
    kind="",
    name="",
    secret_hash=bytes(32),
    previous_hash=None,
    previous_valid_until=None,
    scope_pattern="",
    max_ttl=0,
    extra_tags="{}",
    created_at=0,
    expires_at=None,
    revoked_at=0,
    last_used_at=None,
)


def marks_used(records: Sequence[AuditRecord]) -> set[tuple[str, int]]:
    """(credential id, second) of each successful CI/dev mint: its credential's last use."""
    return {
        (r.caller_id, int(r.at))
        for r in records
        if r.result == "ok" and r.caller_kind in ("ci", "dev") and r.caller_id
    }
