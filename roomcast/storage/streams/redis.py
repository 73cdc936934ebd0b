"""Room streams on Redis Streams through coredis (its async client runs natively on Trio).

Keys: `<prefix>room:<id>` per room, capped with `XADD ... MAXLEN ~`. A stored
entry has fields `s` (seq) and `d` (data); a transient one `d` and, when a session
sent it, `o` (that session's id).

One blocking `XREAD` covers every room the process reads (DESIGN.md §7). To add a
room to a read already blocked in Redis, `interrupt()` appends to this process's
own wake stream, `<prefix>wake:<node id>`, which every read includes: unlike
CLIENT UNBLOCK it cannot be lost when it races the start of the read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import coredis
import coredis.exceptions
import trio
from coredis import PureToken

from ...availability import Availability
from ...logs import log_event
from .base import NOTICES_STREAM, STREAM_START, Append, StreamEntry, StreamUnavailable

log = logging.getLogger("roomcast.streams")

# What means "Redis is not reachable right now" (as opposed to a bug or a bad command).
_UNREACHABLE = (coredis.exceptions.ConnectionError, TimeoutError, OSError)
_WAKE_TTL_MS = 24 * 3600 * 1000
# Room keys formatted so far are kept (a read names every active room, each time); past this
# many the cache starts over, so a node that has seen very many rooms does not hold them all.
_KEY_CACHE_MAX = 100_000


class RedisStreamBackend:
    """Room streams in Redis; several processes sharing one Redis serve the same rooms."""

    name = "redis"

    def __init__(self, client: coredis.Redis[bytes], *, prefix: str, maxlen: int, node_id: str,
                 max_block_s: float = 5.0) -> None:
        self.client = client
        # A blocked XREAD must return before the client's own request timeout fires.
        self.max_block_s = max_block_s
        self.prefix = prefix
        self.maxlen = maxlen
        self._room_prefix = f"{prefix}room:"
        self._room_prefix_bytes = self._room_prefix.encode()
        self._keys: dict[int, bytes] = {}
        self.wake_key = f"{prefix}wake:{node_id}"
        self._notices_key = self.key(NOTICES_STREAM)
        self._wake_position = STREAM_START
        self._append_stored = client.register_script(_APPEND_STORED)
        wake_send, self._wake_receive = trio.open_memory_channel[None](1)
        self._wake_send = wake_send
        # Shared with presence (same Redis): an outage is logged once, whoever meets it.
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

    def _room_of(self, key: bytes) -> int:
        return int(key[len(self._room_prefix_bytes):])

    async def append(self, items: Sequence[Append]) -> list[str]:
        if not items:
            return []
        with self.guarded():
            if len(items) > 1 and all(item.seq is not None for item in items):
                # The relay's batches: one command for all (a pipeline costs the client a command each).
                args: list[str | bytes] = [str(self.maxlen)]
                for item in items:
                    args += (str(item.seq), item.data)
                ids = await self._append_stored.execute(keys=[self.key(item.room_id) for item in items], args=args)
                if not isinstance(ids, list) or len(ids) != len(items):
                    raise StreamUnavailable(f"redis answered {ids!r} to an append")
                return [_text(entry_id) for entry_id in ids]
            # One pipeline, one connection: entries reach Redis in the order given.
            async with self.client.pipeline(transaction=False) as pipe:
                requests = [
                    pipe.xadd(self.key(item.room_id), _fields(item), trim_strategy=PureToken.MAXLEN,
                              trim_operator=PureToken.APPROXIMATELY, threshold=self.maxlen)
                    for item in items
                ]
            return [_text(await request) for request in requests]

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        if not room_ids:
            return {}
        with self.guarded():
            async with self.client.pipeline(transaction=False) as pipe:
                requests = [pipe.xrevrange(self.key(room_id), count=1) for room_id in room_ids]
            result = {}
            for room_id, request in zip(room_ids, requests, strict=True):
                newest = await request
                result[room_id] = _text(newest[0].identifier) if newest else STREAM_START
            return result

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float) -> dict[int, list[StreamEntry]]:
        key_of = self.key
        streams: dict[bytes | str, str] = {key_of(room_id): position for room_id, position in positions.items()}
        streams[self.wake_key] = self._wake_position
        block_ms = max(1, int(min(timeout, self.max_block_s) * 1000))
        with self.guarded():
            reply = await self.client.xread(streams, count=count, block=block_ms)
        found: dict[int, list[StreamEntry]] = {}
        for key, entries in (reply or {}).items():
            if not entries:
                continue
            if key == self._notices_key:
                found[NOTICES_STREAM] = [_entry(raw) for raw in entries]
            elif key.startswith(self._room_prefix_bytes):
                found[self._room_of(key)] = [_entry(raw) for raw in entries]
            else:
                self._wake_position = _text(entries[-1].identifier)
        return found

    def interrupt(self) -> None:
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake-up is already on its way

    async def run_waker(self) -> None:
        """Turn interrupt() calls into appends to the wake stream (runs beside the backend)."""
        async for _ in self._wake_receive:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": "1"}, trim_strategy=PureToken.MAXLEN, threshold=1)
                    pipe.pexpire(self.wake_key, _WAKE_TTL_MS)
            except _UNREACHABLE:
                pass  # the reader's read fails too and it retries with backoff

    async def ping(self) -> None:
        with self.guarded():
            await self.client.ping()

    async def forget_wake_stream(self) -> None:
        with self.guarded():
            await self.client.delete([self.wake_key])

    def guarded(self) -> _unreachable_as_unavailable:
        """A context in which "cannot reach Redis" becomes StreamUnavailable (and is reported)."""
        return _unreachable_as_unavailable(self)

    def reset_connections(self) -> None:
        """Drop every pooled connection, e.g. after a timeout left one in doubt."""
        self.client.connection_pool.disconnect()


class _unreachable_as_unavailable:
    """Translate "cannot reach Redis" into StreamUnavailable; a timeout also drops the connections."""

    def __init__(self, backend: RedisStreamBackend) -> None:
        self.backend = backend
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = trio.current_time()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> Literal[False]:
        if exc is None:
            self.backend.availability.succeeded(self.started)
            return False
        if not isinstance(exc, _UNREACHABLE):
            return False
        if isinstance(exc, TimeoutError):
            self.backend.reset_connections()
        self.backend.availability.failed(exc, self.started)
        raise StreamUnavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from exc


# Stored entries appended in one call, in order. KEYS: each entry's stream; ARGV: the MAXLEN ~
# threshold, then each entry's seq and data. Returns the ids given.
_APPEND_STORED = """
local ids = {}
for i, key in ipairs(KEYS) do
  ids[i] = redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 's', ARGV[2 * i], 'd', ARGV[2 * i + 1])
end
return ids
"""


def _fields(item: Append) -> dict[str, bytes | str]:
    if item.seq is not None:
        return {"s": str(item.seq), "d": item.data}
    if item.origin is not None:
        return {"d": item.data, "o": item.origin}
    return {"d": item.data}


def _entry(raw: Any) -> StreamEntry:
    fields = raw.field_values
    seq = fields.get(b"s")
    origin = fields.get(b"o")
    return StreamEntry(_text(raw.identifier), int(seq) if seq is not None else None, fields.get(b"d", b""),
                       origin.decode() if origin is not None else None)


def _text(value: bytes | str | None) -> str:
    if value is None:
        raise StreamUnavailable("redis returned no id")
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def open_redis_backend(url: str, *, prefix: str, maxlen: int, max_connections: int,
                             timeout_s: float, connect_timeout_s: float) -> AsyncIterator[RedisStreamBackend]:
    """A connection pool of at most `max_connections` to `url`, and the wake-stream task.

    Connections are named `<prefix>node:<id>` (CLIENT LIST shows them). Redis may be
    down at start-up: nothing connects until the first command.
    """
    node_id = secrets.token_hex(6)
    client = coredis.Redis.from_url(
        url,
        decode_responses=False,
        max_connections=max_connections,
        client_name=f"{prefix}node:{node_id}",
        stream_timeout=timeout_s,
        connect_timeout=connect_timeout_s,
    )
    backend = RedisStreamBackend(client, prefix=prefix, maxlen=maxlen, node_id=node_id, max_block_s=timeout_s / 2)
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
