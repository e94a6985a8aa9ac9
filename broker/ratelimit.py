"""Token-bucket rate limits, per credential and per client address for failed authentication.

In memory on purpose: one broker process, and a restart that forgets the buckets only gives
callers one fresh burst. Never applied to discovery or JWKS (STS must always reach them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from broker.errors import RateLimited

_MAX_KEYS = 100_000  # bound memory under a flood of distinct addresses


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, what: str) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def check(self, key: str, now: float) -> None:
        """Raise RateLimited if ``key`` has no token left; does not spend one."""
        bucket = self._bucket(key, now)
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.rate)
            raise RateLimited(f"too many {self.what}; retry in {wait} s", retry_after=wait)

    def spend(self, key: str, now: float) -> None:
        self._bucket(key, now).tokens -= 1

    def take(self, key: str, now: float) -> None:
        self.check(key, now)
        self.spend(key, now)
