"""Room actors on real Redis Streams: delivery, dropped connections, a Redis restart, bounded connections.

The tests that use `redis_url` run on one Redis and on a Redis Cluster. Real clock: Redis
blocks in real time on the server. Retry delays are shortened; timeouts are only guards
against a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from roomcast.config import Settings
from roomcast.node import Node, open_node
from roomcast.storage.streams import StreamUnavailable
from tests.conftest import make_settings, service_missing
from tests.redis_fixtures import redis_key_prefix, redis_url
from tests.redis_helpers import kill_clients, named_clients

from .helpers import Recorder, commit_events, commit_to_rooms, create_rooms, unpublished_count
from .lifecycle import Lifecycle
from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis
__all__ = ["redis_key_prefix", "redis_url"]  # on one Redis and on a cluster, keys deleted afterwards
# Tests on a Redis of their own (or none) use this prefix, not the shared servers' fixtures.
PRIVATE_PREFIX = "rc-test:private:"

FAST_RETRIES = {"stream_retry_base_s": 0.02, "stream_retry_max_s": 0.2, "redis_timeout_s": 5,
                "redis_connect_timeout_s": 1}


@pytest.fixture
def settings_overrides(redis_url: str, redis_key_prefix: str) -> dict[str, Any]:
    return {"redis_url": redis_url, "redis_key_prefix": redis_key_prefix, **FAST_RETRIES}


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


async def test_events_flow_through_redis_in_order_as_shared_bytes(node: Node) -> None:
    assert node.streams.name in ("redis", "redis-cluster")
    [room] = await create_rooms(node)
    alice, bob = Recorder(), Recorder()
    await node.rooms.subscribe(room, alice)
    await node.rooms.subscribe(room, bob, since=0)
    with trio.fail_after(30):
        for size in (1, 4, 10, 5):
            await commit_events(node, room, size)
        await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 1, "state": True})
        await alice.wait_for(21)
        await bob.wait_for(21)
    assert alice.seqs == bob.seqs == list(range(1, 21))
    assert [e["type"] for e in alice.events].count("typing") == 1  # no order relative to stored events
    assert all(a is b for a, b in zip(alice.items, bob.items, strict=True))


async def test_the_reader_reconnects_after_its_connections_are_killed(
        node: Node, redis_url: str, redis_key_prefix: str, lifecycle: Lifecycle) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    with trio.fail_after(30):
        expected = 0
        killed: set[int] = set()
        for _ in range(3):
            await commit_events(node, room, 5)
            expected += 5
            await subscriber.wait_for(expected)
            closed = await kill_clients(redis_url, redis_key_prefix)
            assert closed and not killed & closed  # new connections each time
            killed |= closed
        await commit_events(node, room, 5)
        await subscriber.wait_for(expected + 5)
    assert subscriber.seqs == list(range(1, expected + 6))
    # (coredis may retry the interrupted XREAD itself; either way the reader carries on.)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    try:
        server = RedisServer(tmp_path)
    except FileNotFoundError as exc:
        service_missing("redis-server (the binary)", str(exc))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_redis_restart_loses_no_committed_event(
        private_redis: RedisServer, tmp_path: Path, database_url: str,
        lifecycle: Lifecycle) -> None:
    settings = make_settings(tmp_path, database_url, redis_url=private_redis.url,
                             redis_key_prefix=PRIVATE_PREFIX, **FAST_RETRIES)
    async with open_node(settings, migrate=False) as node:
        [room] = await create_rooms(node)
        subscriber, late = Recorder(), Recorder()
        await node.rooms.subscribe(room, subscriber)
        with trio.fail_after(60):
            await commit_events(node, room, 5)
            await subscriber.wait_for(5)
            while await unpublished_count(node):
                await trio.sleep(0.01)

            await private_redis.stop()
            await commit_events(node, room, 3)  # committed while Redis is gone
            await trio.sleep(0.3)
            assert await unpublished_count(node) == 3
            await private_redis.start()  # empty: every stream entry is gone
            await commit_events(node, room, 2)
            await subscriber.wait_for(10)
            await node.rooms.subscribe(room, late, since=2)
            await commit_events(node, room, 1)
            await subscriber.wait_for(11)
            await late.wait_for(9)
    assert subscriber.seqs == list(range(1, 12))
    assert late.seqs == list(range(3, 12))
    assert lifecycle.lines("stream.unavailable") and lifecycle.lines("stream.reconnected")
    assert lifecycle.lines("outbox.stream_unavailable") and lifecycle.lines("outbox.stream_recovered")
    assert not lifecycle.lines("actor.crashed")


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_thousand_active_rooms_use_a_bounded_number_of_connections(
        node: Node, redis_url: str, redis_key_prefix: str, settings: Settings) -> None:
    rooms = await create_rooms(node, 1000)
    subscriber = Recorder(limit=100_000)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for room in rooms:
                nursery.start_soon(node.rooms.subscribe, room, subscriber)
        assert len(node.rooms) == 1000 and node.actors.reader.rooms == 1000
        await commit_to_rooms(node, rooms, per_room=2)
        await subscriber.wait_for(2000)
        peak = await named_clients(redis_url, redis_key_prefix)
        await commit_to_rooms(node, rooms, per_room=1)
        await subscriber.wait_for(3000)
    per_room: dict[int, list[int]] = {}
    for event in subscriber.events:
        per_room.setdefault(event["room"], []).append(event["seq"])
    assert all(seqs == [1, 2, 3] for seqs in per_room.values()) and len(per_room) == 1000
    connections = await named_clients(redis_url, redis_key_prefix)
    # One blocking XREAD for all 1000 rooms (a cluster: one per master), plus a few multiplexed
    # connections for the rest, to each server.
    for server in (peak, connections):
        assert all(1 <= len(clients) <= settings.redis_max_connections for clients in server.values()), server


async def test_two_nodes_sharing_redis_and_the_database_serve_the_same_room(
        node: Node, settings: Settings) -> None:
    async with open_node(settings, migrate=False) as other:
        [room] = await create_rooms(node)
        here, there = Recorder(), Recorder()
        await node.rooms.subscribe(room, here)
        await other.rooms.subscribe(room, there)
        with trio.fail_after(30):
            for _ in range(5):
                await commit_events(node, room, 3)   # sent through this node
                await commit_events(other, room, 2)  # and through the other
            await here.wait_for(25)
            await there.wait_for(25)
    assert here.seqs == there.seqs == list(range(1, 26))


async def test_an_unreachable_redis_is_reported_not_waited_for(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                             redis_key_prefix=PRIVATE_PREFIX, **FAST_RETRIES)
    async with open_node(settings, migrate=False) as node:
        with trio.fail_after(10):
            with pytest.raises(StreamUnavailable):
                await node.readiness_probes()["streams"]()
            with pytest.raises(StreamUnavailable):
                await node.rooms.publish_transient(10_000, {"type": "typing"})
            [room] = await create_rooms(node)
            await commit_events(node, room, 2)
            subscriber = Recorder()
            # Subscribing and replaying from the database work without the stream backend.
            assert await node.rooms.subscribe(room, subscriber, since=0) == 2
            await subscriber.wait_for(2)
    assert subscriber.seqs == [1, 2]
