"""The test's Redis, one server or a cluster, as seen from outside a node: its keys and its clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.connection import TCPLocation

from roomcast.config import load_settings, redis_cluster_address
from roomcast.storage.streams import open_stream_backend
from roomcast.storage.streams.redis_base import RedisClient, RedisStreams

REDIS_CLUSTER_URL = os.environ.get("ROOMCAST_TEST_REDIS_CLUSTER_URL",
                                   "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")


@asynccontextmanager
async def redis_admin(url: str) -> AsyncIterator[RedisClient]:
    """A client of `url`: of the one Redis, or of the whole cluster for a redis+cluster:// URL."""
    address = redis_cluster_address(url)
    if address is None:
        async with coredis.Redis.from_url(url) as client:
            yield client
        return
    async with coredis.RedisCluster(startup_nodes=[TCPLocation(host, port) for host, port in address.nodes],
                                    decode_responses=False) as cluster:
        yield cluster


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (on every master of a cluster)."""
    async with redis_admin(url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)


async def masters(url: str) -> list[tuple[str, int]]:
    """(host, port) of the one Redis, or of each master of the cluster."""
    address = redis_cluster_address(url)
    if address is None:
        async with coredis.Redis.from_url(url) as client:
            location = client.connection_pool.location
            assert isinstance(location, TCPLocation)
            return [(location.host, location.port)]
    async with redis_admin(url) as cluster:
        assert isinstance(cluster, coredis.RedisCluster)
        return sorted((node.host, node.port) for node in cluster.connection_pool.cluster_layout.primaries)


async def named_clients(url: str, prefix: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Each server's CLIENT LIST entries whose name starts with `prefix` (a node names its connections
    `<redis_key_prefix>node:<id>`)."""
    found = {}
    for host, port in await masters(url):
        async with coredis.Redis(host=host, port=port) as client:
            found[host, port] = [entry for entry in await client.client_list()
                                 if str(entry.get("name", "")).startswith(prefix)]
    return found


async def kill_clients(url: str, prefix: str) -> set[tuple[tuple[str, int], int]]:
    """Close every connection named under `prefix`, on every server; which were closed."""
    killed = set()
    for server, entries in (await named_clients(url, prefix)).items():
        async with coredis.Redis(host=server[0], port=server[1]) as client:
            for entry in entries:
                await client.client_kill(identifier=int(entry["id"]))
                killed.add((server, int(entry["id"])))
    return killed


@asynccontextmanager
async def open_redis_streams(url: str, prefix: str, *, maxlen: int = 100) -> AsyncIterator[RedisStreams]:
    """The stream backend a node gets for `url` (one Redis, or a cluster), with a few connections."""
    settings = load_settings({"redis_url": url, "redis_key_prefix": prefix, "redis_stream_maxlen": maxlen,
                              "redis_max_connections": 4, "redis_timeout_s": 10, "redis_connect_timeout_s": 5},
                             environ={})
    async with open_stream_backend(settings) as backend:
        assert isinstance(backend, RedisStreams)
        yield backend
