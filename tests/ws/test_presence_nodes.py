"""Presence diffs across two nodes sharing PostgreSQL and Redis: joins on one reach the other as diffs.

Both nodes run in this process, each with its own stream backend, actors and live server on
real sockets, as two processes would; they share only the database and Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from roomcast.config import Settings
from roomcast.node import Node, open_node
from roomcast.server import serve_node
from tests.chat_helpers import make_group
from tests.publish_helpers import connect_all

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def stack() -> tuple[str, str]:
    return ("postgresql", "redis")


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"presence_window_s": 0.5, "presence_diff_limit": 4}


@pytest.fixture
async def second_node(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[str]:
    """Another node on the same database and Redis (same key prefix), served on its own port."""
    async with open_node(settings, migrate=False) as other:
        shutdown = trio.Event()
        url = await nursery.start(lambda task_status: serve_node(other, shutdown=shutdown, task_status=task_status))
        yield url
        shutdown.set()


async def test_joins_and_leaves_on_either_node_reach_both_as_bounded_diffs(
        live_server: str, second_node: str, node: Node, client: Any, users: Any) -> None:
    people = [await users.create("member") for _ in range(11)]
    watcher_here, watcher_there = people[:2]
    joiners = people[2:]
    room = (await make_group(client, people[0], people[1:]))["id"]
    async with AsyncExitStack() as stack:
        [here] = await connect_all(stack, live_server, [watcher_here])
        [there] = await connect_all(stack, second_node, [watcher_there])
        for ws in (here, there):
            assert (await ws.request({"type": "subscribe", "room": room, "presence": "diff"}))["type"] == "subscribed"
        # Half join through each node, at once.
        clients = (await connect_all(stack, live_server, joiners[::2])
                   + await connect_all(stack, second_node, joiners[1::2]))
        async with trio.open_nursery() as nursery:
            for ws in clients:
                nursery.start_soon(ws.subscribe, room)
        expected = {p.id for p in joiners}
        for ws in (here, there):
            listed: set[int] = set()
            left_out = 0
            # Until every joiner was listed or counted as left out (each watcher's own join may be
            # listed too). Not until the count reads 11: diffs of two nodes' joins may come after it.
            while len(listed & expected) + left_out < len(expected):
                event = await ws.until("presence_diff")
                assert len(event["joins"]) + len(event["leaves"]) <= 4  # the cap
                listed |= {u["id"] for u in event["joins"]}
                left_out += event["joins_truncated"]
        leaving = clients[len(joiners[::2])]  # the first of those on the second node
        await leaving.request({"type": "unsubscribe", "room": room})
        for ws in (here, there):
            event = await ws.until("presence_diff", lambda e: bool(e["leaves"]))
            assert [u["id"] for u in event["leaves"]] == [joiners[1].id] and event["online_count"] == 10
