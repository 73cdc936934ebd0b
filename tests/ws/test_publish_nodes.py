"""Server-side publish across two nodes sharing PostgreSQL and Redis, and with Redis down (PROTOCOL §4).

Both nodes run in this process, each with its own stream backend, actors and live server on
real sockets, as two processes would; they share only the database and Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from roomcast.config import Settings
from roomcast.node import Node, open_node
from roomcast.server import serve_node
from tests.actors.redis_server import free_port
from tests.chat_helpers import make_group
from tests.conftest import make_settings
from tests.publish_helpers import connect_all, nothing_live, post, refused
from tests.ws_client import WsClient, ws_connect

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def stack() -> tuple[str, str]:
    return ("postgresql", "redis")


async def serve(node: Node, nursery: trio.Nursery) -> tuple[str, trio.Event]:
    shutdown = trio.Event()
    url = await nursery.start(lambda task_status: serve_node(node, shutdown=shutdown, task_status=task_status))
    return url, shutdown


@pytest.fixture
async def second_node(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[tuple[Node, str]]:
    """Another node on the same database and Redis (same key prefix), served on its own port."""
    async with open_node(settings, migrate=False) as other:
        url, shutdown = await serve(other, nursery)
        yield other, url
        shutdown.set()


async def test_a_room_event_reaches_its_subscribers_on_both_nodes(
        live_server: str, second_node: tuple[Node, str], client: Any, users: Any) -> None:
    other_node, other_url = second_node
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    admin = await users.create("service")
    room = (await make_group(client, alice, [bob]))["id"]
    other = (await make_group(client, carol, [alice]))["id"]
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        [a_here] = await connect_all(stack, live_server, [alice])
        [b_there, a_there] = await connect_all(stack, other_url, [bob, alice])
        c_here, c_there = await connect_all(stack, live_server, [carol]) + await connect_all(stack, other_url, [carol])
        await a_here.subscribe(room)
        for ws in (c_here, c_there):
            await ws.subscribe(other)
        # Through the second node, which has no subscriber of the room, and no actor for it.
        await post(http, admin, f"{other_url}/api/rooms/{room}/events", {"name": "first", "data": {"n": 1}})
        assert await a_here.until("event") == {"type": "event", "room": room, "name": "first", "data": {"n": 1}}
        assert other_node.rooms.get(room) is None
        await b_there.subscribe(room)
        for base in (live_server, other_url):  # through either node, to subscribers on both
            await post(http, admin, f"{base}/api/rooms/{room}/events", {"name": base, "data": None})
            for ws in (a_here, b_there):
                assert (await ws.until("event"))["name"] == base
        await nothing_live(a_here, b_there, a_there, c_here, c_there)


async def test_a_broadcast_to_roles_reaches_exactly_those_roles_on_both_nodes(
        live_server: str, second_node: tuple[Node, str], users: Any) -> None:
    _, other_url = second_node
    admin = await users.create("admin")
    by_role = {role: [await users.create(role) for _ in range(4)] for role in ("teacher", "tutor", "student")}
    foreign = [await users.create(role, tenant="acme") for role in ("teacher", "tutor")]
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        clients: dict[str, list[WsClient]] = {}
        for role, people in by_role.items():  # half of each role on each node
            clients[role] = (await connect_all(stack, live_server, people[:2])
                             + await connect_all(stack, other_url, people[2:]))
        strangers = [*await connect_all(stack, live_server, foreign[:1]),
                     *await connect_all(stack, other_url, foreign[1:])]
        watchers = await connect_all(stack, other_url, [admin])
        for n, base in enumerate((live_server, other_url)):
            body = {"roles": ["teacher", "tutor"], "name": f"alert{n}", "data": {"n": n}}
            await post(http, admin, f"{base}/api/broadcast", body)
            for ws in clients["teacher"] + clients["tutor"]:
                assert await ws.until("broadcast") == {"type": "broadcast", "name": f"alert{n}", "data": {"n": n}}
            await nothing_live(*clients["teacher"], *clients["tutor"], *clients["student"], *strangers, *watchers)
        # By user id, across nodes: a student here and one there; everyone: the whole tenant on both.
        chosen = [by_role["student"][0], by_role["student"][3]]
        await post(http, admin, f"{live_server}/api/broadcast", {"user_ids": [u.id for u in chosen], "name": "ids"})
        picked = [clients["student"][0], clients["student"][3]]
        for ws in picked:
            assert (await ws.until("broadcast"))["name"] == "ids"
        await nothing_live(*picked, clients["student"][1], clients["student"][2], *clients["teacher"], *strangers)
        await post(http, admin, f"{other_url}/api/broadcast", {"name": "all"})
        everyone = [ws for role in clients.values() for ws in role] + watchers
        for ws in everyone:
            assert (await ws.until("broadcast"))["name"] == "all"
        await nothing_live(*everyone, *strangers)


async def test_publish_with_redis_down_is_503_and_the_node_stays_up(
        tmp_path: Path, database_url: str, client: Any, users: Any, nursery: trio.Nursery) -> None:
    admin, member = await users.create("admin"), await users.create("member")
    room = (await make_group(client, admin, [member]))["id"]
    dead = make_settings(tmp_path, database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                         redis_key_prefix="rc-test-dead:", stream_retry_base_s=0.02, stream_retry_max_s=0.2,
                         redis_timeout_s=5, redis_connect_timeout_s=1)
    async with open_node(dead, migrate=False) as node:
        url, shutdown = await serve(node, nursery)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for path, body in ((f"/api/rooms/{room}/events", {"name": "x"}), ("/api/broadcast", {"name": "x"})):
                response = await http.post(path, headers=admin.headers, json=body)
                assert response.status_code == 503 and response.headers["Retry-After"] == "1"
                await refused(http, admin, path, body, 503, "unavailable")
                assert response.json()["error"]["details"] == {"dependency": "streams"}
            assert (await http.get("/healthz")).status_code == 200
        shutdown.set()


async def test_a_member_gets_an_event_on_the_node_it_reconnects_to(
        live_server: str, second_node: tuple[Node, str], client: Any, users: Any) -> None:
    """Not stored: who is not connected misses it; once subscribed again, anywhere, it gets the next."""
    _, other_url = second_node
    alice, bob, service = await users.create("member"), await users.create("member"), await users.create("service")
    room = (await make_group(client, alice, [bob]))["id"]
    async with httpx.AsyncClient(timeout=30) as http:
        async with ws_connect(live_server, alice.token) as ws:
            await ws.subscribe(room)
        await post(http, service, f"{live_server}/api/rooms/{room}/events", {"name": "missed"})
        async with ws_connect(other_url, alice.token) as ws:
            await ws.subscribe(room, since=0)
            await post(http, service, f"{live_server}/api/rooms/{room}/events", {"name": "seen"})
            event = await ws.until("event")
            assert event["name"] == "seen"
