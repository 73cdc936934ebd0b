"""A server-side WebSocket on a raw Trio stream.

The handshake is answered by hand (RFC 6455 §4.2.2); what the server sends is written as pre-built
frames (`frames.py`), so one encoded event can go to many sockets without re-framing.

What the client sends is cut into frames here. The usual frame (a whole masked text message in one
valid UTF-8 frame) is unmasked and decoded on the spot: every send, typing and read of a client is
one, and wsproto's event machinery costs several times the unmasking. Any other frame (fragments,
control frames, binary, anything malformed or invalid) goes to wsproto whole, so it parses and
refuses exactly what it always did. A frame that announces more than a message may hold, or a
stream this reader cannot cut, is handed to wsproto with everything after it, for good.
"""

from __future__ import annotations

import base64
import os
from collections import deque

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from ...metrics import WireCounters
from ..front_door import UpgradeRequest
from . import frames

_RECEIVE_BYTES = 16 << 10
PROTOCOL_ERROR = 1002  # RFC 6455 §7.4.1


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """A client frame's payload, unmasked (RFC 6455 §5.3): one XOR of two big integers."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class ConnectionClosed(Exception):
    """The WebSocket is closed (by the peer, by us, or the socket broke)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class WebSocket:
    """One accepted WebSocket: receive text messages, send frames, close with a code."""

    # Slotted, and the send lock made only when a write must wait for another: one of each per connection.
    __slots__ = ("_buffer", "_fragment_bytes", "_fragments", "_in_message", "_incoming", "_peer_closed", "_protocol",
                 "_send_lock", "_tail", "_torn", "closed", "counters", "last_heard", "max_message_bytes", "stream")

    def __init__(self, stream: trio.abc.Stream, max_message_bytes: int, counters: WireCounters | None = None) -> None:
        self.stream = stream
        self.counters = counters or WireCounters()  # the node's: frames and bytes written, for /metrics
        self.max_message_bytes = max_message_bytes
        # Frames only: the handshake is answered by hand, so no HTTP parser stays alive per socket.
        self._protocol = Connection(ConnectionType.SERVER)
        self._send_lock: trio.StrictFIFOLock | None = None  # see `_lock`
        self._fragments: list[str] = []
        self._fragment_bytes = 0
        # Bytes received and not yet cut into frames; None once everything goes straight to wsproto.
        self._buffer: bytes | None = b""
        # Frames cut, in order: a message decoded here (str), or a whole frame for wsproto (bytes).
        self._incoming: deque[str | bytes] = deque()
        self._in_message = False  # wsproto holds the first fragments of a message
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
            await self._write(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            raise ConnectionClosed(1002, "unsupported WebSocket version")
        if not _is_valid_key(key):
            await self._write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            raise ConnectionClosed(1002, "bad Sec-WebSocket-Key")
        await self._write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + generate_accept_token(key.encode()) + b"\r\n\r\n")
        # The client may have sent its first frame right behind the head.
        trailing = request.head.partition(b"\r\n\r\n")[2]
        if trailing:
            self._cut(trailing)

    async def receive(self) -> str:
        """The next complete text message; raises ConnectionClosed when the socket is done."""
        while True:
            # wsproto's events first: they come from frames older than any still queued.
            for event in self._protocol.events():
                message = await self._handle(event)
                if message is not None:
                    return message
            if self.closed is not None:
                raise self.closed
            if self._incoming:
                item = self._incoming.popleft()
                if isinstance(item, str):
                    return item
                await self._to_wsproto(item)
                continue
            try:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed = self.closed or ConnectionClosed(1006, "connection lost")
                raise self.closed
            self.last_heard = trio.current_time()
            self._cut(bytes(data))

    def _cut(self, data: bytes) -> None:
        """Cut what arrived into whole frames, queued in `_incoming` (see the module's docstring)."""
        if self._buffer is None:
            self._incoming.append(data)
            return
        buffer = self._buffer + data if self._buffer else data
        start, end = 0, len(buffer)
        while end - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            length, at = second & 0x7F, start + 2
            if length == 126:
                if end - at < 2:
                    break
                length, at = int.from_bytes(buffer[at:at + 2], "big"), at + 2
            elif length == 127:
                if end - at < 8:
                    break
                length, at = int.from_bytes(buffer[at:at + 8], "big"), at + 8
            if length > self.max_message_bytes:  # never buffered whole here: wsproto streams it
                self._incoming.append(buffer[start:])
                self._buffer = None
                return
            masked = second & 0x80
            payload_at = at + 4 if masked else at
            frame_end = payload_at + length
            if frame_end > end:
                break
            text = None
            if first == 0x81 and masked and not self._in_message:  # FIN, no RSV bits, text
                try:
                    text = _unmask(buffer[payload_at:frame_end], buffer[at:payload_at]).decode()
                except UnicodeDecodeError:
                    pass  # wsproto closes with 1007, as for any invalid text
            if text is not None:
                self._incoming.append(text)
            else:
                if first & 0x0F < 8:  # a data frame: a message continues unless it is the final one
                    self._in_message = not first & 0x80
                self._incoming.append(buffer[start:frame_end])
            start = frame_end
        self._buffer = buffer[start:]

    async def _to_wsproto(self, data: bytes) -> None:
        try:
            self._protocol.receive_data(data)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            await self.close(hint.code if isinstance(hint, CloseConnection) else PROTOCOL_ERROR,
                             f"protocol error: {exc}")
            raise self.closed from None  # type: ignore[misc]

    async def _handle(self, event: object) -> str | None:
        if isinstance(event, TextMessage | BytesMessage):
            size = len(event.data)
            self._fragment_bytes += size
            if self._fragment_bytes > self.max_message_bytes:
                await self.close(1009, "message too big")
                raise self.closed  # type: ignore[misc]
            if isinstance(event, BytesMessage):
                try:
                    self._fragments.append(bytes(event.data).decode())
                except UnicodeDecodeError:
                    self._fragments.append("\ufffd")  # reported as bad JSON by the session
            else:
                self._fragments.append(event.data)
            if event.message_finished:
                message = "".join(self._fragments)
                self._fragments.clear()
                self._fragment_bytes = 0
                return message
        elif isinstance(event, Ping):
            await self.send_frame(frames.pong_frame(event.payload))
        elif isinstance(event, CloseConnection):
            if self._protocol.state is ConnectionState.OPEN:
                # Not the client's close: wsproto reports a frame that breaks RFC 6455 (unmasked,
                # RSV bits, reserved opcode, bad close code: 1002; invalid UTF-8 text: 1007)
                # as a close with the code we must fail the connection with.
                await self.close(event.code, f"protocol error: {event.reason}")
                raise self.closed  # type: ignore[misc]
            self._peer_closed = True
            if self.closed is None:
                self.closed = ConnectionClosed(event.code, event.reason or "")
                async with self._lock():
                    await self._write_quietly(frames.close_frame(1000))
        return None

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
        # From here on wsproto reads alone; what was cut and not yet taken goes to it first.
        held = [item for item in self._incoming if isinstance(item, bytes)] + [self._buffer or b""]
        self._incoming.clear()
        self._buffer = None
        try:
            self._protocol.receive_data(b"".join(held))
            if any(isinstance(event, CloseConnection) for event in self._protocol.events()):
                return
        except (RemoteProtocolError, LocalProtocolError):
            return
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    data = await self.stream.receive_some(_RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                try:
                    self._protocol.receive_data(bytes(data))
                    if any(isinstance(event, CloseConnection) for event in self._protocol.events()):
                        return
                except (RemoteProtocolError, LocalProtocolError):
                    return

    async def _write(self, data: bytes) -> None:
        if self._torn:
            raise self.closed or ConnectionClosed(1006, "connection lost")
        try:
            await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
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
