"""The Lua scripts a node keeps in Redis are loaded again when Redis no longer has them.

A Redis that restarts (it keeps nothing on disk here) or fails over to a replica answers
NOSCRIPT to the scripts it was given: the relay's batched append, the presence refresh and
the shared rate limit must each load theirs again and go on, not treat it as an outage.
"""

from __future__ import annotations

import time

import pytest

from roomcast.ratelimit import SharedRateLimiter
from roomcast.storage.presence.redis import RedisPresence
from roomcast.storage.streams import STREAM_START, Append
from roomcast.storage.streams.redis_base import RedisStreams
from tests.conftest import REDIS_KINDS


@pytest.fixture(params=REDIS_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def forget_scripts(backend: RedisStreams) -> None:
    """What a restarted Redis knows of the node's scripts: nothing."""
    await backend.client.script_flush()


async def test_the_relays_batched_append_goes_on_after_redis_forgot_its_script(backend: RedisStreams) -> None:
    await backend.append([Append(1, b'{"seq":1}', 1), Append(2, b'{"seq":1}', 1)])
    await forget_scripts(backend)
    await backend.append([Append(1, b'{"seq":2}', 2), Append(2, b'{"seq":2}', 2)])
    found = await backend.read({1: STREAM_START, 2: STREAM_START}, count=10, timeout=0.2)
    assert {room: [entry.seq for entry in entries] for room, entries in found.items()} == {1: [1, 2], 2: [1, 2]}


async def test_a_presence_refresh_goes_on_after_redis_forgot_its_script(backend: RedisStreams) -> None:
    wall = [time.time()]  # the scores' clock, moved by the test
    presence = RedisPresence(backend.client, backend.prefix, ttl_s=15.0, guard=backend.guarded,
                             clock=lambda: wall[0])
    await presence.join_many([(1, user_id, f"s{user_id}") for user_id in range(1, 4)])
    await presence.connect(1, "s1")
    assert await presence.refresh() == []
    await forget_scripts(backend)
    script = presence._refresh_script  # one Redis only: a cluster refreshes by pipeline
    if script is not None:
        assert await backend.client.script_exists([script.sha]) == (False,)
    before = dict(await backend.client.zrange(presence._room_key(1), 0, -1, withscores=True))
    wall[0] += presence.refresh_interval_s
    assert await presence.refresh() == []
    after = dict(await backend.client.zrange(presence._room_key(1), 0, -1, withscores=True))
    assert after.keys() == before.keys() and all(after[member] > before[member] for member in before)
    if script is not None:
        assert await backend.client.script_exists([script.sha]) == (True,)  # loaded again
    assert await presence.online_in(1) == [1, 2, 3] and await presence.online_users([1, 2]) == {1}


async def test_the_shared_rate_limit_goes_on_after_redis_forgot_its_script(backend: RedisStreams) -> None:
    limiter = SharedRateLimiter(backend.client, f"{backend.prefix}rl:", rate_per_s=0.001, burst=3)
    assert await limiter.take(7, 2) == [0.0, 0.0]
    await forget_scripts(backend)
    waits = await limiter.take(7, 2)  # one token left in the shared bucket: the second waits
    assert waits[0] == 0.0 and waits[1] > 0
    assert not limiter.health.down
