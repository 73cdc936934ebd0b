"""A test client for /ws over real sockets: splits frames into events, matches replies by ref."""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

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
