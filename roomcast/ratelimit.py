"""Per-user token buckets for sends and typing, on Trio's clock (so tests can drive it)."""

from __future__ import annotations

from collections import OrderedDict

import trio

from .errors import RateLimited


class TokenBucket:
    """`burst` tokens, refilled at `rate_per_s`; each action takes one."""

    __slots__ = ("burst", "rate_per_s", "tokens", "updated")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated = trio.current_time()

    def take(self) -> float:
        """Take a token; returns 0 on success, else the seconds until one is available."""
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class RateLimiter:
    """One bucket per key (a user id), shared by that user's REST calls and WebSocket sessions.

    Buckets of keys not seen for a while are dropped, oldest first, so memory stays
    bounded by `max_keys` whatever the number of users.
    """

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def check(self, key: object) -> None:
        """Take one token for `key` or raise RateLimited with the wait in `retry_after`."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate_per_s, self.burst)
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        wait = bucket.take()
        if wait:
            raise RateLimited(round(wait, 3))
