"""Two nodes on a Redis Cluster: rooms on every master, one blocking read per master, a master killed, a slot moved.

The shared test cluster (.ci/redis-cluster) serves the test that leaves it as it is; those that
kill a master or move a slot start a cluster of their own. Real clock; timeouts only guard
against a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio

from roomcast.config import Settings
from roomcast.node import Node, open_node
from roomcast.storage.streams.redis_cluster import RedisClusterStreamBackend, key_slot
from tests.conftest import make_settings, service_missing
from tests.helpers import eventually
from tests.redis_helpers import delete_keys, named_clients, redis_admin

from .helpers import Recorder, commit_to_rooms, create_rooms
from .lifecycle import Lifecycle
from .redis_server import RedisCluster, RedisServer

pytestmark = pytest.mark.redis_cluster

FAST_RETRIES = {"stream_retry_base_s": 0.02, "stream_retry_max_s": 0.2, "redis_timeout_s": 5,
                "redis_connect_timeout_s": 1}


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


async def owners(url: str, keys: list[bytes]) -> dict[bytes, str]:
    """The master ("host:port") holding each key, as the cluster itself hashes it."""
    async with redis_admin(url) as cluster:
        assert isinstance(cluster, coredis.RedisCluster)
        layout = cluster.connection_pool.cluster_layout
        return {key: layout.node_for_slot(await cluster.cluster_keyslot(key)).name for key in keys}


def in_order(subscriber: Recorder, rooms: list[int], per_room: int) -> dict[int, list[int]]:
    """Each room's seqs as received; the test expects 1..per_room, each once."""
    seqs: dict[int, list[int]] = {room: [] for room in rooms}
    for event in subscriber.events:
        seqs[event["room"]].append(event["seq"])
    assert {room: got for room, got in seqs.items() if got != list(range(1, per_room + 1))} == {}
    return seqs


async def subscribe_all(node: Node, rooms: list[int], subscriber: Recorder) -> None:
    async with trio.open_nursery() as nursery:
        for room in rooms:
            nursery.start_soon(node.rooms.subscribe, room, subscriber)


def streams_of(node: Node) -> RedisClusterStreamBackend:
    assert isinstance(node.streams, RedisClusterStreamBackend)
    return node.streams


async def connections(url: str, node: Node) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The node's connections on each master (CLIENT LIST, by the name they carry)."""
    name = streams_of(node).client_name
    return {server: [c for c in clients if c.get("name") == name]
            for server, clients in (await named_clients(url, name)).items()}


def blocked_reads(found: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[tuple[str, int], int]:
    return {server: sum(1 for c in clients if "b" in str(c.get("flags")) and c.get("cmd") == "xread")
            for server, clients in found.items()}


async def test_a_node_gets_in_order_what_another_sends_in_rooms_on_every_master_over_one_read_each(
        tmp_path: Path, database_url: str, redis_cluster_url: str, redis_key_prefix: str) -> None:
    # A pool grows to its cap under a burst (two hundred rooms start at once), so a small cap shows
    # what the bound is: per master, whatever the number of rooms.
    settings = make_settings(tmp_path, database_url, redis_url=redis_cluster_url, redis_key_prefix=redis_key_prefix,
                             redis_max_connections=3, **FAST_RETRIES)
    try:
        async with open_node(settings, migrate=False) as a, open_node(settings, migrate=False) as b:
            [first, *rooms] = await create_rooms(a, 201)
            keys = await owners(redis_cluster_url, [streams_of(a).key(room) for room in rooms])
            assert len(set(keys.values())) == 3  # the rooms' streams are on every master
            with trio.fail_after(60):
                # One room live: the node's connections on each master.
                one = Recorder()
                await a.rooms.subscribe(first, one)
                await commit_to_rooms(b, [first], per_room=3)
                await one.wait_for(3)
                with_one = await connections(redis_cluster_url, a)
                # Two hundred more, sent to through the other node.
                subscriber = Recorder(limit=100_000)
                await subscribe_all(a, rooms, subscriber)
                for _ in range(3):
                    await commit_to_rooms(b, rooms, per_room=2)
                await subscriber.wait_for(len(rooms) * 6)
                with_many = await connections(redis_cluster_url, a)
            in_order(subscriber, rooms, 6)
        for found in (with_one, with_many):
            assert len(found) == 3 and all(found.values()), found
            # One blocking XREAD per master, however many rooms, and at most the cap in all.
            assert blocked_reads(found) == dict.fromkeys(found, 1), found
            assert all(len(clients) <= settings.redis_max_connections for clients in found.values()), found
    finally:
        await delete_keys(redis_cluster_url, redis_key_prefix)


@asynccontextmanager
async def running_cluster(workdir: Path, **options: int) -> AsyncIterator[RedisCluster]:
    try:
        cluster = RedisCluster(workdir, **options)
    except FileNotFoundError as exc:
        service_missing("redis-server and redis-cli (the binaries)", str(exc))
    workdir.mkdir()
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def private_cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    """Three masters, no replicas."""
    async with running_cluster(tmp_path / "cluster") as cluster:
        yield cluster


async def a_master_lost(cluster: RedisCluster, settings: Settings,
                        meanwhile: Callable[[RedisServer], Awaitable[None]], *, comes_back: bool) -> None:
    """Node B sends to 30 rooms on every master, node A listens; the master of the first room is
    killed, `meanwhile(it)` runs while B sends on, and B sends again once the cluster is ok. A must
    get every event once, in order, and listen to the bell of the master back (or of its replica)."""
    async with open_node(settings, migrate=False) as a, open_node(settings, migrate=False) as b:
        rooms = await create_rooms(a, 30)
        keys = await owners(cluster.url, [streams_of(a).key(room) for room in rooms])
        assert len(set(keys.values())) == 3
        victim = keys[streams_of(a).key(rooms[0])]
        subscriber = Recorder(limit=100_000)
        with trio.fail_after(90):
            await subscribe_all(a, rooms, subscriber)
            await commit_to_rooms(b, rooms, per_room=2)
            await subscriber.wait_for(len(rooms) * 2)
            server = cluster.server(int(victim.rpartition(":")[2]))
            await server.stop()  # SIGKILL: what it held and had not passed on is gone
            await commit_to_rooms(b, rooms, per_room=2)  # committed while it is down
            await meanwhile(server)
            await cluster.wait_ok()
            await commit_to_rooms(b, rooms, per_room=2)
            await subscriber.wait_for(len(rooms) * 6)
            await trio.sleep(0.5)  # anything sent twice would have come by now
        in_order(subscriber, rooms, 6)
        assert len(subscriber.items) == len(rooms) * 6
        # The bells follow the layout (the node looks every second).
        await eventually(lambda: (victim in streams_of(a).bells(look=True)) == comes_back)


async def test_a_master_killed_and_restarted_loses_and_duplicates_nothing(
        private_cluster: RedisCluster, tmp_path: Path, database_url: str, redis_key_prefix: str,
        lifecycle: Lifecycle) -> None:
    settings = make_settings(tmp_path, database_url, redis_url=private_cluster.url, redis_key_prefix=redis_key_prefix,
                             **FAST_RETRIES)

    async def restart(server: RedisServer) -> None:
        await trio.sleep(0.5)
        await server.start()  # empty; it rejoins with its slots (its cluster config survived)

    await a_master_lost(private_cluster, settings, restart, comes_back=True)
    assert lifecycle.lines("stream.unavailable") and lifecycle.lines("outbox.stream_unavailable")
    assert not lifecycle.lines("actor.crashed")


async def test_a_master_that_dies_is_replaced_by_its_replica_and_nothing_is_lost_or_repeated(
        tmp_path: Path, database_url: str, redis_key_prefix: str, lifecycle: Lifecycle) -> None:
    async with running_cluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000) as cluster:
        settings = make_settings(tmp_path, database_url, redis_url=cluster.url, redis_key_prefix=redis_key_prefix,
                                 **FAST_RETRIES)

        async def fail_over(server: RedisServer) -> None:
            pass  # its replica takes over within a few seconds

        await a_master_lost(cluster, settings, fail_over, comes_back=False)
    assert not lifecycle.lines("actor.crashed")


async def test_rooms_and_a_bell_moved_to_another_master_while_sending_lose_and_duplicate_nothing(
        private_cluster: RedisCluster, tmp_path: Path, database_url: str, redis_key_prefix: str,
        lifecycle: Lifecycle) -> None:
    settings = make_settings(tmp_path, database_url, redis_url=private_cluster.url, redis_key_prefix=redis_key_prefix,
                             **FAST_RETRIES)
    rounds = 12
    async with open_node(settings, migrate=False) as a, open_node(settings, migrate=False) as b:
        rooms = await create_rooms(a, 30)
        streams = streams_of(a)
        subscriber = Recorder(limit=100_000)
        with trio.fail_after(90):
            await subscribe_all(a, rooms, subscriber)
            await commit_to_rooms(b, rooms)
            await subscriber.wait_for(len(rooms))
            bells = dict(streams.bells())
            room_key = streams.key(rooms[0])
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    for _ in range(rounds - 1):
                        await commit_to_rooms(b, rooms)
                        await trio.sleep(0.05)

                nursery.start_soon(send)
                # The slot of a room's stream, then that of another master's bell, to the next master.
                await trio.to_thread.run_sync(move_slot, private_cluster, key_slot(room_key))
                [owner] = (await owners(private_cluster.url, [room_key])).values()
                other = next(bell for master, bell in bells.items() if master != owner)
                await trio.to_thread.run_sync(move_slot, private_cluster, key_slot(other))
            await subscriber.wait_for(len(rooms) * rounds)
            await trio.sleep(0.5)  # anything sent twice would have come by now
        in_order(subscriber, rooms, rounds)
        assert len(subscriber.items) == len(rooms) * rounds
        assert streams.bells() != bells  # the bells followed the layout
    assert not lifecycle.lines("actor.crashed")


def move_slot(cluster: RedisCluster, slot: int) -> None:
    """Migrate `slot`, keys and all, from its master to the next one, as redis-cli --cluster reshard does."""
    ids: dict[int, str] = {}
    source = None
    for server in cluster.servers:
        ids[server.port] = cluster.command(server.port, "CLUSTER", "MYID")
        if cluster.command(server.port, "CLUSTER", "COUNTKEYSINSLOT", str(slot)) and _owns(cluster, server.port, slot):
            source = server.port
    assert source is not None
    ports = [server.port for server in cluster.servers]
    target = ports[(ports.index(source) + 1) % len(ports)]
    cluster.command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
    cluster.command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
    while keys := cluster.command(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
        cluster.command(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
    for port in ports:
        cluster.command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])


def _owns(cluster: RedisCluster, port: int, slot: int) -> bool:
    for line in cluster.command(port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            for owned in fields[8:]:
                low, _, high = owned.partition("-")
                if not owned.startswith("[") and int(low) <= slot <= int(high or low):
                    return True
    return False
