"""A database outage under group commit: the sends it meets are answered `unavailable` (REST: 503),
/ws and REST alike, and the node's committer goes on by itself once the database is back."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from roomcast.actors.actor import ActorState
from roomcast.node import Node
from roomcast.services import messaging
from tests.chat_helpers import make_group
from tests.raw_http import RawConnection
from tests.ws_client import ws_connect

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_sends_that_meet_a_database_outage_are_unavailable_and_the_committer_recovers(
        node: Node, live_server: str, client: Any, users: Any, pg_proxy: TcpProxy) -> None:
    alice = await users.create("member")
    rooms = [(await make_group(client, alice))["id"] for _ in range(3)]
    answers: dict[str, tuple[int, Any]] = {}

    async def rest_send(http: httpx.AsyncClient, key: str, room: int) -> None:
        response = await http.post(f"{live_server}/api/rooms/{room}/messages", headers=alice.headers,
                                   json={"body": key, "client_id": key})
        answers[key] = (response.status_code, response.json())

    async with ws_connect(live_server, alice.token) as ws, httpx.AsyncClient(timeout=30) as http:
        assert (await ws.request({"type": "send", "room": rooms[0], "body": "before"}))["type"] == "ack"
        committer = messaging.committer(node)
        actor = committer.actor

        pg_proxy.cut()
        async with trio.open_nursery() as nursery:
            for n, room in enumerate(rooms):
                nursery.start_soon(rest_send, http, f"rest-{n}", room)
            refs = [f"down-{n}" for n in range(len(rooms))]
            for ref, room in zip(refs, rooms, strict=True):
                await ws.send({"type": "send", "room": room, "body": ref, "client_id": ref, "ref": ref})
            for ref in refs:
                reply = await ws.until_ref(ref, timeout=30)
                assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        for status, body in answers.values():
            assert status == 503 and body["error"]["code"] == "unavailable", (status, body)

        pg_proxy.restore()
        # Nothing to restart: the same committer answers the retries (by client_id, stored once).
        for n, room in enumerate(rooms):
            reply = await ws.request({"type": "send", "room": room, "body": f"down-{n}", "client_id": f"down-{n}"},
                                     timeout=30)
            assert reply["type"] == "ack", reply
            await rest_send(http, f"rest-{n}", room)
            assert answers[f"rest-{n}"][0] == 201, answers[f"rest-{n}"]
        assert messaging.committer(node).actor is actor and actor.state is ActorState.RUNNING
        assert actor.restarts == 0


async def test_a_rest_send_in_an_outage_is_answered_alike_by_the_fast_path_and_the_app(
        live_server: str, quart_server: str, client: Any, users: Any, pg_proxy: TcpProxy) -> None:
    """The node's own server serves sends on the fast path (http/fast_sends.py); quart_server has none."""
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    body = b'{"body": "in the dark"}'
    raw = (f"POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {alice.token}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nX-Request-Id: outage\r\n\r\n").encode()
    pg_proxy.cut()
    answers = []
    for url in (live_server, quart_server, live_server):  # the last: the outage known, the user cache passed by
        connection = await RawConnection.open(url)
        async with connection.stream:
            await connection.send(raw + body)
            answer = await connection.response()
        answers.append((answer.status, {k: v for k, v in answer.headers.items() if k != "date"}, answer.body))
    assert answers[0] == answers[1] == answers[2]
    status, headers, error = answers[0]
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(error)["error"]["details"] == {"dependency": "database"}
