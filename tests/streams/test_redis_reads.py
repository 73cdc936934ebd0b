"""The blocking XREAD's own connection (storage/streams/redis_reads.py): which addresses it serves,
what it sends on connecting, and how a read that fails, times out or is cancelled leaves it.

Against the real Redis where Redis can show the case; against a scripted server on a real socket
for the answers a healthy Redis never gives (errors while loading, silence, a reply cut short).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import coredis
import pytest
import trio
import trio.testing

from roomcast.storage.streams import STREAM_START, Append, StreamUnavailable
from roomcast.storage.streams.redis import RedisStreamBackend
from roomcast.storage.streams.redis_base import client_name
from roomcast.storage.streams.redis_reads import RedisReplyError, XreadConnection
from tests.redis_helpers import delete_keys, open_redis_streams


def test_a_plain_address_gets_its_own_connection_and_the_others_read_through_coredis() -> None:
    def connection(url: str) -> XreadConnection | None:
        return XreadConnection.for_url(url, client_name="rc:node:1", connect_timeout_s=1, timeout_s=2)

    plain = connection("redis://user:p%40ss@cache.internal:6380/3")
    assert plain is not None and (plain.host, plain.port) == ("cache.internal", 6380)
    assert connection("redis://127.0.0.1") is not None
    for other in ("rediss://127.0.0.1:6379/0", "unix:///run/redis.sock", "redis://127.0.0.1:6379/0?protocol=3",
                  "redis+cluster://127.0.0.1:7001", "redis://127.0.0.1:6379/zero"):
        assert connection(other) is None, other


# --------------------------------------------------------------------------- against the real Redis


@pytest.fixture
def redis_url(single_redis_url: str) -> str:
    """The one Redis (the reads' own connection serves no cluster)."""
    return single_redis_url


@pytest.fixture
async def streams(redis_url: str, redis_key_prefix: str) -> AsyncIterator[RedisStreamBackend]:
    try:
        async with open_redis_streams(redis_url, redis_key_prefix) as backend:
            assert isinstance(backend, RedisStreamBackend) and backend.reads is not None
            yield backend
    finally:
        await delete_keys(redis_url, redis_key_prefix)


async def _own_client_id(streams: RedisStreamBackend, redis_url: str) -> int:
    """The id Redis gives the reads' connection (the one whose last command was an XREAD)."""
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as admin:
        clients = await admin.client_list()
    [found] = [client for client in clients if client["name"] == client_name(streams.prefix, streams.node_id)
               and client["cmd"] == "xread"]
    return int(found["id"])


@pytest.mark.redis
async def test_a_connection_redis_closed_fails_one_read_and_the_next_connects_anew(
        streams: RedisStreamBackend, redis_url: str) -> None:
    await streams.append([Append(1, b"first", seq=1)])
    [first] = (await streams.read({1: STREAM_START}, count=10, timeout=1))[1]
    async with coredis.Redis.from_url(redis_url) as admin:
        await admin.client_kill(identifier=await _own_client_id(streams, redis_url))
    with pytest.raises(StreamUnavailable):
        await streams.read({1: first.id}, count=10, timeout=1)
    await streams.append([Append(1, b"second", seq=2)])
    [second] = (await streams.read({1: first.id}, count=10, timeout=1))[1]
    assert (second.seq, second.data) == (2, b"second")


@pytest.mark.redis
async def test_a_read_cancelled_while_blocked_leaves_no_reply_behind_for_the_next(
        streams: RedisStreamBackend) -> None:
    with trio.move_on_after(0.3):
        await streams.read({1: STREAM_START}, count=10, timeout=5)  # blocked in Redis on room 1, then cancelled
    await streams.append([Append(2, b"two", seq=1)])
    await streams.append([Append(1, b"one", seq=1)])  # what the cancelled read would have answered
    # On the same connection, the next read would take the cancelled one's reply for its own.
    found = await streams.read({2: STREAM_START}, count=10, timeout=1)
    assert {room: [entry.data for entry in entries] for room, entries in found.items()} == {2: [b"two"]}


# --------------------------------------------------------------------------- against a scripted server


@asynccontextmanager
async def scripted_redis(answer: Callable[[bytes], bytes | None], *,
                         close_after_reply: bool = False) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server on a real socket: each chunk it receives is logged and answered with `answer(chunk)`
    (None: nothing, ever), then the connection closed if `close_after_reply`. Yields its port and the log."""
    received: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                received.append(chunk)
                reply = answer(chunk)
                if reply is None:
                    await trio.sleep_forever()
                await stream.send_all(reply)
                if close_after_reply:
                    return

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listener.socket.getsockname()[1], received
        nursery.cancel_scope.cancel()


def _connection(port: int, **options: object) -> XreadConnection:
    return XreadConnection("127.0.0.1", port, connect_timeout_s=5, timeout_s=5, **options)  # type: ignore[arg-type]


def _replies(xread: bytes) -> Callable[[bytes], bytes | None]:
    """+OK to each command of the handshake, `xread` to the XREAD."""
    return lambda chunk: xread if b"XREAD" in chunk else b"+OK\r\n" * chunk.count(b"*")


async def test_the_handshake_authenticates_selects_the_database_and_names_the_connection() -> None:
    async with scripted_redis(_replies(b"*-1\r\n")) as (port, received):
        reads = _connection(port, db=3, username="app", password="secret", client_name="rc:node:1")
        assert await reads.xread({b"k": "0-0"}, count=10, block_ms=5) == []
        sent = b"".join(received)
    assert b"$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\nsecret\r\n" in sent
    assert b"$6\r\nSELECT\r\n$1\r\n3\r\n" in sent
    assert b"$7\r\nSETNAME\r\n$9\r\nrc:node:1\r\n" in sent
    assert sent.endswith(b"$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$2\r\n10\r\n$5\r\nBLOCK\r\n$1\r\n5\r\n"
                         b"$7\r\nSTREAMS\r\n$1\r\nk\r\n$3\r\n0-0\r\n")


@pytest.mark.parametrize(("reply", "error"), [
    (b"-LOADING Redis is loading the dataset in memory\r\n", ConnectionError),
    (b"-NOAUTH Authentication required.\r\n", ConnectionError),
    (b"-ERR syntax error\r\n", RedisReplyError),
    (b"+OK\r\n", RedisReplyError),  # not an XREAD's answer
    (b"*1\r\n*2\r\n$1\r\nk\r\n:7\r\n", RedisReplyError),
])
async def test_an_answer_that_is_no_xread_reply_is_an_outage_or_an_error_and_drops_the_connection(
        reply: bytes, error: type[Exception]) -> None:
    async with scripted_redis(_replies(reply)) as (port, received):
        reads = _connection(port)
        with pytest.raises(error):
            await reads.xread({b"k": "0-0"}, count=10, block_ms=5)
        with pytest.raises(error):
            await reads.xread({b"k": "0-0"}, count=10, block_ms=5)
    assert len(received) == 2  # each read on a connection of its own


async def test_a_reply_cut_short_by_a_close_is_a_connection_error() -> None:
    async with scripted_redis(_replies(b"*1\r\n*2\r\n$1\r\nk"), close_after_reply=True) as (port, _):
        with pytest.raises(ConnectionError):
            await _connection(port).xread({b"k": "0-0"}, count=10, block_ms=5)


async def test_a_server_that_never_answers_times_out() -> None:
    # Real time, as the other tests against a socket (tests/streams/conftest.py): the server stays silent.
    async with scripted_redis(lambda chunk: None) as (port, received):
        reads = XreadConnection("127.0.0.1", port, connect_timeout_s=5, timeout_s=0.5)
        with trio.fail_after(10), pytest.raises(TimeoutError):
            await reads.xread({b"k": "0-0"}, count=10, block_ms=100)
        assert b"XREAD" in b"".join(received)


async def test_a_server_that_is_not_there_is_a_connection_error() -> None:
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionError):
        await _connection(port).xread({b"k": "0-0"}, count=10, block_ms=5)
