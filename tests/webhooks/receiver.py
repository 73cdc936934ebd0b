"""A real HTTP receiver for webhook tests: a small h11 server on loopback that records every request.

Its port is reserved when it is made (a bound socket), so settings can name its URL before
any event loop runs; `start` serves on it, `stop` takes it down (connections are refused),
and `start` again brings it back on the same port. `reply` decides each answer: a status,
headers, and optionally a wait before answering (to be slower than the sender's timeout).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from tests.helpers import private_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # trio.current_time() on arrival

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-roomcast-signature", ""), expected)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    wait: Callable[[], Awaitable[Any]] | None = None  # awaited before answering


def _reserve() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", private_port()))  # `start` after `stop` binds it again
    sock.listen(128)
    return sock


class Receiver:
    def __init__(self) -> None:
        self._socket: socket.socket | None = _reserve()
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.requests: list[Received] = []
        self.reply: Callable[[Received], Reply] = lambda _: Reply()
        self._scope: trio.CancelScope | None = None

    def bodies(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r.json for r in self.requests if event is None or r.json["event"] == event]

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._serve)

    def stop(self) -> None:
        """Down: the listener closes and open connections are cut."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        if self._socket is not None:
            try:
                trio.lowlevel.notify_closing(self._socket)  # trio must not keep waiting on a closed fd
            except RuntimeError:  # outside the event loop (fixture teardown): nothing waits on it
                pass
            self._socket.close()
            self._socket = None

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._socket is None:
            self._socket = socket.socket()
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(("127.0.0.1", self.port))
            self._socket.listen(128)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._socket))
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        stream = await listener.accept()
                    except (trio.ClosedResourceError, OSError):
                        return  # stopped
                    nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while True:
                    headers: dict[str, str] = {}
                    body = bytearray()
                    while True:
                        event = connection.next_event()
                        if event is h11.NEED_DATA:
                            data = await stream.receive_some(65536)
                            if not data:
                                return
                            connection.receive_data(data)
                        elif isinstance(event, h11.Request):
                            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                        elif isinstance(event, h11.Data):
                            body += event.data
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        elif isinstance(event, h11.ConnectionClosed):
                            return
                    received = Received(headers, bytes(body), trio.current_time())
                    self.requests.append(received)
                    reply = self.reply(received)
                    if reply.wait is not None:
                        await reply.wait()
                    response_headers = [("content-length", str(len(reply.body))), *reply.headers.items()]
                    await stream.send_all(connection.send(h11.Response(status_code=reply.status,
                                                                       headers=response_headers)))
                    await stream.send_all(connection.send(h11.Data(data=reply.body)) if reply.body else b"")
                    await stream.send_all(connection.send(h11.EndOfMessage()))
                    if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                        return
                    connection.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
