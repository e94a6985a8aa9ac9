"""Token-bucket rate limits, per credential and per client address for failed authentication.

In memory on purpose: one broker process, and a restart that forgets the buckets only gives
callers one fresh burst. Never applied to discovery or JWKS (STS must always reach them).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

from broker.config import Settings
from broker.errors import RateLimited

MAX_KEYS = 100_000  # bound memory under a flood of distinct addresses


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, what: str, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens, bucket.at = self._level(bucket, now), now
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)

    def _make_room(self, now: float) -> None:
        # Forget refilled buckets first: they hold no debt, so a flood of fresh addresses
        # cannot wipe the debt of the ones being limited.
        for key in [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]:
            del self._buckets[key]
        # Everyone in debt: drop the oldest so that 10 % is free (amortised O(1) per key).
        excess = len(self._buckets) - self.max_keys * 9 // 10
        for key in list(itertools.islice(self._buckets, max(excess, 0))):
            del self._buckets[key]

    def _level(self, bucket: _Bucket, now: float) -> float:
        """Tokens in the bucket at ``now``: what it held plus the refill since, up to the burst."""
        return min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)

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


class CallerLimits:
    """The broker's two limits, shared by every minting endpoint: a bucket per caller, and one
    per client address that only failed authentications spend.

    One instance for the app, so failures at the mint and the exchange endpoint drain the same
    address budget, and nothing is limited when ``rate_limits`` is off.
    """

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits
        self.per_caller = RateLimiter(settings.mint_rate_per_second, settings.mint_burst, "mints")
        self.per_address = RateLimiter(
            settings.unauth_rate_per_second, settings.unauth_burst, "failed authentications"
        )

    def charge_caller(self, key: str) -> None:
        if self.enabled:
            self.per_caller.take(key, time.monotonic())

    def charge_failure(self, client: str) -> None:
        """Only failures are limited by address, so a flood of bad bearers from a shared address
        (a NAT, a proxy, other jobs on the runner) never locks out a caller that authenticates.
        Nothing awaits between the check and the spend, so concurrent failures from one address
        cannot all pass the check before any of them is charged.
        """
        if self.enabled:
            self.per_address.take(client, time.monotonic())
