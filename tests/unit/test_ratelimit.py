"""Token buckets on Trio's clock: bursts, refill, retry hints, bounded memory."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from roomcast.errors import RateLimited
from roomcast.ratelimit import FailOpen, RateLimiter


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_burst_then_refusal_then_refill(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    for _ in range(3):
        limiter.check("alice")
    with pytest.raises(RateLimited) as caught:
        limiter.check("alice")
    assert caught.value.retry_after_s == pytest.approx(0.5)
    assert caught.value.headers["Retry-After"] == "1"
    await trio.sleep(0.5)
    limiter.check("alice")
    with pytest.raises(RateLimited):
        limiter.check("alice")


async def test_a_refusal_just_before_the_refill_never_says_retry_after_zero(
        autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    limiter.check("alice")
    await trio.sleep(0.9999)  # the next token is 0.1 ms away: rounded to the millisecond, 0
    with pytest.raises(RateLimited) as caught:
        limiter.check("alice")
    assert caught.value.retry_after_s > 0
    assert caught.value.details == {"retry_after": caught.value.retry_after_s}
    assert caught.value.headers["Retry-After"] == "1"


async def test_users_have_their_own_buckets(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    limiter.check("alice")
    limiter.check("bob")
    with pytest.raises(RateLimited):
        limiter.check("alice")


async def test_refill_stops_at_the_burst(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=10, burst=2)
    await trio.sleep(3600)
    limiter.check("alice")
    limiter.check("alice")
    with pytest.raises(RateLimited):
        limiter.check("alice")


async def test_memory_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_keys=10)
    for user in range(100):
        limiter.check(user)
    assert len(limiter._buckets) == 10


async def test_several_tokens_at_once_are_taken_in_order_and_each_refusal_has_its_wait(
        autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert limiter.take_now("alice", 2) == [0.0, 0.0]
    assert limiter.take_now("alice", 3) == [0.0, 0.5, 0.5]  # one left; the next token is 0.5 s away
    assert limiter.take_now("alice", 1) == [0.5]  # refusals took nothing
    await trio.sleep(0.5)
    assert limiter.take_now("alice", 2) == [0.0, 0.5]
    assert limiter.take_if_ready("bob", 4) == [0.0, 0.0, 0.0, 0.5]  # in process: always ready


async def test_the_least_recently_used_bucket_is_the_one_dropped(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate_per_s=0.001, burst=1, max_keys=2)
    limiter.check("alice")
    limiter.check("bob")
    with pytest.raises(RateLimited):
        limiter.check("alice")  # alice is now the most recently used
    limiter.check("carol")  # bob's bucket goes
    assert list(limiter._buckets) == ["alice", "carol"]
    with pytest.raises(RateLimited):
        limiter.check("alice")


async def test_a_shared_store_that_is_down_is_asked_again_once_per_retry(
        mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomcast.ratelimit")
    health = FailOpen("redis", retry_s=1.0)
    assert health.should_try()
    health.failed(OSError("connection refused"))
    health.failed(OSError("connection refused"))
    assert not health.should_try()  # the calls meanwhile go without it at once
    mock_clock.jump(1.0)
    assert health.should_try() and not health.should_try()
    health.succeeded()
    assert health.should_try() and health.should_try()
    events = [record.getMessage() for record in caplog.records if record.name == "roomcast.ratelimit"]
    assert events == ["ratelimit.store_unavailable", "ratelimit.store_recovered"]  # once each way
