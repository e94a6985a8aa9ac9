"""The mock federation-proof backend: proof string → stable wallet → short-lived session bearer.

Upstream's mock keeps one account per proof string; here the wallet is an HMAC of the proof under
a secret kept in the data directory, so the same proof maps to the same wallet across restarts
without storing proofs. Session bearers are self-contained (wallet, expiry, nonce, MAC), so they
survive restarts and expire without a table to clean.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from broker.errors import KeyStoreError, Unauthorized
from broker.store.files import create_once, private_dir

SESSION_PREFIX = "fps_"
# Upstream's mock rejects exactly these proofs; anything else is a (mock) federated account.
REJECTED_PROOFS = frozenset({"", "invalid"})
_WALLET_BYTES = 20
_LAYOUT = struct.Struct(">20sQ8s")  # wallet, expiry (unix s), nonce
_MAC_BYTES = 32
_RAW_BYTES = _LAYOUT.size + _MAC_BYTES
# The one spelling create_session issues: unpadded base64url, so a fixed length. Python's decoder
# would also take '+', '/', '=' and skip foreign characters: each a second working spelling of
# the same bearer, which log redaction (broker/server/logs.py) would have to guess.
_ENCODED_CHARS = (4 * _RAW_BYTES + 2) // 3
_ENCODED = re.compile(rf"[A-Za-z0-9_-]{{{_ENCODED_CHARS}}}")


@dataclass(frozen=True, kw_only=True)
class Session:
    bearer: str
    wallet: str
    expires_at: int


def load_secret(data_dir: Path) -> bytes:
    """The per-installation HMAC secret, created on first use (0600, atomic)."""
    path = private_dir(data_dir) / "federation.key"
    secret = create_once(path, os.urandom(32))
    if len(secret) < 32:
        # A truncated copy or a hand edit; the CLI reports a KeyStoreError in one line.
        raise KeyStoreError(
            f"{path} holds {len(secret)} bytes, expected 32; delete it to regenerate "
            "(existing sessions stop working and every proof maps to a new wallet)"
        )
    return secret


class FederationProof:
    def __init__(self, secret: bytes, session_ttl: int) -> None:
        self._wallet_key = hmac.new(secret, b"wallet", hashlib.sha256).digest()
        self._session_key = hmac.new(secret, b"session", hashlib.sha256).digest()
        self._ttl = session_ttl

    def wallet_for(self, proof: str) -> str:
        digest = hmac.new(self._wallet_key, proof.encode(), hashlib.sha256).digest()
        return "0x" + digest[:_WALLET_BYTES].hex()

    def create_session(self, proof: str, now: int) -> Session:
        if proof in REJECTED_PROOFS:
            raise Unauthorized()
        wallet = self.wallet_for(proof)
        expires_at = now + self._ttl
        payload = _LAYOUT.pack(bytes.fromhex(wallet[2:]), expires_at, secrets.token_bytes(8))
        mac = hmac.new(self._session_key, payload, hashlib.sha256).digest()
        bearer = SESSION_PREFIX + _encode(payload + mac)
        return Session(bearer=bearer, wallet=wallet, expires_at=expires_at)

    def resolve(self, bearer: str, now: int) -> Session:
        """The session a bearer stands for; Unauthorized (one fixed answer) for anything else."""
        if not bearer.startswith(SESSION_PREFIX):
            raise Unauthorized()
        raw = _decode(bearer[len(SESSION_PREFIX) :])
        if raw is None:
            raise Unauthorized()
        payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        expected = hmac.new(self._session_key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise Unauthorized()
        wallet, expires_at, _nonce = _LAYOUT.unpack(payload)
        if now >= expires_at:
            raise Unauthorized()
        return Session(bearer=bearer, wallet="0x" + wallet.hex(), expires_at=expires_at)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> bytes | None:
    """The bytes of a canonically encoded bearer body, else None."""
    if not _ENCODED.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # The last character carries spare low bits; only the spelling with them zero is ours.
    return raw if _encode(raw) == text else None
