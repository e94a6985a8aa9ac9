"""JWT text: the one parser of a compact JWS (header, claims, signature), read as STS reads it.

No signature verification here: ``doctor`` verifies with the JWK STS would pick, ``verify`` only
reads the claims to explain what STS and S3 will see.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, kw_only=True)
class Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    duplicates: Mapping[str, list[Any]]  # members given more than once: name -> every value


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (JWS compact, JWK members); ValueError on anything else."""
    # JWS compact is unpadded base64url; the decoder would silently skip any other character.
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError(text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _loads(segment: bytes) -> tuple[Any, dict[str, list[Any]]]:
    """JSON keeping the last of duplicate members, as STS does, plus the top level's duplicates."""
    duplicates: dict[str, list[Any]] = {}

    def collect(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        values: dict[str, list[Any]] = {}
        for name, value in pairs:
            values.setdefault(name, []).append(value)
        duplicates = {name: seen for name, seen in values.items() if len(seen) > 1}
        return {name: seen[-1] for name, seen in values.items()}  # the outermost object is last

    doc = json.loads(segment, parse_constant=_no_constant, object_pairs_hook=collect)
    return doc, duplicates if isinstance(doc, dict) else {}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json accepts NaN and Infinity; RFC 8259 does not


def parse_token(text: str) -> Token | None:
    """The header, claims and signature of a compact JWS; None when it is none."""
    parts = text.split(".")
    if len(parts) != 3:
        return None
    try:
        (header, header_dups), (claims, claim_dups) = (_loads(b64url_decode(p)) for p in parts[:2])
        signature = b64url_decode(parts[2])
    # ValueError includes JSON and UTF-8 errors; RecursionError is JSON nested too deep ("[" * 10k)
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    return Token(
        header=header,
        claims=claims,
        signing_input=signing_input,
        signature=signature,
        duplicates={f"header {k}": v for k, v in header_dups.items()} | claim_dups,
    )
