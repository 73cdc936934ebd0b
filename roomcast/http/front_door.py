"""One port for everything: `/ws` upgrades go to roomcast's WebSocket code, REST sends to the
fast path, the rest to Hypercorn.

Quart's (and ASGI's) websocket layer costs a message object, a framing pass and a
socket write per event per subscriber (DESIGN.md decision 10). So the front door
reads each new connection's request head; a `GET /ws` upgrade is handed, socket
and all, to roomcast's WebSocket session, which writes pre-framed bytes shared by
every subscriber. A connection whose request the fast path wants (`POST
/api/rooms/{id}/messages`, fast_sends.py) is served by it for as long as its
requests are sends; it gives back the bytes of the first request it does not
serve. Any other connection, and the rest of one the fast path gave back, goes
to Hypercorn's own HTTP handling, with the bytes already read replayed first, so
REST and the web client are served exactly as Hypercorn would.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from .framing import AMBIGUOUS_FRAMING_MESSAGE, MAX_HEAD_BYTES, ambiguous_framing, error_body
from .request_head import RequestHead, parse_request_head

log = logging.getLogger("roomcast.http")

HEAD_TIMEOUT_S = 10.0  # for the rest of a request head once its first bytes are in


class Draining:
    """Set once at shutdown. WebSocket sessions listen with a callback rather than a task
    each waiting on an event: a task per idle connection is memory the server can keep."""

    def __init__(self) -> None:
        self.is_set = False
        self._listeners: set[Callable[[], None]] = set()

    def set(self) -> None:
        self.is_set = True
        for listener in list(self._listeners):
            listener()
        self._listeners.clear()

    def listen(self, listener: Callable[[], None]) -> None:
        """Call `listener` when draining starts (at once if it already has)."""
        if self.is_set:
            listener()
        else:
            self._listeners.add(listener)

    def forget(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)


@dataclass(slots=True)
class UpgradeRequest:
    """The head of a `GET /ws` upgrade, as read by the front door."""

    head: bytes  # every byte read so far (the handshake, maybe the start of the first frame)
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def release(self) -> None:
        """Drop the head once the handshake is done: a long-lived connection keeps this object."""
        self.head, self.target, self.headers = b"", "", {}


WebSocketHandler = Callable[[trio.SocketStream, UpgradeRequest, Draining], Awaitable[None]]


class FastPath(Protocol):
    """Requests served below Hypercorn (fast_sends.py)."""

    def wants(self, head: bytes) -> bool:
        """Whether to take a connection whose first bytes (at least its request line) are `head`."""
        ...

    async def serve(self, stream: trio.SocketStream, data: bytes, draining: Draining) -> bytes | None:
        """Serve the connection from `data` (bytes read from it) on; return the bytes of a request to
        leave to Hypercorn, or None once the connection is done with."""
        ...


_HEAD_LIMIT = MAX_HEAD_BYTES + 4  # a head and the blank line that ends it
_UNFRAMED = (b"transfer-encoding", b"upgrade")  # a chunked body, or bytes after it that are not HTTP/1.1


class _ClosingRequest:
    """Finds, in the bytes handed to Hypercorn, the end of a request that asks to close the connection.

    h11 (Hypercorn's parser) expects nothing more after a request with `Connection: close`, or any
    HTTP/1.0 request (it keeps no HTTP/1.0 connection alive): a pipelined byte after it is a protocol
    error, and Hypercorn answered 400 in place of the app's answer. RFC 9112 §9.6 has the server answer
    that request, close, and process nothing more, so the bytes after it are held back. Requests are
    framed as h11 frames them (a head, then Content-Length bytes); at the first this cannot frame with
    certainty (a chunked body, an upgrade, a head request_head.py does not read) it stops looking and
    every byte goes through, as before.
    """

    __slots__ = ("_body_left", "_closing", "_head", "done", "tracking")

    def __init__(self) -> None:
        self._head = b""  # the start of a head whose end has not come yet
        self._body_left = 0
        self._closing = False  # the request being handed over asks to close
        self.tracking = True
        self.done = False  # a request that asks to close has been handed over whole

    def hand_over(self, data: bytes) -> bytes:
        """The part of `data` (the next bytes read) Hypercorn gets: all of it, but what follows a
        request that asks to close."""
        pos, size = 0, len(data)
        while self.tracking and pos < size:
            if self._body_left:  # a body goes through untouched: only its length is counted
                step = min(self._body_left, size - pos)
                self._body_left -= step
                pos += step
            else:
                pos = self._take_head(data, pos)
            if self._closing and not self._body_left:
                self.done, self.tracking = True, False
                return data[:pos] if pos < size else data
        return data

    def _take_head(self, data: bytes, pos: int) -> int:
        """Read the head that starts at `pos` (or earlier, in bytes held from the last read); where it ends."""
        if self._head:  # a head cut across reads: rare, and bounded by the head limit
            window, start, shift = self._head + data[pos:pos + _HEAD_LIMIT], 0, pos - len(self._head)
        else:
            window, start, shift = data, pos, 0
        end = window.find(b"\r\n\r\n", start, start + _HEAD_LIMIT)
        if end < 0:
            if len(window) - start >= _HEAD_LIMIT:
                self.tracking = False  # over the limit: refused with 431 (framing.py or h11), then closed
            else:
                self._head = window[start:]
            return len(data)
        self._head = b""
        self._begin(window[start:end])
        return end + 4 + shift

    def _begin(self, head: bytes) -> None:
        parsed = parse_request_head(head, http_1_0=True)
        length = None if parsed is None else _body_length(parsed)
        if parsed is None or length is None:
            self.tracking = False
            return
        self._body_left = length
        self._closing = parsed.http_1_0 or _asks_to_close(parsed)


def _body_length(head: RequestHead) -> int | None:
    """The length of the body that follows `head`, or None if it is not framed by a plain Content-Length."""
    if head.method == b"CONNECT" or any(name in head.first for name in _UNFRAMED):
        return None
    value = head.first.get(b"content-length", b"0")
    if b"content-length" in head.repeated or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _asks_to_close(head: RequestHead) -> bool:
    """Whether a `Connection` field holds the `close` token (any case, any of them, as h11 reads it)."""
    if b"connection" not in head.first:
        return False
    return any(name == b"connection" and "close" in _tokens(value.decode("latin-1")) for name, value in head.fields)


class ReplayStream(trio.abc.HalfCloseableStream):
    """A socket stream that first gives back bytes already read from it.

    Hypercorn closes a connection (`send_eof`, then `aclose`) without its send lock, so on a
    client's half-close, or a pipelined request after a closing answer, a write could start
    while the EOF was under way and trio refused it with BusyResourceError, which reached
    the app as an "Error in ASGI Framework" traceback. So a write waits for an EOF under
    way (and then fails as closed, which Hypercorn expects), and an EOF asked for during a
    write is left out: the `aclose` that follows ends the write, as Hypercorn means it to
    when it meets a busy stream. Never waiting for a write keeps a client that reads
    nothing from holding the connection open.

    Once a request that asks to close has been handed over whole (`_ClosingRequest`), nothing more
    is read: a read waits for Hypercorn to close the connection, which it does after the answer.
    """

    def __init__(self, stream: trio.SocketStream, already_read: bytes) -> None:
        self.transport_stream = stream
        self._pending = already_read
        self._sending = trio.Lock()
        self._requests = _ClosingRequest()
        self._closed = trio.Event()

    @property
    def socket(self) -> trio.socket.SocketType:
        return self.transport_stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
        elif self._requests.done:
            await self._closed.wait()
            raise trio.ClosedResourceError("closed after a request that asked to close")
        else:
            data = await self.transport_stream.receive_some(max_bytes)
        return self._requests.hand_over(data) if self._requests.tracking else data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._sending:
            await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if self._sending.locked():
            return  # a write is under way: the aclose that follows ends it
        async with self._sending:
            await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        self._closed.set()
        await self.transport_stream.aclose()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, headers) of a complete HTTP/1.1 request head, or None if it is not one.

    Read as the fast path reads its heads (request_head.py: what h11 accepts, and narrower),
    with the one `Host` h11 requires: a head that is cut short (the peer's EOF, the size cap, the
    timeout) or malformed is not an upgrade, and Hypercorn answers it as it always did (400).
    """
    end = head.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD_BYTES:
        return None
    parsed = parse_request_head(head[:end])
    if parsed is None or b"host" not in parsed.first or b"host" in parsed.repeated:
        return None
    headers: dict[str, str] = {}
    for name, value in parsed.fields:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return parsed.method.decode("latin-1"), parsed.target.decode("latin-1"), headers


def is_websocket_upgrade(method: str, target: str, headers: dict[str, str], path: str) -> bool:
    return (
        method == "GET"
        and urlsplit(target).path == path
        and "websocket" in _tokens(headers.get("upgrade", ""))
        and "upgrade" in _tokens(headers.get("connection", ""))
    )


def _tokens(value: str) -> set[str]:
    """The lower-case members of a comma-separated field value (`Connection: keep-alive, Upgrade`)."""
    return {token.strip().lower() for token in value.split(",")}


async def _read_head(stream: trio.SocketStream) -> bytes:
    """Read until the end of the request head (or the size cap, or the peer's EOF)."""
    head = b""
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
            chunk = await stream.receive_some(MAX_HEAD_BYTES)
            if not chunk:
                break
            head += chunk
    return head


async def refuse(stream: trio.SocketStream, status: int, reason: str, code: str, message: str) -> None:
    """Answer with PROTOCOL's error envelope; the caller closes the connection."""
    body = error_body(code, message)
    await stream.send_all(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n".encode() + body)


class FrontDoor:
    """Accepts connections on the node's port and routes each to WebSocket or HTTP handling."""

    def __init__(self, app: object, config: HypercornConfig, websocket_handler: WebSocketHandler,
                 websocket_path: str = "/ws", fast_path: FastPath | None = None) -> None:
        self.app = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        self.config = config
        self.websocket_handler = websocket_handler
        self.websocket_path = websocket_path
        self.fast_path = fast_path
        self.context = WorkerContext(None)
        self.lifespan_state: dict = {}
        self.draining = Draining()  # set at shutdown: sessions close with 1012

    async def serve(self, host: str, port: int, *, shutdown_trigger: Callable[[], Awaitable[None]],
                    listeners: list[trio.SocketListener] | None = None,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `shutdown_trigger` returns, then drain for up to the graceful timeout.

        `listeners`: sockets bound already (`run.py serve` binds before anything starts);
        without them, `host` and `port` are bound here.
        """
        lifespan = Lifespan(self.app, self.config, self.lifespan_state)
        async with trio.open_nursery() as lifespan_nursery:
            await lifespan_nursery.start(lifespan.handle_lifespan)
            await lifespan.wait_for_startup()
            if listeners is None:
                listeners = await trio.open_tcp_listeners(port, host=host)
            sockname = listeners[0].socket.getsockname()
            shown_host = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptor:
                    acceptor.start_soon(
                        partial(trio.serve_listeners, self._handle, listeners, handler_nursery=connections))
                    task_status.started(f"http://{shown_host}:{sockname[1]}")
                    await shutdown_trigger()
                    acceptor.cancel_scope.cancel()
                # Stop accepting, tell every connection to wind down, give them the grace period.
                self.draining.set()
                await self.context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + self.config.graceful_timeout
            await lifespan.wait_for_shutdown()
            lifespan_nursery.cancel_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        # serve_listeners lets a handler's exception end the server: nothing may escape here.
        try:
            head = await _read_head(stream)
            if not head:
                await stream.aclose()
                return
            if self.fast_path is not None and self.fast_path.wants(head):
                rest = await self.fast_path.serve(stream, head, self.draining)
                if rest is None:
                    return
                head = rest  # a request it does not serve: Hypercorn has it and the rest of the connection
            parsed = _parse_head(head)
            if parsed is not None and is_websocket_upgrade(*parsed, path=self.websocket_path):
                if ambiguous_framing(parsed[2]):  # other requests meet this rule in framing.py
                    await refuse(stream, 400, "Bad Request", "validation_error", AMBIGUOUS_FRAMING_MESSAGE)
                    return
                request = UpgradeRequest(head, parsed[1], parsed[2])
                del head, parsed  # this frame lives as long as the WebSocket does
                await self.websocket_handler(stream, request, self.draining)
                return
            await TCPServer(self.app, self.config, self.context, ConnectionState(self.lifespan_state.copy()),
                            ReplayStream(stream, head))  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away
        except Exception:
            log.exception("connection handler crashed")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
