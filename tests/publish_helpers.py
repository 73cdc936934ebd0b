"""Helpers for the server-side publish tests: POSTs over real sockets, and checks of what arrived."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx

from tests.ws_client import WsClient, ws_connect

LIVE_KINDS = ("event", "broadcast")


async def post(http: httpx.AsyncClient, user: Any, path: str, body: Any, status: int = 202) -> dict[str, Any]:
    response = await http.post(path, headers=user.headers if user is not None else {}, json=body)
    data = response.json()
    assert response.status_code == status, (response.status_code, data)
    return data


async def refused(http: httpx.AsyncClient, user: Any, path: str, body: Any, status: int, code: str,
                  raw: bytes | None = None) -> None:
    headers = user.headers if user is not None else {}
    if raw is not None:
        response = await http.post(path, headers={**headers, "Content-Type": "application/json"}, content=raw)
    else:
        response = await http.post(path, headers=headers, json=body)
    data = response.json()
    assert response.status_code == status and set(data) == {"error"}, (body, response.status_code, data)
    assert data["error"]["code"] == code and data["error"]["message"], (body, data)


async def nothing_live(*clients: WsClient) -> None:
    """Each client got no room event or broadcast: anything sent before now precedes the pong."""
    for ws in clients:
        await ws.request({"type": "ping"})
        assert not [e for e in ws.pending if e["type"] in LIVE_KINDS], ws.pending
        ws.pending.clear()


async def connect_all(stack: AsyncExitStack, base: str, people: list[Any]) -> list[WsClient]:
    return [await stack.enter_async_context(ws_connect(base, person.token)) for person in people]
