"""Token buckets in Redis: one budget per user whichever node takes from it."""

from __future__ import annotations

import pytest

from roomcast.errors import RateLimited
from roomcast.ratelimit import SharedRateLimiter
from tests.helpers import eventually
from tests.redis_fixtures import redis_key_prefix, redis_url
from tests.redis_helpers import redis_admin

__all__ = ["redis_key_prefix", "redis_url"]  # on one Redis and on a cluster, keys deleted afterwards


async def test_two_nodes_take_from_one_budget(redis_url: str, redis_key_prefix: str) -> None:
    async with redis_admin(redis_url) as node_a, redis_admin(redis_url) as node_b:
        a = SharedRateLimiter(node_a, f"{redis_key_prefix}send:", rate_per_s=0.5, burst=3)
        b = SharedRateLimiter(node_b, f"{redis_key_prefix}send:", rate_per_s=0.5, burst=3)
        await a.acquire(1)
        await b.acquire(1)
        await a.acquire(1)
        with pytest.raises(RateLimited) as refused:
            await b.acquire(1)
        assert 0 < refused.value.retry_after_s <= 2.0  # one token comes back every 2 s
        with pytest.raises(RateLimited):
            await a.acquire(1)
        await b.acquire(2)  # every user has a budget of its own
        assert not a.health.down and not b.health.down


async def test_the_bucket_refills(redis_url: str, redis_key_prefix: str) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}typing:", rate_per_s=20, burst=1)
        await limiter.acquire(7)
        with pytest.raises(RateLimited):
            await limiter.acquire(7)

        async def taken() -> bool:
            try:
                await limiter.acquire(7)
            except RateLimited:
                return False
            return True

        await eventually(taken, timeout=10)
        ttl = await client.pttl(f"{redis_key_prefix}typing:7")
        assert 0 < ttl <= 1050  # a full bucket's refill time (50 ms) plus a second: nothing lingers
