"""Request bodies read as they arrive, with backpressure, for the routes that take large ones.

Quart's receiver appends every body message to the request's buffer as fast as the client
sends it, whether the view reads it or not: a view that reads slowly (an upload stored a
chunk at a time) would find the whole body in memory. For a streamed route (uploads) the
connection instead stops asking the server for more while `HIGH_WATER_BYTES` wait unread,
so Hypercorn's bounded queue fills and TCP pushes back on the client. Once the view has
answered, the rest of the body is read and dropped (`discard`), so an early answer (401,
413, 415) never waits on a client that is still sending.

Each streamed route has its own body limit (`max_bytes`); every other route keeps the app's
`MAX_CONTENT_LENGTH`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable
from quart.typing import ResponseTypes
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody

HIGH_WATER_BYTES = 256 << 10


@dataclass(frozen=True)
class StreamedRoute:
    """A route whose body is streamed: its method, its path (a regular expression) and its body limit."""

    method: str
    path: re.Pattern[str]
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path.fullmatch(path) is not None


class StreamedBody(TrioBody):
    """A request body that holds at most about HIGH_WATER_BYTES unread (see the module docstring)."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = trio.Event()
        self._discarding = False

    async def wait_for_room(self) -> None:
        """Return once the buffer is below the high-water mark (or the body is being discarded)."""
        while not self._discarding and len(self._data) >= HIGH_WATER_BYTES and self._must_raise is None:
            self._drained = trio.Event()
            await self._drained.wait()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._drained.set()
        return data

    def append(self, data: bytes) -> None:
        if not self._discarding:
            super().append(data)

    def discard(self) -> None:
        """Nothing more will be read: drop what waits and whatever still arrives."""
        self._discarding = True
        self._data.clear()
        self._drained.set()


class StreamingHTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection, giving requests to streamed routes a StreamedBody."""

    def _create_request_from_scope(self, send: ASGISendCallable) -> Request:
        request = super()._create_request_from_scope(send)
        self.streamed: StreamedBody | None = None
        routes: list[StreamedRoute] = getattr(self.app, "streamed_routes", [])  # RoomcastApp's
        for route in routes:
            if route.matches(request.method, request.path):
                self.streamed = StreamedBody(request.content_length, route.max_bytes)
                request.body = self.streamed
                break
        return request

    async def handle_messages(  # type: ignore[override]
            self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable) -> None:
        body = self.streamed
        if body is None:
            await super().handle_messages(nursery, request, receive)
            return

        async def paced_receive() -> ASGIReceiveEvent:
            await body.wait_for_room()
            return await receive()

        await super().handle_messages(nursery, request, paced_receive)

    async def _send_response(self, send: ASGISendCallable, response: ResponseTypes) -> None:
        if self.streamed is not None:
            self.streamed.discard()  # the view has answered: it reads no more of the body
        await super()._send_response(send, response)

