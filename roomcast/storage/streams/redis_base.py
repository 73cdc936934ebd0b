"""What the one-Redis and the Redis Cluster stream backends share: keys, entries, appends, the outage guard.

Keys: `<prefix>room:<id>` per room and `<prefix>notices` (stream 0), capped with
`XADD ... MAXLEN ~`. A stored entry has fields `s` (seq) and `d` (data); a transient
one `d` and, when a session sent it, `o` (that session's id). Every command here
names one key, so it runs as it is on a cluster, whatever slot each room lands in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Literal, TypedDict

import coredis
import coredis.exceptions
import trio
from coredis import PureToken
from coredis.patterns.pipeline import ClusterPipeline, Pipeline
from coredis.response.types import StreamEntry as RawEntry

from ...availability import Availability
from .base import NOTICES_STREAM, STREAM_START, Append, StreamEntry, StreamUnavailable

# A client of one Redis or of a cluster: the commands used here are the same on both.
RedisClient = coredis.Redis[bytes] | coredis.RedisCluster[bytes]



class RedisOptions(TypedDict):
    """How a node uses its Redis (one server or a cluster): from the redis_* settings."""

    prefix: str
    maxlen: int
    max_connections: int  # per server: the one Redis, or each master
    timeout_s: float
    connect_timeout_s: float


# What means "Redis is not reachable right now" (as opposed to a bug or a bad command).
_UNREACHABLE = (coredis.exceptions.ConnectionError, TimeoutError, OSError,
                # A cluster that is down or failing over: a master gone, a slot without one, a replica
                # promoted that the client still writes to as a replica, a slot moving under a command.
                coredis.exceptions.ClusterDownError, coredis.exceptions.TryAgainError,
                coredis.exceptions.ReadOnlyError)
# Cluster errors that say the command was wrong rather than the cluster unreachable.
_CLUSTER_BUGS = (coredis.exceptions.ClusterCrossSlotError, coredis.exceptions.ClusterTransactionError)
# Room keys formatted so far are kept (a read names every active room, each time); past this
# many the cache starts over, so a node that has seen very many rooms does not hold them all.
_KEY_CACHE_MAX = 100_000


def client_name(prefix: str, node_id: str) -> str:
    """The name a node's connections carry (CLIENT LIST shows it on each server)."""
    return f"{prefix}node:{node_id}"


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says Redis (or a part of the cluster) cannot be reached now."""
    if isinstance(exc, _UNREACHABLE):
        return True
    # Any other cluster error (no reachable node, routing retries exhausted, no node for a slot).
    return isinstance(exc, coredis.exceptions.RedisClusterError) and not isinstance(exc, _CLUSTER_BUGS)


class RedisStreams:
    """Room streams in Redis: the parts of a backend that do not depend on how it reads."""

    name = "redis"

    def __init__(self, client: RedisClient, *, prefix: str, maxlen: int, node_id: str) -> None:
        self.client = client
        self.prefix = prefix
        self.node_id = node_id
        self.client_name = client_name(prefix, node_id)
        self.maxlen = maxlen
        self._room_prefix_bytes = f"{prefix}room:".encode()
        self._keys: dict[int, bytes] = {}
        self._notices_key = self.key(NOTICES_STREAM)
        # Shared with presence and the other Redis users: an outage is logged once, whoever meets it.
        self.availability = Availability("streams")

    def key(self, room_id: int) -> bytes:
        """The room's stream key, encoded once: every read names every active room again."""
        key = self._keys.get(room_id)
        if key is None:
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()
            name = "notices" if room_id == NOTICES_STREAM else f"room:{room_id}"
            key = self._keys[room_id] = f"{self.prefix}{name}".encode()
        return key

    def room_of(self, key: bytes) -> int | None:
        """The room (or NOTICES_STREAM) whose stream `key` is; None for any other key."""
        if key == self._notices_key:
            return NOTICES_STREAM
        if key.startswith(self._room_prefix_bytes):
            return int(key[len(self._room_prefix_bytes):])
        return None

    def stack_appends(self, pipe: Pipeline[bytes] | ClusterPipeline[bytes],
                      items: Sequence[Append]) -> list[Awaitable[bytes | None]]:
        """Queue an XADD per item on `pipe`, in order; their replies once it has run."""
        return [pipe.xadd(self.key(item.room_id), _fields(item), trim_strategy=PureToken.MAXLEN,
                          trim_operator=PureToken.APPROXIMATELY, threshold=self.maxlen)
                for item in items]

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        if not room_ids:
            return {}
        with self.guarded():
            async with self.client.pipeline(transaction=False) as pipe:
                requests = [pipe.xrevrange(self.key(room_id), count=1) for room_id in room_ids]
            result = {}
            for room_id, request in zip(room_ids, requests, strict=True):
                newest = await request
                result[room_id] = text(newest[0].identifier) if newest else STREAM_START
            return result

    async def ping(self) -> None:
        with self.guarded():
            await self.client.ping()

    def guarded(self) -> UnreachableAsUnavailable:
        """A context in which "cannot reach Redis" becomes StreamUnavailable (and is reported)."""
        return UnreachableAsUnavailable(self)

    def check_connected(self) -> None:
        """Raise StreamUnavailable when there is no client to send a command with yet."""

    def reset_connections(self) -> None:
        """Drop every pooled connection, e.g. after a timeout left one in doubt."""
        self.client.connection_pool.disconnect()


class UnreachableAsUnavailable:
    """Translate "cannot reach Redis" into StreamUnavailable; a timeout also drops the connections."""

    __slots__ = ("backend", "started")

    def __init__(self, backend: RedisStreams) -> None:
        self.backend = backend
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = trio.current_time()
        self.backend.check_connected()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc is None:
            self.backend.availability.succeeded(self.started)
            return False
        if not unreachable(exc):
            return False
        if isinstance(exc, TimeoutError):
            self.backend.reset_connections()
        self.backend.availability.failed(exc, self.started)
        raise StreamUnavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from exc


def _fields(item: Append) -> dict[str | bytes, str | bytes]:
    if item.seq is not None:
        return {"s": str(item.seq), "d": item.data}
    if item.origin is not None:
        return {"d": item.data, "o": item.origin}
    return {"d": item.data}


def entry(raw: RawEntry) -> StreamEntry:
    """A stream entry as coredis returned it, as the backends hand it on."""
    return entry_of(raw.identifier, raw.field_values)


def entry_from_reply(identifier: bytes, flat: list[bytes]) -> StreamEntry:
    """A stream entry as the RESP reply has it, its fields flat (redis_reads)."""
    return entry_of(identifier, dict(zip(flat[::2], flat[1::2], strict=True)))


def entry_of(identifier: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> StreamEntry:
    seq = fields.get(b"s")
    data = fields.get(b"d", b"")
    origin = fields.get(b"o")
    return StreamEntry(text(identifier), int(seq) if seq is not None else None,
                       data if isinstance(data, bytes) else data.encode(),
                       text(origin) if origin is not None else None)


def text(value: bytes | str | None) -> str:
    if value is None:
        raise StreamUnavailable("redis returned no id")
    return value.decode() if isinstance(value, bytes) else value
