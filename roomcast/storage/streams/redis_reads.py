"""The node's blocking XREAD on one Redis, on a connection of its own that writes the command itself.

Every read names every room the node reads (DESIGN.md §7). Through coredis each read costs its
client about 1.7 µs per room named, whatever arrived: each key is wrapped, checked and packed
anew, so a node reading 1000 rooms spent some 1.75 ms of CPU on every read (bench/stream_reads.py
`--redis`). Here the encodings of the keys and positions named by the last read are kept
(`NamedStreams`), only those of the rooms the stream reader moved since (its `ReadCursor`) are
made anew, a read joins the positions' bytes (the keys' are joined once while the rooms stay the
same), and hiredis (Redis's own C parser) reads the reply. Only this one command is sent this way;
every other (appends, the wake stream, presence, limits) goes through coredis.

Only for a plain `redis://` address; TLS and Unix sockets read through coredis as before. What
cannot reach Redis raises ConnectionError or TimeoutError (`redis_base.unreachable` counts both),
and the connection is then dropped: the next read connects anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import hiredis
import trio

# Errors Redis answers while it cannot serve (starting, busy, a failover): waited out like an outage.
_NOT_SERVING = (b"LOADING", b"BUSY", b"MASTERDOWN", b"TRYAGAIN", b"CLUSTERDOWN", b"NOAUTH", b"READONLY")

# An XREAD reply: per stream with news, its key and its entries (id, [field, value, ...]).
RawEntry = tuple[bytes, list[bytes]]
XreadReply = list[tuple[bytes, list[RawEntry]]]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*parts: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n%s" % (len(parts), b"".join(_bulk(part) for part in parts))


class RedisReplyError(Exception):
    """Redis refused the command itself (a bug of ours, not an outage)."""


class NamedStreams:
    """The streams a read names, each key and position in RESP, kept from read to read.

    Its owner sets or drops just the streams whose positions moved: a read of a thousand quiet
    rooms then encodes nothing and looks nothing up per room, it joins what is kept. The two
    dicts change together, so their orders match.
    """

    __slots__ = ("_keys_joined", "keys", "positions")

    def __init__(self) -> None:
        self.keys: dict[int, bytes] = {}
        self.positions: dict[int, bytes] = {}
        self._keys_joined: bytes | None = None  # the keys change far less often than the positions

    def set(self, stream: int, key: bytes, position: str) -> None:
        if stream not in self.keys:
            self.keys[stream] = _bulk(key)
            self._keys_joined = None
        self.positions[stream] = _bulk(position.encode())

    def drop(self, stream: int) -> None:
        if self.keys.pop(stream, None) is not None:
            del self.positions[stream]
            self._keys_joined = None

    def keys_joined(self) -> bytes:
        if self._keys_joined is None:
            self._keys_joined = b"".join(self.keys.values())
        return self._keys_joined


class XreadConnection:
    """One connection to one Redis for XREAD, made on first use and again after any failure.

    One read at a time (the node's stream reader is its only user).
    """

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None, client_name: str | None = None,
                 connect_timeout_s: float, timeout_s: float) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s
        hello: list[bytes] = []
        if password is not None:
            auth = [b"AUTH", username.encode(), password.encode()] if username else [b"AUTH", password.encode()]
            hello.append(command(*auth))
        if db:
            hello.append(command(b"SELECT", str(db).encode()))
        if client_name:
            hello.append(command(b"CLIENT", b"SETNAME", client_name.encode()))
        self._hello = hello
        self._stream: trio.SocketStream | None = None
        self._reader: hiredis.Reader | None = None  # one per connection
        self._busy = False

    @classmethod
    def for_url(cls, url: str, *, client_name: str, connect_timeout_s: float,
                timeout_s: float) -> XreadConnection | None:
        """A connection for `url` if it is a plain `redis://host[:port][/db]` address, else None."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or parts.query or not parts.hostname:
            return None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            return None
        return cls(parts.hostname, parts.port or 6379, db=int(path or 0),
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password is not None else None,
                   client_name=client_name, connect_timeout_s=connect_timeout_s, timeout_s=timeout_s)

    async def xread(self, streams: Mapping[bytes, str], *, count: int, block_ms: int) -> XreadReply:
        """`XREAD COUNT count BLOCK block_ms STREAMS ...`: each stream with news and its entries
        (none when the block ran out). The node's reads go through `xread_named`."""
        return await self._xread(_xread_request(count, block_ms, len(streams), b"".join(map(_bulk, streams)),
                                                b"".join(_bulk(position.encode()) for position in streams.values())))

    async def xread_named(self, named: NamedStreams, *, count: int, block_ms: int) -> XreadReply:
        """`xread` of the streams `named` keeps, encoded already."""
        return await self._xread(_xread_request(count, block_ms, len(named.keys), named.keys_joined(),
                                                b"".join(named.positions.values())))

    async def _xread(self, request: bytes) -> XreadReply:
        if self._busy:
            raise trio.BusyResourceError("another XREAD is under way on this connection")
        self._busy = True
        done = False
        try:
            with trio.move_on_after(self.timeout_s) as waiting:
                if self._stream is None:
                    await self._connect()
                reply = await self._call(request)
                done = True
            if waiting.cancelled_caught:
                raise TimeoutError(f"redis did not answer within {self.timeout_s:g} s")
        finally:
            self._busy = False
            if not done:  # cancelled, failed or timed out mid-command: its reply may still come
                self.close()
        return _streams_in(reply)

    def close(self) -> None:
        """Drop the connection (the next read connects anew)."""
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            stream.socket.close()

    async def _connect(self) -> None:
        stream = None
        with trio.move_on_after(self.connect_timeout_s):
            try:
                stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError as exc:
                raise ConnectionError(f"cannot connect to redis at {self.host}:{self.port}: {exc}") from exc
        if stream is None:
            raise TimeoutError(f"no connection to redis at {self.host}:{self.port} within {self.connect_timeout_s:g} s")
        self._stream = stream
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()
        if self._hello:
            await self._send(b"".join(self._hello))
            for _ in self._hello:
                await self._receive()

    async def _call(self, request: bytes) -> object:
        await self._send(request)
        return await self._receive()

    async def _send(self, data: bytes) -> None:
        assert self._stream is not None
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionError(f"the connection to redis broke: {exc}") from exc

    async def _receive(self) -> object:
        assert self._stream is not None and self._reader is not None
        while True:
            reply = self._reader.gets()
            if reply is not False:
                break
            try:
                data = await self._stream.receive_some(262_144)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionError(f"the connection to redis broke: {exc}") from exc
            if not data:
                raise ConnectionError("redis closed the connection")
            self._reader.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.encode().startswith(_NOT_SERVING) or message.startswith(("WRONGPASS", "ERR AUTH")):
                raise ConnectionError(f"redis cannot serve: {message}")
            raise RedisReplyError(message)
        return reply


def _streams_in(reply: object) -> XreadReply:
    """The reply's shape checked (RESP2: an array per stream, nil when the block ran out)."""
    if reply is None:
        return []
    if not isinstance(reply, list):
        raise RedisReplyError(f"unexpected XREAD reply: {type(reply).__name__}")
    for stream in reply:
        if not (isinstance(stream, list) and len(stream) == 2 and isinstance(stream[0], bytes)
                and isinstance(stream[1], list)):
            raise RedisReplyError("unexpected XREAD reply: a stream that is not [key, entries]")
        for entry in stream[1]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)):
                raise RedisReplyError("unexpected XREAD reply: an entry that is not [id, fields]")
            if entry[1] is None:  # an entry deleted since: no fields
                entry[1] = []
    return reply  # checked above: [key, [[id, [field, value, ...]], ...]] per stream


_XREAD, _COUNT, _BLOCK, _STREAMS = _bulk(b"XREAD"), _bulk(b"COUNT"), _bulk(b"BLOCK"), _bulk(b"STREAMS")


def _xread_request(count: int, block_ms: int, streams: int, keys: bytes, positions: bytes) -> bytes:
    return b"".join((b"*%d\r\n" % (6 + 2 * streams), _XREAD, _COUNT, _bulk(b"%d" % count), _BLOCK,
                     _bulk(b"%d" % block_ms), _STREAMS, keys, positions))
