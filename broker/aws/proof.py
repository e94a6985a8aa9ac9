"""What the isolation proof runs against (Target) and what each of its steps found (Step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "unproven": AccessDenied on a probe object nobody could show exists (see ProbeCheck).
Outcome = Literal["allowed", "denied", "error", "skipped", "unproven"]
FOREIGN_PREFIX = "0xdeadbeef/"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the proof runs: role, bucket, and (for SeaweedFS or a proxy) endpoint overrides."""

    role_arn: str
    bucket: str
    scope_tag: str
    region: str = "us-east-1"
    sts_endpoint: str | None = None
    s3_endpoint: str | None = None
    foreign_prefix: str = FOREIGN_PREFIX
    session_name: str = "test-broker-verify"


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    outcome: Outcome
    expected: Outcome
    ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected
