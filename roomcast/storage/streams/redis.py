"""Room streams on one Redis (Streams, through coredis: its async client runs natively on Trio).

Keys and entries as in `redis_base`. One blocking `XREAD` covers every room the process
reads (DESIGN.md §7). To add a room to a read already blocked in Redis, `interrupt()`
appends to this process's own wake stream, `<prefix>wake:<node id>`, which every read
includes: unlike CLIENT UNBLOCK it cannot be lost when it races the start of the read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import coredis
import trio
from coredis import PureToken

from ...logs import log_event
from .base import STREAM_START, Append, ReadCursor, StreamEntry, StreamUnavailable
from .redis_base import RedisStreams, client_name, entry, entry_from_reply, text, unreachable
from .redis_pool import SlotKeepingPool
from .redis_reads import NamedStreams, XreadConnection

log = logging.getLogger("roomcast.streams")

_WAKE_TTL_MS = 24 * 3600 * 1000


# The wake stream's place among what a read names (room ids and NOTICES_STREAM are never negative).
_WAKE_STREAM = -1


@dataclass(frozen=True, slots=True)
class _KeptNames:
    """A cursor's state: what the last read that returned named, on which backend."""

    backend: RedisStreamBackend
    named: NamedStreams


class RedisStreamBackend(RedisStreams):
    """Room streams in one Redis; several processes sharing it serve the same rooms."""

    name = "redis"

    def __init__(self, client: coredis.Redis[bytes], *, prefix: str, maxlen: int, node_id: str,
                 max_block_s: float = 5.0, reads: XreadConnection | None = None) -> None:
        super().__init__(client, prefix=prefix, maxlen=maxlen, node_id=node_id)
        self.single = client
        # The blocking reads' own connection (redis_reads: a plain redis:// address), else through coredis.
        self.reads = reads
        # A blocked XREAD must return before the client's own request timeout fires.
        self.max_block_s = max_block_s
        self.wake_key = f"{prefix}wake:{node_id}"
        self._wake_key_bytes = self.wake_key.encode()
        self._wake_position = STREAM_START
        self._append_stored = client.register_script(_APPEND_STORED)
        wake_send, self._wake_receive = trio.open_memory_channel[None](1)
        self._wake_send = wake_send

    async def append(self, items: Sequence[Append]) -> list[str]:
        if not items:
            return []
        with self.guarded():
            if len(items) > 1 and all(item.seq is not None for item in items):
                # The relay's batches: one command for all (a pipeline costs the client a command each).
                # One Redis only: a cluster refuses a script whose keys span slots (redis_cluster appends by master).
                args: list[str | bytes] = [str(self.maxlen)]
                for item in items:
                    args += (str(item.seq), item.data)
                ids = await self._append_stored.execute(keys=[self.key(item.room_id) for item in items], args=args)
                if not isinstance(ids, list) or len(ids) != len(items):
                    raise StreamUnavailable(f"redis answered {ids!r} to an append")
                return [text(entry_id) for entry_id in ids]
            # One pipeline, one connection: entries reach Redis in the order given.
            async with self.single.pipeline(transaction=False) as pipe:
                requests = self.stack_appends(pipe, items)
            return [text(await request) for request in requests]

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        block_ms = max(1, int(min(timeout, self.max_block_s) * 1000))
        if self.reads is not None:
            # XREAD names every room whatever came before; the cursor spares re-encoding each one.
            named = self._named(positions, cursor)
            with self.guarded():
                reply = await self.reads.xread_named(named, count=count, block_ms=block_ms)
            found = self._found(((key, [entry_from_reply(identifier, fields) for identifier, fields in entries])
                                 for key, entries in reply))
            if cursor is not None:
                cursor.state = _KeptNames(self, named)
            return found
        key_of = self.key
        streams: dict[bytes, str] = {key_of(room_id): position for room_id, position in positions.items()}
        streams[self._wake_key_bytes] = self._wake_position
        with self.guarded():
            replied = await self.single.xread(streams, count=count, block=block_ms)
        return self._found(((key, [entry(raw) for raw in entries]) for key, entries in (replied or {}).items()))

    def _named(self, positions: Mapping[int, str], cursor: ReadCursor | None) -> NamedStreams:
        """What the read names: the streams the cursor's last read named, moved on by what the caller
        moved since; all of them encoded anew without a cursor, or after a read that did not return."""
        if cursor is None:
            kept = None
        else:
            kept, cursor.state = cursor.state, None
        if cursor is not None and isinstance(kept, _KeptNames) and kept.backend is self:
            named = kept.named
            for room_id in cursor.moved:
                position = positions.get(room_id)
                if position is None:
                    named.drop(room_id)
                else:
                    named.set(room_id, self.key(room_id), position)
        else:
            named = NamedStreams()
            for room_id, position in positions.items():
                named.set(room_id, self.key(room_id), position)
        if cursor is not None:
            cursor.moved = set()
        named.set(_WAKE_STREAM, self._wake_key_bytes, self._wake_position)
        return named

    def _found(self, streams: Iterable[tuple[bytes, list[StreamEntry]]]) -> dict[int, list[StreamEntry]]:
        """Each room's entries from a read's streams; the wake stream's only move its position."""
        found: dict[int, list[StreamEntry]] = {}
        for key, entries in streams:
            if not entries:
                continue
            room_id = self.room_of(key)
            if room_id is not None:
                found[room_id] = entries
            else:
                self._wake_position = entries[-1].id
        return found

    def reset_connections(self) -> None:
        super().reset_connections()
        if self.reads is not None:
            self.reads.close()

    def interrupt(self) -> None:
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake-up is already on its way

    async def run_waker(self) -> None:
        """Turn interrupt() calls into appends to the wake stream (runs beside the backend)."""
        async for _ in self._wake_receive:
            try:
                async with self.single.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": "1"}, trim_strategy=PureToken.MAXLEN, threshold=1)
                    pipe.pexpire(self.wake_key, _WAKE_TTL_MS)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                # the reader's read fails too and it retries with backoff

    async def forget_wake_stream(self) -> None:
        with self.guarded():
            await self.single.delete([self.wake_key])


# Stored entries appended in one call, in order. KEYS: each entry's stream; ARGV: the MAXLEN ~
# threshold, then each entry's seq and data. Returns the ids given.
_APPEND_STORED = """
local ids = {}
for i, key in ipairs(KEYS) do
  ids[i] = redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 's', ARGV[2 * i], 'd', ARGV[2 * i + 1])
end
return ids
"""


@asynccontextmanager
async def open_redis_backend(url: str, *, prefix: str, maxlen: int, max_connections: int,
                             timeout_s: float, connect_timeout_s: float) -> AsyncIterator[RedisStreamBackend]:
    """A connection pool of at most `max_connections` to `url`, and the wake-stream task.

    Connections are named `<prefix>node:<id>` (CLIENT LIST shows them). Redis may be
    down at start-up: nothing connects until the first command.
    """
    node_id = secrets.token_hex(6)
    reads = XreadConnection.for_url(url, client_name=client_name(prefix, node_id), connect_timeout_s=connect_timeout_s,
                                    timeout_s=timeout_s)
    # coredis's own pool loses a slot for every connection lost in the middle of a command (redis_pool).
    # The blocking reads' connection, if any, is one of the `max_connections` (it took a pooled one before).
    pool = SlotKeepingPool.from_url(
        url,
        decode_responses=False,
        max_connections=max_connections - 1 if reads is not None else max_connections,
        client_name=client_name(prefix, node_id),
        stream_timeout=timeout_s,
        connect_timeout=connect_timeout_s,
    )
    client: coredis.Redis[bytes] = coredis.Redis(connection_pool=pool, decode_responses=False)
    backend = RedisStreamBackend(client, prefix=prefix, maxlen=maxlen, node_id=node_id, max_block_s=timeout_s / 2,
                                 reads=reads)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(backend.run_waker)
        try:
            yield backend
        finally:
            nursery.cancel_scope.cancel()
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                try:
                    await backend.forget_wake_stream()
                except StreamUnavailable as exc:
                    log_event(log, "streams.cleanup_failed", logging.WARNING, error=str(exc))
            if reads is not None:
                reads.close()
