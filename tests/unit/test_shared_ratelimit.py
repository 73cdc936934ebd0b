"""Token buckets in Redis: one budget per user whichever node takes from it."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from roomcast.errors import RateLimited
from roomcast.ratelimit import SharedRateLimiter, _Ask
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


async def test_tokens_asked_together_take_one_call_and_each_its_own_outcome(
        redis_url: str, redis_key_prefix: str) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}send:", rate_per_s=0.01, burst=2)
        refused: list[int] = []

        async def ask(key: int) -> None:
            try:
                await limiter.acquire(key)
            except RateLimited:
                refused.append(key)

        async with trio.open_nursery() as nursery:
            for key in (1, 1, 1, 2, 3, 3):  # user 1 asks once more than its burst
                nursery.start_soon(ask, key)
        assert refused == [1] and limiter.calls == 1
        # Asked while a call is out, tokens go in the next one: one call per batch, not per send.
        gate, real_execute = trio.Event(), limiter._execute
        sizes: list[int] = []

        async def held_execute(asks: dict[str, _Ask]) -> tuple[dict[str, list[float]], dict[str, int]]:
            sizes.append(sum(ask.need for ask in asks.values()))
            if len(sizes) == 1:
                await gate.wait()
            return await real_execute(asks)

        limiter._execute = held_execute  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, 10)
            await trio.testing.wait_all_tasks_blocked()  # its call is out, and held
            for key in range(11, 30):
                nursery.start_soon(ask, key)
                await trio.sleep(0)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert refused == [1] and sizes == [1, 19], sizes
        with pytest.raises(RateLimited):
            await limiter.acquire(3)  # what was taken together is in Redis for later calls


async def test_an_asker_cancelled_while_its_call_is_out_leaves_the_others_answered(
        redis_url: str, redis_key_prefix: str) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}send:", rate_per_s=0.01, burst=1)
        answered: list[int] = []

        async def ask(key: int) -> None:
            try:
                await limiter.acquire(key)
                answered.append(key)
            except RateLimited:
                answered.append(-key)

        first = trio.CancelScope()

        async def ask_then_leave(key: int) -> None:
            with first:
                await ask(key)

        gate, real_execute = trio.Event(), limiter._execute

        async def held_execute(asks: dict[str, _Ask]) -> tuple[dict[str, list[float]], dict[str, int]]:
            await gate.wait()
            return await real_execute(asks)

        limiter._execute = held_execute  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_then_leave, 1)  # the first asker: it makes the call for all three
            nursery.start_soon(ask, 1)
            nursery.start_soon(ask, 2)
            await trio.testing.wait_all_tasks_blocked()
            first.cancel()  # its session ends while the call is out
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        # Whichever of the three makes the call (Trio starts them in any order), the two others
        # are answered by it; the one cancelled is answered too if it made the call.
        assert 2 in answered and len(answered) in (2, 3) and {abs(key) for key in answered} == {1, 2}, answered
        assert limiter.calls == 1 and not limiter.health.down


@pytest.fixture
def still_clock() -> trio.testing.MockClock:
    """Trio's time stands still unless a test moves it (Redis keeps its own, real, clock)."""
    return trio.testing.MockClock()


async def granted(limiter: SharedRateLimiter, user: int, asks: int) -> int:
    """How many of `asks` one-token takes, one after another, got their token."""
    taken = 0
    for _ in range(asks):
        taken += await limiter.take(user, 1) == [0.0]
    return taken


async def test_a_busy_user_leases_tokens_ahead_and_never_gets_more_than_the_budget(
        redis_url: str, redis_key_prefix: str, still_clock: trio.testing.MockClock) -> None:
    async with redis_admin(redis_url) as node_a, redis_admin(redis_url) as node_b:
        a = SharedRateLimiter(node_a, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=100)
        b = SharedRateLimiter(node_b, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=100)
        # Each call leases twice as many as the one before (1 + 0, 1 + 1, 1 + 2, 1 + 4, 1 + 8):
        # twenty sends in five round trips, none of their tokens left over.
        assert await granted(a, 1, 20) == 20
        assert a.calls == 5
        # Node b takes from the same bucket: exactly the 80 left, leases included.
        assert await granted(b, 1, 85) == 80
        with pytest.raises(RateLimited):
            await a.acquire(1)
        # A lease never holds more than a tenth of the burst: a's next call asked 1 + 10 and got none.
        assert a._leases[1].tokens == 0 and a._leases[1].size == 0


async def test_leased_tokens_lapse_after_a_second(
        redis_url: str, redis_key_prefix: str, still_clock: trio.testing.MockClock) -> None:
    async with redis_admin(redis_url) as node_a, redis_admin(redis_url) as node_b:
        a = SharedRateLimiter(node_a, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=30)
        b = SharedRateLimiter(node_b, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=30)
        assert await granted(a, 7, 3) == 3  # calls of 1, 1 + 1, then one spent from the lease
        assert await granted(a, 7, 1) == 1 and a.calls == 3  # 1 + 2: two left in the lease
        assert a._leases[7].tokens == 2
        still_clock.jump(1.5)
        calls = a.calls
        assert await granted(a, 7, 1) == 1
        assert a.calls == calls + 1 and a._leases[7].tokens == 0  # lapsed: asked Redis, exactly, again
        # The two that lapsed stay taken: 30 - 4 - 2 - 1 are left for anyone.
        assert await granted(b, 7, 30) == 23


async def test_small_bursts_and_refusals_lease_nothing(
        redis_url: str, redis_key_prefix: str, still_clock: trio.testing.MockClock) -> None:
    async with redis_admin(redis_url) as client:
        small = SharedRateLimiter(client, f"{redis_key_prefix}small:", rate_per_s=0.001, burst=9)
        assert await granted(small, 1, 12) == 9 and small.calls == 12  # every token asked when needed
        big = SharedRateLimiter(client, f"{redis_key_prefix}big:", rate_per_s=0.001, burst=40)
        assert await granted(big, 1, 45) == 40
        # Refused, the user's next call asks for no more than it needs.
        assert big._leases[1].size == 0 and big._leases[1].tokens == 0
        calls = big.calls
        assert await granted(big, 1, 3) == 0 and big.calls == calls + 3


async def test_no_lease_comes_from_the_lower_half_of_the_bucket(
        redis_url: str, redis_key_prefix: str, still_clock: trio.testing.MockClock) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=40)
        # Another node has left half the bucket (the script's own format: t = tokens, u = refilled at).
        await client.hset(f"{redis_key_prefix}send:3", {"t": "21", "u": repr(time.time())})
        assert await granted(limiter, 3, 3) == 3
        # 21 -> 20 (the first, alone), then 1 + 1 asked with 19 left: none above half to lease.
        assert limiter.calls == 3 and limiter._leases[3].tokens == 0
        assert await granted(limiter, 3, 20) == 18


async def test_tokens_are_ready_at_once_only_from_a_lease_that_covers_them(
        redis_url: str, redis_key_prefix: str, still_clock: trio.testing.MockClock) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=30)
        assert limiter.take_if_ready(5, 1) is None  # no lease yet: a round trip is needed
        assert await granted(limiter, 5, 3) == 3  # calls of 1, 1 + 1, then one spent from the lease
        assert await granted(limiter, 5, 1) == 1 and limiter._leases[5].tokens == 2
        calls = limiter.calls
        assert limiter.take_if_ready(5, 3) is None  # more than the lease holds: nothing is spent
        assert limiter._leases[5].tokens == 2
        assert limiter.take_if_ready(5, 2) == [0.0, 0.0]
        assert limiter._leases[5].tokens == 0 and limiter.calls == calls  # no call made
        assert limiter.take_if_ready(5, 1) is None
        # A lease that lapsed is not spent either.
        assert await granted(limiter, 5, 1) == 1 and limiter._leases[5].tokens > 0
        still_clock.jump(1.5)
        assert limiter.take_if_ready(5, 1) is None


async def test_tokens_are_ready_at_once_from_the_node_s_own_buckets_while_redis_is_down(
        redis_url: str, redis_key_prefix: str) -> None:
    async with redis_admin(redis_url) as client:
        limiter = SharedRateLimiter(client, f"{redis_key_prefix}send:", rate_per_s=0.001, burst=2)
        limiter.health.failed(ConnectionError("gone"))
        assert limiter.take_if_ready(9, 3) == [0.0, 0.0, pytest.approx(1000.0, rel=0.01)]
