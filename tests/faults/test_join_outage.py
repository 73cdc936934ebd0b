"""An outage in the middle of a burst of subscribes (services/joins.py): the joins it meets are
answered `unavailable`, none leaves a presence entry or a subscription behind, and once the
dependency is back the same sessions subscribe as usual."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from roomcast.actors.actor import ActorState
from roomcast.errors import DependencyUnavailable
from roomcast.node import Node
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.join_gate import JoinGate
from tests.ws_client import WsClient, ws_connect

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def answers(probe: Callable[[], Awaitable[None]]) -> bool:
    try:
        await probe()
    except DependencyUnavailable:
        return False
    return True


async def online_after_the_outage(node: Node, room: int) -> list[int]:
    """Who is online in the room once Redis answers, after a refresh (nothing is kept alive wrongly)."""
    await eventually(lambda: answers(node.streams.ping), timeout=30)
    await node.presence.refresh()
    return await node.presence.online_in(room)


async def test_a_redis_outage_mid_burst_fails_every_join_it_meets_and_leaves_nothing(
        node: Node, live_server: str, client: Any, users: Any, redis_proxy: TcpProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    owner, *others = [await users.create("member") for _ in range(4)]
    room = (await make_group(client, owner, others))["id"]
    gate = JoinGate(node, monkeypatch)
    async with AsyncExitStack() as stack:
        clients: list[WsClient] = [await stack.enter_async_context(ws_connect(live_server, user.token))
                                   for user in others]
        await clients[0].send({"type": "subscribe", "room": room, "ref": "s", "presence": "diff"})
        await gate.held.wait()  # checked, about to be written
        await clients[1].send({"type": "subscribe", "room": room, "ref": "s"})
        await clients[2].send({"type": "subscribe", "room": room, "ref": "s", "presence": "diff"})
        await eventually(lambda: gate.queued() == 2)
        redis_proxy.cut()
        gate.open()
        for ws in clients:
            reply = await ws.until_ref("s", timeout=30)
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        redis_proxy.restore()
        assert await online_after_the_outage(node, room) == []
        actor = node.rooms.get(room)
        assert actor is None or not actor.subscriptions
        for ws in clients:  # the same sessions, now as usual
            await ws.subscribe(room)
        assert await node.presence.online_in(room) == sorted(user.id for user in others)
    assert node.actors.root.actor.state is ActorState.RUNNING


@pytest.mark.parametrize("presence", ["diff", "diff-cached", "legacy"])
async def test_a_database_outage_mid_burst_fails_what_needs_it_and_undoes_what_was_written(
        presence: str, node: Node, live_server: str, client: Any, users: Any, pg_proxy: TcpProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    owner, first_user, queued_user = [await users.create("member") for _ in range(3)]
    room = (await make_group(client, owner, [first_user, queued_user]))["id"]
    async with ws_connect(live_server, owner.token) as o, ws_connect(live_server, first_user.token) as first, \
            ws_connect(live_server, queued_user.token) as queued:
        await o.subscribe(room)  # the room's actor runs (one that starts during the outage waits it out)
        gate = JoinGate(node, monkeypatch)
        shape = "diff" if presence.startswith("diff") else presence
        await first.send({"type": "subscribe", "room": room, "ref": "s", "presence": shape})
        await gate.held.wait()  # its membership was read before the outage; its entry is written after
        await queued.send({"type": "subscribe", "room": room, "ref": "s"})
        await eventually(lambda: gate.queued() == 1)
        if presence == "diff":  # the online snapshot's badges must then be read (the user cache has them)
            node.user_cache.clear()
        pg_proxy.cut()
        gate.open()
        reply = await first.until_ref("s", timeout=30)
        if presence == "diff":  # its `subscribed` needs the online snapshot, which the database could not give
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        else:  # the database is not needed for the rest (diff-cached: the badges are the user cache's):
            assert reply["type"] == "subscribed", reply  # subscribed, its announcement dropped
        reply = await queued.until_ref("s", timeout=30)  # its membership could not be read
        assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        expected = [owner.id] if presence == "diff" else sorted([owner.id, first_user.id])
        assert await online_after_the_outage(node, room) == expected
        pg_proxy.restore()
        await eventually(lambda: answers(node.database.ping), timeout=30)
        await queued.subscribe(room)
        await first.subscribe(room)
        assert await node.presence.online_in(room) == sorted([owner.id, first_user.id, queued_user.id])
    assert node.actors.root.actor.state is ActorState.RUNNING
