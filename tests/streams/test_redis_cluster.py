"""What the Redis Cluster backend adds to the contract: slots as the cluster hashes them, a bell on each
master, and a cluster that is down when the node starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import coredis
import pytest
import trio

from roomcast.config import redis_cluster_address
from roomcast.storage.streams import STREAM_START, Append, StreamUnavailable
from roomcast.storage.streams.redis_cluster import RedisClusterStreamBackend, key_slot, open_redis_cluster_backend
from tests.actors.redis_server import RedisCluster
from tests.conftest import service_missing
from tests.redis_helpers import delete_keys, open_redis_streams, redis_admin

T = TypeVar("T")


@pytest.fixture(params=[pytest.param("redis-cluster", marks=pytest.mark.redis_cluster)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_key_slots_are_the_clusters(redis_cluster_url: str) -> None:
    keys = [f"roomcast:room:{n}".encode() for n in range(0, 5000, 37)] + [
        b"", b"a", b"{user1000}.following", b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}", b"{}", b"{a",
        "r\u00e9sum\u00e9:{t\u00eate}".encode(), bytes(range(256))]
    async with redis_admin(redis_cluster_url) as cluster:
        assert [key_slot(key) for key in keys] == [await cluster.cluster_keyslot(key) for key in keys]


async def test_each_master_has_a_bell_in_a_slot_it_owns(backend: RedisClusterStreamBackend,
                                                         redis_cluster_url: str) -> None:
    bells = backend.bells()
    async with redis_admin(redis_cluster_url) as cluster:
        assert isinstance(cluster, coredis.RedisCluster)
        layout = cluster.connection_pool.cluster_layout
        assert sorted(bells) == sorted(node.name for node in layout.primaries)
        for master, bell in bells.items():
            assert layout.node_for_slot(await cluster.cluster_keyslot(bell)).name == master
    with trio.fail_after(10):  # and a listener on each
        while backend.listening != set(bells.values()):
            await trio.sleep(0.01)
    # Appends ring the bells, which expire a day after the last renewal (a bell no one rings goes).
    await backend.append([Append(room, b"x") for room in range(1, 30)])
    async with redis_admin(redis_cluster_url) as cluster:
        for bell in bells.values():
            assert await cluster.xlen(bell) >= 1
            assert 23 * 3600 * 1000 < await cluster.pttl(bell) <= 24 * 3600 * 1000


async def retried(call: Callable[[], Awaitable[T]]) -> T:
    while True:
        try:
            return await call()
        except StreamUnavailable:
            await trio.sleep(0.05)


async def test_a_cluster_down_at_start_is_unavailable_until_it_comes_up(tmp_path: Path) -> None:
    try:
        cluster = RedisCluster(tmp_path)
    except FileNotFoundError as exc:
        service_missing("redis-server and redis-cli (the binaries)", str(exc))
    prefix = "rc-test:late:"
    with trio.fail_after(60):
        async with open_redis_streams(cluster.url, prefix) as backend:
            assert isinstance(backend, RedisClusterStreamBackend) and not backend.connected
            for call in (backend.ping(), backend.append([Append(1, b"x")]), backend.last_ids([1]),
                         backend.read({1: STREAM_START}, count=1, timeout=1)):
                with pytest.raises(StreamUnavailable):
                    await call
            try:
                await cluster.start()
                while not backend.connected:
                    await trio.sleep(0.02)
                # A cluster just made may refuse a moment longer (CLUSTERDOWN): retried as the reader does.
                ids = await retried(lambda: backend.append([Append(room, b"x", 1) for room in range(1, 10)]))
                found = await retried(lambda: backend.read(dict.fromkeys(range(1, 10), STREAM_START), count=1,
                                                           timeout=5))
                assert [found[room][0].id for room in range(1, 10)] == ids
            finally:
                await delete_keys(cluster.url, prefix)
                await cluster.stop()


async def test_connections_that_die_while_lent_leave_their_node_s_pool_whole(redis_cluster_url: str) -> None:
    """A connection lost in the middle of a command gives its slot back to its node's pool: with two
    connections per node (the bell's listener holds one), three such losses in a row leave the node
    reachable."""
    address = redis_cluster_address(redis_cluster_url)
    assert address is not None
    async with open_redis_cluster_backend(address, prefix="rc-test:pool:", maxlen=10, max_connections=2,
                                          timeout_s=10, connect_timeout_s=5) as backend:
        await retried(backend.ping)
        pool = backend.cluster.connection_pool
        node = next(iter(pool.cluster_layout.primaries))
        for _ in range(3):
            with trio.fail_after(5):  # a node whose free slot was lost waits forever
                connection = await pool.get_connection(node)
            connection.invalidate("lost in the middle of a command")  # as a reset connection is
            pool.release(connection)
        with trio.fail_after(5):
            connection = await pool.get_connection(node)
        assert connection.usable
        pool.release(connection)
