"""A test client for /ws over real sockets: splits frames into events, matches replies by ref."""

from __future__ import annotations

import itertools
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

_refs = itertools.count(1)


class WsClient:
    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.pending: deque[dict[str, Any]] = deque()
        self.welcome: dict[str, Any] = {}

    async def event(self, timeout: float = 10) -> dict[str, Any]:
        """The next event from the server (frames may carry several)."""
        if not self.pending:
            with trio.fail_after(timeout):
                frame = await self.ws.get_message()
            self.pending.extend(json.loads(line) for line in frame.split("\n"))
        return self.pending.popleft()

    async def until(self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda e: True,
                    timeout: float = 10) -> dict[str, Any]:
        """Skip events until one of type `kind` that satisfies `where`."""
        with trio.fail_after(timeout):
            while True:
                event = await self.event(timeout=timeout)
                if event["type"] == kind and where(event):
                    return event

    async def collect(self, kind: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The next `count` events of type `kind`, in arrival order (others skipped)."""
        found: list[dict[str, Any]] = []
        with trio.fail_after(timeout):
            while len(found) < count:
                event = await self.event(timeout=timeout)
                if event["type"] == kind:
                    found.append(event)
        return found

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def request(self, frame: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send a frame with a fresh ref; return the reply (or error) carrying that ref."""
        ref = f"r{next(_refs)}"
        await self.send({**frame, "ref": ref})
        return await self.until_ref(ref, timeout)

    async def until_ref(self, ref: str, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                event = await self.event(timeout=timeout)
                if event.get("ref") == ref:
                    return event

    async def subscribe(self, room: int, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "room": room}
        if since is not None:
            frame["since"] = since
        reply = await self.request(frame)
        assert reply["type"] == "subscribed", reply
        return reply


def ws_url(base: str, token: str | None = None) -> str:
    url = base.replace("http://", "ws://") + "/ws"
    return f"{url}?token={token}" if token is not None else url


@asynccontextmanager
async def ws_connect(base: str, token: str) -> AsyncIterator[WsClient]:
    async with open_websocket_url(ws_url(base, token), max_message_size=16 << 20) as ws:
        client = WsClient(ws)
        client.welcome = await client.event()
        assert client.welcome["type"] == "welcome"
        yield client


class SmallWindowClient:
    """A real WebSocket client (wsproto) on a socket with a 4 KiB receive buffer, read only when the test says.

    The buffer is set before connect, so the TCP window stays small and what the server
    writes backs up as on a slow link (once the server's send buffer is full).
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.protocol = WSConnection(ConnectionType.CLIENT)
        self.closed: int | None = None  # the server's close code, once read
        self._text: list[str] = []

    @classmethod
    async def connect(cls, base_url: str, token: str) -> SmallWindowClient:
        parts = urlsplit(base_url)
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so the window stays small
        await sock.connect((parts.hostname, parts.port))
        client = cls(trio.SocketStream(sock))
        await client.stream.send_all(client.protocol.send(Request(host=parts.netloc, target=f"/ws?token={token}")))
        while not any(isinstance(event, AcceptConnection) for event in client.protocol.events()):
            data = await client.stream.receive_some(1024)
            if not data:
                raise EOFError
            client.protocol.receive_data(data)
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.stream.send_all(self.protocol.send(TextMessage(json.dumps(frame))))

    async def read_events(self, done: Callable[[list[dict[str, Any]]], bool], *, recv_bytes: int = 65536,
                          pause_s: float = 0.0) -> list[dict[str, Any]]:
        """Read events until `done(events so far)` or the server's close frame (see `closed`).

        Each read takes at most `recv_bytes` and is followed by a `pause_s` sleep: a slow reader.
        """
        events: list[dict[str, Any]] = []
        while True:
            for event in self.protocol.events():
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        events.extend(json.loads(line) for line in "".join(self._text).split("\n"))
                        self._text.clear()
                elif isinstance(event, CloseConnection):
                    self.closed = event.code
            if self.closed is not None or done(events):
                return events
            data = await self.stream.receive_some(recv_bytes)
            if not data:
                raise EOFError("the server closed the socket without a close frame")
            self.protocol.receive_data(data)
            if pause_s:
                await trio.sleep(pause_s)

    async def close_code(self) -> int:
        """Now read everything the server sent, up to its close frame."""
        await self.read_events(lambda events: False)
        assert self.closed is not None
        return self.closed
