"""REST sends below Quart: `POST /api/rooms/{id}/messages` served by the front door itself.

Through Hypercorn, h11 and Quart a REST send cost about 2 ms of CPU, most of it in those
layers. So the front door hands a connection whose first request is a send to `FastSends`,
which serves it, and every send after it on that connection (keep-alive, pipelined or one at
a time), with the app's own steps and nothing else: the caller from the Authorization header
(auth.py, through the user cache), the body as JSON and as `SendMessageIn` (validation.py),
the send itself (routes/messages.py `send_as`, through the node's group committer), errors
as the app's handlers answer them (errors.py), the request id, the access line, the request
count and the security headers; the answer goes out as Hypercorn writes it.

Whatever it does not serve, it gives back to the front door with the bytes read so far, and
Hypercorn serves that request and the rest of the connection as it always did: any other
request; a head it does not read (request_head.py); a body chunked, announced by `Expect`,
over max_request_bytes, with Transfer-Encoding beside Content-Length, or not JSON by its
Content-Type; `Upgrade`, or `Connection` other than keep-alive; a repeated field it reads;
an `Origin` while allowed_origins is set (CORS); a body still incomplete after
BODY_TIMEOUT_S. Like the app, it answers a refused token before the body has come, and then
reads the body (for at most framing.BODY_DRAIN_TIMEOUT_S) to keep the connection.
"""

from __future__ import annotations

import logging
import re
import time

import trio
from hypercorn.config import Config as HypercornConfig

from ..logs import bind
from ..node import Node
from ..wire import MAX_ID, JsonObject, encode
from . import framing
from .access import log_request, request_id_from
from .app import SECURITY_HEADERS
from .auth import user_for_authorization
from .chat_schemas import SendMessageIn
from .errors import error_answer
from .front_door import HEAD_TIMEOUT_S, MAX_HEAD_BYTES, Draining
from .peer import TrustedProxies
from .request_head import RequestHead, parse_request_head
from .routes.messages import SEND_RULE, send_as
from .routes.metrics import count_request
from .validation import as_model, is_json, json_value
from .ws.connection import read_now

log = logging.getLogger("roomcast.access")

# A send's body still incomplete this long after its head goes to Hypercorn (which then waits
# for it as it always did, up to Quart's body timeout).
BODY_TIMEOUT_S = 10.0
_RECEIVE_BYTES = 64 << 10
_TARGET = re.compile(rb"(/api/rooms/([0-9]{1,19})/messages)(?:\?[\x21-\x7e]*)?")
# Fields read as one value: sent twice, the request is Hypercorn's.
_READ_ONCE = frozenset({b"host", b"content-length", b"content-type", b"authorization", b"connection", b"origin"})
# Fields whose handling is Hypercorn's and the app's.
_LEFT_TO_HYPERCORN = (b"transfer-encoding", b"expect", b"upgrade")


class _Send:
    """A send's request as its head gives it."""

    __slots__ = ("authorization", "fields", "length", "path", "room_id")

    def __init__(self, head: RequestHead, path: bytes, room_id: int, length: int) -> None:
        self.fields = head.fields
        self.path = path.decode("ascii")
        self.room_id = room_id
        self.length = length
        authorization = head.one(b"authorization")
        self.authorization = authorization.decode("latin-1") if authorization is not None else None


class FastSends:
    """The front door's fast path (front_door.FastPath) for one node."""

    def __init__(self, node: Node, config: HypercornConfig) -> None:
        settings = node.settings
        self.node = node
        self.config = config
        self.max_body_bytes = settings.max_request_bytes
        self.cors = bool(settings.allowed_origins)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.access_log = settings.access_log
        fixed = [(name.lower(), value) for name, value in SECURITY_HEADERS.items()]
        if self.cors:
            fixed.insert(0, ("vary", "Origin"))  # what quart_cors adds to an answer to a request without Origin
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed).encode("latin-1")
        self.answered = 0  # requests answered here (not handed to Hypercorn)
        self._headers_second = -1  # the second `_headers` was made in: their date changes once a second
        self._headers = b""

    def _server_headers(self) -> bytes:
        """Hypercorn's own response headers (date, server), made once a second rather than per answer."""
        second = int(time.time())
        if second != self._headers_second:
            self._headers = b"".join(b"%s: %s\r\n" % pair for pair in self.config.response_headers("h11"))
            self._headers_second = second
        return self._headers

    def wants(self, head: bytes) -> bool:
        return head.startswith(b"POST /api/rooms/")

    async def serve(self, stream: trio.SocketStream, data: bytes, draining: Draining) -> bytes | None:
        return await _Connection(self, stream, data, draining).run()

    def send_of(self, head: RequestHead | None) -> _Send | None:
        """The send a head asks for, if this path serves it as the app would."""
        if head is None or head.method != b"POST":
            return None
        target = _TARGET.fullmatch(head.target)
        if target is None:
            return None
        room_id = int(target[2])
        first = head.first
        if (not 1 <= room_id <= MAX_ID or not head.repeated.isdisjoint(_READ_ONCE) or b"host" not in first
                or any(name in first for name in _LEFT_TO_HYPERCORN)
                or (self.cors and b"origin" in first)):
            return None
        connection = first.get(b"connection")
        if connection is not None and connection.lower() != b"keep-alive":
            return None
        content_type = first.get(b"content-type")
        if content_type is None or (content_type != b"application/json"
                                    and not is_json(content_type.decode("latin-1"))):
            return None
        length = first.get(b"content-length")
        if length is None or not length.isdigit() or len(length) > 15 or int(length) > self.max_body_bytes:
            return None
        return _Send(head, target[1], room_id, int(length))

    def response(self, status: int, body: bytes, headers: dict[str, str], request_id: str, close: bool) -> bytes:
        """An answer as Hypercorn writes the app's (lower-case names, the app's headers, then its own)."""
        head = [b"HTTP/1.1 %d \r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (status, len(body))]
        head.extend(f"{name.lower()}: {value}\r\n".encode("latin-1") for name, value in headers.items())
        head.append(self._fixed)
        head.append(b"x-request-id: %s\r\n" % request_id.encode("ascii"))
        head.append(self._server_headers())
        if close:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        return b"".join(head)


class _Connection:
    """One connection while its requests are sends."""

    __slots__ = ("buffer", "draining", "requests", "sends", "stream")

    def __init__(self, sends: FastSends, stream: trio.SocketStream, data: bytes, draining: Draining) -> None:
        self.sends = sends
        self.stream = stream
        self.buffer = data
        self.draining = draining
        self.requests = 0

    async def run(self) -> bytes | None:
        while True:
            end = await self._head_end()
            if end < 0:  # the client is done, or idle past keep-alive, or the node is stopping
                return None
            if end == 0:  # a head not complete in time: as the front door leaves the first to Hypercorn
                return self.buffer
            send = self.sends.send_of(parse_request_head(self.buffer[:end]))
            if send is None:
                return self.buffer
            served = await self._serve(send, end + 4)
            if served is None:
                return self.buffer
            if not served or self.draining.is_set:
                return None

    async def _head_end(self) -> int:
        """Where the buffered head ends once it is in; -1 to close, 0 to hand over what is buffered."""
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:
            return end if end <= MAX_HEAD_BYTES else 0
        if not self.buffer and not await self._next_request():
            return -1
        if self.buffer[0] < 0x21:
            # A CR or LF, space or control byte cannot start a request line: h11 answers it with a 400
            # and closes at once, without waiting for a head that may never end (a stray CRLF after a body).
            return 0
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:  # the whole head came with the first bytes, as it mostly does: no timeout to set
            return end if end <= MAX_HEAD_BYTES else 0
        with trio.move_on_after(HEAD_TIMEOUT_S):
            while (end := self.buffer.find(b"\r\n\r\n")) < 0 and len(self.buffer) < MAX_HEAD_BYTES:
                chunk = await self.stream.receive_some(_RECEIVE_BYTES)
                if not chunk:
                    break
                self.buffer += chunk
        return end if 0 < end <= MAX_HEAD_BYTES else 0

    async def _next_request(self) -> bool:
        """Wait for the next request's first bytes, as long as Hypercorn keeps an idle connection."""
        if self.draining.is_set:
            return False
        # A busy client's next request is often here already: taken without a timeout's cancel scope,
        # a good part of a send's cost on this path (a checkpoint still lets the others run).
        await trio.lowlevel.checkpoint_if_cancelled()
        ready = read_now(self.stream.socket)
        if ready is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            self.buffer = ready
            return bool(ready)
        with trio.move_on_after(self.sends.config.keep_alive_timeout) as idle:
            self.draining.listen(idle.cancel)
            try:
                self.buffer = await self.stream.receive_some(_RECEIVE_BYTES)
            finally:
                self.draining.forget(idle.cancel)
        return bool(self.buffer)

    async def _body_in(self, size: int, timeout: float) -> bool:
        """Whether the buffer holds `size` bytes, reading for at most `timeout`."""
        if len(self.buffer) >= size:
            return True
        with trio.move_on_after(timeout):
            while len(self.buffer) < size:
                chunk = await self.stream.receive_some(max(_RECEIVE_BYTES, size - len(self.buffer)))
                if not chunk:
                    return False
                self.buffer += chunk
        return len(self.buffer) >= size

    async def _serve(self, send: _Send, start: int) -> bool | None:
        """Answer one send whose body starts at `start`: True to go on, False to close, None to hand
        the request to Hypercorn (nothing has been answered)."""
        sends = self.sends
        node = sends.node
        started = time.perf_counter()
        request_id = request_id_from(send.fields)
        end = start + send.length
        with bind(request_id=request_id):
            try:
                user = await user_for_authorization(node, send.authorization)
            except Exception as exc:
                # Answered before the body has come, as the app answers; the body is then read and dropped.
                answer = error_answer(exc)
                if not await self._answer(send, request_id, started, answer.status, answer.body, answer.headers):
                    return False
                if not await self._body_in(end, framing.BODY_DRAIN_TIMEOUT_S):
                    return False
                self.buffer = self.buffer[end:]
                return True
            if not await self._body_in(end, BODY_TIMEOUT_S):
                return None
            body, self.buffer = self.buffer[start:end], self.buffer[end:]
            try:
                message, status = await send_as(node, user, send.room_id, as_model(SendMessageIn, json_value(body)))
                answer_body, headers = message, {}
            except Exception as exc:
                answer = error_answer(exc)
                status, answer_body, headers = answer.status, answer.body, answer.headers
            return await self._answer(send, request_id, started, status, answer_body, headers)

    async def _answer(self, send: _Send, request_id: str, started: float, status: int, body: JsonObject,
                      headers: dict[str, str]) -> bool:
        sends = self.sends
        sends.answered += 1
        self.requests += 1
        keep = self.requests < sends.config.keep_alive_max_requests  # as Hypercorn counts them
        await self.stream.send_all(sends.response(status, encode(body) + b"\n", headers, request_id, not keep))
        count_request(sends.node.metrics, "POST", SEND_RULE, status)
        if sends.access_log and log.isEnabledFor(logging.INFO):
            log_request("POST", SEND_RULE, send.path, status, started, self._client(send))
        return keep

    def _client(self, send: _Send) -> str | None:
        try:
            peer = self.stream.socket.getpeername()[0]
        except OSError:
            peer = None
        return self.sends.proxies.resolve_fields(peer, "http", send.fields)[0]
