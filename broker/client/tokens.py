"""A thread-safe cache of minted tokens, each replaced a margin before it expires."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.client.broker_api import MintedToken

# Replace a token this long before its exp (at most a third of its lifetime): covers clock skew
# between this host and the verifier and the time a caller holds the token before using it.
SKEW_MARGIN = 60.0


@dataclass(frozen=True)
class _Held:
    token: MintedToken
    refresh_at: float


def refresh_at(token: MintedToken, received_at: float) -> float:
    """When to replace ``token``: SKEW_MARGIN before exp, or at 2/3 of a shorter lifetime."""
    lifetime = max(0.0, token.expiration - received_at)
    return token.expiration - min(SKEW_MARGIN, lifetime / 3)


class TokenCache:
    """Tokens by (scope, ttl); concurrent callers of one key share one mint."""

    def __init__(
        self,
        mint: Callable[[str | None, int | None], MintedToken],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mint = mint
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[tuple[str | None, int | None], _Held] = {}

    def get(self, scope: str | None = None, ttl: int | None = None) -> MintedToken:
        key = (scope, ttl)
        with self._lock:  # one lock: mints are rare and fast, and callers wait for the same one
            held = self._held.get(key)
            if held is None or self._clock() >= held.refresh_at:
                token = self._mint(scope, ttl)
                held = _Held(token, refresh_at(token, self._clock()))
                self._held[key] = held
            return held.token

    def put(self, scope: str | None, ttl: int | None, token: MintedToken) -> None:
        """Keep a token minted elsewhere (the namespace probe's) for later callers."""
        with self._lock:
            self._held[(scope, ttl)] = _Held(token, refresh_at(token, self._clock()))
