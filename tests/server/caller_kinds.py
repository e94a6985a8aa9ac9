"""Every combination of enabled caller kinds, the inert one too, for tests that run on each.

Settings overrides for a loopback issuer (where federation-proof would otherwise default to on),
with the minting routes each combination must mount: SPIRE-style, the expectation is written
here, not derived from the route table under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

SESSION = "/session/create"
MINT = "/v1/mint-oidc-jwt"
# Mounted whatever is enabled (README, Endpoints).
ALWAYS = frozenset(
    {
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
)


@dataclass(frozen=True)
class Combination:
    federation_proof: bool
    credential_minting: bool
    minting_paths: frozenset[str]  # what it must mount of SESSION and MINT

    @property
    def overrides(self) -> dict[str, Any]:
        return {
            "federation_proof": self.federation_proof,
            "credential_minting": self.credential_minting,
        }


COMBINATIONS = [
    pytest.param(Combination(False, False, frozenset()), id="inert"),
    pytest.param(Combination(True, False, frozenset({SESSION, MINT})), id="federation"),
    pytest.param(Combination(False, True, frozenset({MINT})), id="credentials"),
    pytest.param(Combination(True, True, frozenset({SESSION, MINT})), id="both"),
]
