"""A server-side WebSocket on a raw Trio stream.

The handshake is answered by hand (RFC 6455 §4.2.2); `inbound.py` parses what the client sends (masked
frames, fragments, control frames); what the server sends is written as pre-built frames
(`frames.py`), so one encoded event can go to many sockets without re-framing. Reads and writes go
straight to the socket's file descriptor: an idle connection waits in `wait_readable` with no
stream, socket or parser layers suspended above it.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable

import trio
from wsproto.utilities import generate_accept_token

from ...metrics import WireCounters
from ..framing import error_body
from ..front_door import UpgradeRequest
from . import frames
from .inbound import MESSAGE_TOO_BIG, NO_STATUS, Close, Event, FrameParser, Message, Ping, ProtocolError

_RECEIVE_BYTES = 16 << 10
PROTOCOL_ERROR = 1002  # RFC 6455 §7.4.1


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def _refusal(status: str, message: str, extra_headers: bytes = b"") -> bytes:
    """A refused handshake's answer, with PROTOCOL §1's error envelope (`validation_error`)."""
    body = error_body("validation_error", message)
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
            + extra_headers + b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n" + body)


class ConnectionClosed(Exception):
    """The WebSocket is closed (by the peer, by us, or the socket broke)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class WebSocket:
    """One accepted WebSocket: receive text messages, send frames, close with a code."""

    # Slotted, and the send lock made only when a write must wait for another: one of each per connection.
    __slots__ = ("_parser", "_peer_closed", "_send_lock", "_tail", "_torn", "closed", "counters", "last_heard",
                 "stream")

    def __init__(self, stream: trio.abc.Stream, max_message_bytes: int, counters: WireCounters | None = None) -> None:
        self.stream = stream
        self.counters = counters or WireCounters()  # the node's: frames and bytes written, for /metrics
        # Frames only: the handshake is answered by hand, so no HTTP parser stays alive per socket.
        self._parser = FrameParser(max_message_bytes)
        self._send_lock: trio.StrictFIFOLock | None = None  # see `_lock`
        self.closed: ConnectionClosed | None = None
        # True once the client's close frame arrived (and was answered): the handshake is done.
        self._peer_closed = False
        # True once a write was interrupted or failed: the byte stream is no longer framed.
        self._torn = False
        # The unsent end of a frame that `try_write_now` could only partly write: it goes out
        # before anything else, so frames never interleave.
        self._tail: bytes | None = None
        self.last_heard = trio.current_time()

    async def accept(self, request: UpgradeRequest) -> None:
        """Answer the opening handshake (RFC 6455 §4.2.2) from the head the front door read."""
        version = request.headers.get("sec-websocket-version", "")
        key = request.headers.get("sec-websocket-key", "")
        if version != "13":
            await self._write(_refusal("426 Upgrade Required", "unsupported WebSocket version: 13 is spoken",
                                       b"Sec-WebSocket-Version: 13\r\n"))
            raise ConnectionClosed(1002, "unsupported WebSocket version")
        if not _is_valid_key(key):
            await self._write(_refusal("400 Bad Request", "Sec-WebSocket-Key must be 16 bytes in base64"))
            raise ConnectionClosed(1002, "bad Sec-WebSocket-Key")
        await self._write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + generate_accept_token(key.encode()) + b"\r\n\r\n")
        # The client may have sent its first frame right behind the head.
        self._parser.feed(request.head.partition(b"\r\n\r\n")[2])

    async def receive(self, on_drained: Callable[[], None] | None = None) -> str:
        """The next complete text message; raises ConnectionClosed when the socket is done.

        `on_drained()` runs each time every message received so far has been returned, before
        more is read: the caller's cue to act on what those messages piled up.
        """
        while True:
            try:
                event = self._parser.next()
            except ProtocolError as exc:
                await self.close(exc.code, exc.reason if exc.code == MESSAGE_TOO_BIG else f"protocol error: {exc}")
                raise self.closed from None  # type: ignore[misc]
            if isinstance(event, Message):
                return event.text
            if event is not None:
                await self._handle_control(event)
                continue
            if self.closed is not None:
                raise self.closed
            if on_drained is not None:
                on_drained()
            # Inline rather than in a helper coroutine: this is where every idle connection waits,
            # and each coroutine suspended here would be one more frame per connection.
            stream = self.stream
            if isinstance(stream, trio.SocketStream):
                await trio.lowlevel.checkpoint_if_cancelled()
                data = read_now(stream.socket)
                if data is None:
                    try:
                        await trio.lowlevel.wait_readable(stream.socket)
                    except (trio.ClosedResourceError, OSError):  # closed here meanwhile
                        data = b""
                    else:
                        data = read_now(stream.socket)
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                if data is None:  # woken without data after all: wait again
                    continue
            else:
                data = await _receive_some(stream)
            if not data:
                self.closed = self.closed or ConnectionClosed(1006, "connection lost")
                raise self.closed
            self.last_heard = trio.current_time()
            self._parser.feed(data)

    async def wait_gone(self) -> None:
        """Return once the client is known to have gone (its socket reached EOF or broke), reading
        nothing it sent; `closed` then says so.

        For a frame whose work waits on others (a join held in a batch), so that a client that
        left meanwhile ends its session now rather than at its next ping. Where that cannot be
        told without reading, this waits forever: on a stream other than a plain socket, or once
        the client sent more (its next frames are handled after this one, a close among them too).
        """
        stream = self.stream
        if not isinstance(stream, trio.SocketStream) or self._parser.holds_input or self.closed is not None:
            await trio.sleep_forever()
        assert isinstance(stream, trio.SocketStream)
        try:
            peeked = await stream.socket.recv(1, socket.MSG_PEEK)
        except OSError:  # reset by the peer
            peeked = b""
        if peeked:
            await trio.sleep_forever()
        self.closed = self.closed or ConnectionClosed(1006, "connection lost")

    async def _handle_control(self, event: Event) -> None:
        if isinstance(event, Ping):
            await self.send_frame(frames.pong_frame(event.payload))
        elif isinstance(event, Close):
            self._peer_closed = True
            if self.closed is None:
                self.closed = ConnectionClosed(event.code, event.reason)
                # The answer echoes the client's code (RFC 6455 §5.5.1); a close without one gets 1000.
                async with self._lock():
                    await self._write_quietly(frames.close_frame(1000 if event.code == NO_STATUS else event.code))
        # A pong needs nothing: any bytes from the client already count as hearing from it.

    def try_write_now(self, frame: bytes) -> bool:
        """Write `frame` without waiting, if nothing else is being written; False if it was not.

        This is fan-out's fast path: a room actor hands an event to each subscriber with one
        non-blocking write, no task switch. If the kernel takes only part of the frame, the
        rest is kept as the tail and `has_tail` tells the caller to have it flushed.
        """
        if (self._torn or self.closed is not None or self._tail is not None
                or (self._send_lock is not None and self._send_lock.locked())
                or not isinstance(self.stream, trio.SocketStream)):
            return False
        try:
            sent = os.write(self.stream.socket.fileno(), frame)
        except BlockingIOError:
            return False
        except OSError:  # the peer is gone: the writer will find out and end the session
            return False
        if sent < len(frame):
            self._tail = frame[sent:]
        counters = self.counters
        counters.frames += 1
        counters.bytes += len(frame)  # the tail, if any, goes out later and is not counted again
        return True

    def _lock(self) -> trio.StrictFIFOLock:
        """The lock that keeps frames whole, made on first use (an idle connection's writes all go
        through `try_write_now`, which needs none)."""
        if self._send_lock is None:
            self._send_lock = trio.StrictFIFOLock()
        return self._send_lock

    @property
    def has_tail(self) -> bool:
        return self._tail is not None

    async def send_frame(self, frame: bytes) -> None:
        """Write one or more pre-built frames; raises ConnectionClosed if the socket is gone."""
        # Uncontended (the usual case), take the lock without `acquire`'s trip through the
        # scheduler: the writer calls this once per batch, for every subscriber.
        lock = self._lock()
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self._write(frame)
        finally:
            lock.release()
        if frame:
            self.counters.frames += 1

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once) and mark the socket closed; never raises."""
        if self.closed is not None:
            return
        self.closed = ConnectionClosed(code, reason)
        if code in (1005, 1006) or self._torn:  # 1005/1006 describe a close, never travel in one
            return
        with trio.move_on_after(1) as scope:
            scope.shield = True
            async with self._lock():
                await self._write_quietly(frames.close_frame(code, reason))

    async def linger(self, timeout_s: float = 2.0) -> None:
        """After our close frame, read (and drop) until the client closes too, briefly.

        Closing the socket while the client is still sending makes the kernel reset
        the connection, and the client would never read our close code. Once the
        client's close frame is in (the handshake is complete) there is nothing to wait for.
        """
        if self._torn or self._peer_closed:
            return
        with trio.move_on_after(timeout_s):
            while True:
                data = await _receive_some(self.stream)
                if not data:
                    return
                self._parser.feed(data)
                try:
                    while (event := self._parser.next()) is not None:
                        if isinstance(event, Close):
                            return
                except ProtocolError:
                    return

    async def _write(self, data: bytes) -> None:
        if self._torn:
            raise self.closed or ConnectionClosed(1006, "connection lost")
        try:
            await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._torn = True
            self.closed = self.closed or ConnectionClosed(1006, "connection lost")
            raise self.closed from None
        self.counters.bytes += len(data)

    async def _write_quietly(self, data: bytes) -> None:
        if self._torn:
            return
        try:
            await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            self._torn = True

    async def _send_all(self, data: bytes) -> None:
        """Write all of `data`; a cancellation marks the socket torn only if part of it went out.

        A session cancelled while its writer waits to send has written nothing of the frame,
        so it can still close cleanly; `SocketStream.send_all` cannot tell the two cases apart.
        """
        mid_frame = self._tail is not None
        if self._tail is not None:
            data, self._tail = self._tail + data, None
        if not isinstance(self.stream, trio.SocketStream):
            try:
                await self.stream.send_all(data)
            except trio.Cancelled:
                self._torn = True
                raise
            return
        sock = self.stream.socket
        view = memoryview(data)
        sent = 0
        try:
            while sent < len(view):
                try:
                    # The fast path: a non-blocking write straight to the fd, no trip through
                    # the scheduler. Fan-out makes one such write per subscriber per batch.
                    sent += os.write(sock.fileno(), view[sent:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
        except trio.Cancelled:
            if sent or mid_frame:
                self._torn = True
            raise
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc


def read_now(sock: trio.socket.SocketType) -> bytes | None:
    """What the socket holds now, without waiting: None if nothing, b"" once the peer closed or it broke."""
    try:
        return os.read(sock.fileno(), _RECEIVE_BYTES)
    except BlockingIOError:
        return None
    except OSError:  # reset by the peer, or closed here
        return b""


async def _receive_some(stream: trio.abc.Stream) -> bytes:
    """The next bytes from `stream`; b"" once the peer closed or it broke."""
    try:
        return bytes(await stream.receive_some(_RECEIVE_BYTES))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""
