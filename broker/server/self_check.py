"""The issuer rules on the broker's own discovery and JWKS: at start, and after each key change.

No network: the documents are the ones this broker serves. A finding STS would reject every token
for (or leaked private key material) refuses start; the rest are logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.sts.catalogue import Finding, Severity
from broker.sts.issuer_rules import check_discovery, check_jwks


def self_check(discovery: Mapping[str, Any], jwks: Mapping[str, Any], issuer: str) -> list[Finding]:
    return [*check_discovery(discovery, issuer=issuer), *check_jwks(jwks)]


def is_fatal(finding: Finding) -> bool:
    """True when STS would refuse every token of this issuer, or private key material leaked."""
    return finding.severity is Severity.REJECT
