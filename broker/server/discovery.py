"""The discovery document and the JWKS as precomputed bytes with a strong ETag.

Pure: it is handed public JWKs and returns bytes; it does not know where keys live. AWS STS
fetches both documents on its own schedule, so they are rendered once per key change and served
as-is (no per-request JSON, no auth, no redirects).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.config import Settings
from broker.store.key_records import JWKS_CACHE_SECONDS as CACHE_SECONDS
from broker.sts.tags import TAGS_CLAIM

CACHE_CONTROL = f"public, max-age={CACHE_SECONDS}"
SUPPORTED_ALGORITHMS = ("ES256", "RS256")  # the order discovery lists them in


@dataclass(frozen=True)
class StaticDocument:
    body: bytes
    etag: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.body).digest()
        tag = base64.urlsafe_b64encode(digest[:18]).decode()
        object.__setattr__(self, "etag", f'"{tag}"')

    def matches(self, if_none_match: str) -> bool:
        """RFC 9110 If-None-Match: a list of entity tags, or '*'."""
        tags = {t.strip() for t in if_none_match.split(",")}
        return "*" in tags or self.etag in tags or f"W/{self.etag}" in tags


def _render(doc: dict[str, Any]) -> StaticDocument:
    return StaticDocument(json.dumps(doc, separators=(",", ":")).encode())


def published_algorithms(public_keys: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The algs the JWKS holds keys for: what discovery may honestly claim to sign with."""
    held = {k.get("alg") for k in public_keys}
    return tuple(a for a in SUPPORTED_ALGORITHMS if a in held)


def discovery_document(settings: Settings, algorithms: Sequence[str]) -> StaticDocument:
    """``algorithms``: those of the published keys (a verifier may pin its allow-list on it)."""
    return _render(
        {
            "issuer": settings.oidc_issuer,
            "jwks_uri": settings.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(algorithms),
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "iat",
                "nbf",
                "exp",
                "jti",
                settings.scope_tag,
                TAGS_CLAIM,
            ],
        }
    )


def jwks_document(public_keys: Sequence[dict[str, Any]]) -> StaticDocument:
    return _render({"keys": list(public_keys)})
