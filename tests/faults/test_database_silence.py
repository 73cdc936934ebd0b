"""A PostgreSQL that stops answering without closing anything (stopped, or behind a network that
holds every byte): calls are answered `unavailable` within `database_timeout_s` instead of waiting
for it, nothing given up on commits behind its caller's back, and the node carries on once it
answers again."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from sqlalchemy import func, select

from roomcast.node import Node
from roomcast.storage.models import Message
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.ws_client import ws_connect

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TIMEOUT_S = 1.0


async def _stored(node: Node, room: int, body: str) -> int:
    def count(session: Any) -> int:
        return session.execute(select(func.count()).where(Message.room_id == room, Message.body == body)).scalar_one()
    return await node.database.read(count)


async def test_calls_to_a_silent_database_are_answered_unavailable_in_time(
        node: Node, live_server: str, client: Any, users: Any, pg_proxy: TcpProxy) -> None:
    node.database.timeout_s = TIMEOUT_S
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room)
        assert (await ws.request({"type": "send", "room": room, "body": "before", "client_id": "c0"}))["type"] == "ack"
        pg_proxy.blackhole()
        try:
            with trio.fail_after(TIMEOUT_S + 3):
                response = await client.get(f"/api/rooms/{room}/messages", headers=alice.headers)
            assert response.status_code == 503
            error = (await response.get_json())["error"]
            assert (error["code"], error["details"]) == ("unavailable", {"dependency": "database"})
            # A send: its transaction never got an answer, so it was not committed and is refused as such.
            with trio.fail_after(TIMEOUT_S + 3):
                reply = await ws.request({"type": "send", "room": room, "body": "during", "client_id": "c1"})
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            with trio.fail_after(TIMEOUT_S + 3):
                reply = await ws.request({"type": "subscribe", "room": room, "since": 0})
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            assert (await ws.request({"type": "ping"}))["type"] == "pong"  # the connection is kept
        finally:
            pg_proxy.restore()

        # The send given up on did not commit once the database answered again; sent anew, it is stored once.
        async def stored_during() -> int:
            return await _stored(node, room, "during")
        await eventually(stored_during, until=0, timeout=10)
        await trio.sleep(0.5)  # its thread has rolled back by now, not committed
        assert await stored_during() == 0
        reply = await ws.request({"type": "send", "room": room, "body": "during", "client_id": "c1"})
        assert reply["type"] == "ack", reply
        assert await stored_during() == 1
        event = await ws.event()
        assert (event["type"], event["message"]["client_id"]) == ("message", "c1")
    response = await client.get(f"/api/rooms/{room}/messages", headers=alice.headers)
    assert response.status_code == 200
    assert [m["body"] for m in (await response.get_json())["items"]] == ["before", "during"]
