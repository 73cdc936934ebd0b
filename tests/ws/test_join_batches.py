"""Subscribes in batches (services/joins.py), over real sockets on both stacks: a burst is checked,
written and read once for all, each join refused or answered as if alone, and a membership change
or a session that goes away during the burst leaves no subscription and no presence entry behind."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from roomcast.node import Node
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.join_gate import JoinGate
from tests.ws_client import SmallWindowClient, WsClient, ws_connect


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # No ping within a test: a client that goes away is noticed because its socket closed.
    return {"heartbeat_s": 3600.0}


async def quiet(ws: WsClient) -> list[str]:
    """The types of what reached `ws` before a ping's pong (everything sent to it before the ping)."""
    ref = "quiet"
    await ws.send({"type": "ping", "ref": ref})
    seen = []
    while (event := await ws.event())["type"] != "pong":
        seen.append(event["type"])
    return seen


async def test_a_burst_of_subscribes_is_one_batch_and_each_is_answered_as_if_alone(
        node: Node, live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, outsider = await users.create("member"), await users.create("member")
    members = [await users.create("member") for _ in range(6)]
    room = (await make_group(client, owner, members))["id"]
    elsewhere = (await make_group(client, outsider))["id"]  # exists; the owner is not in it
    gate = JoinGate(node, monkeypatch)
    async with AsyncExitStack() as stack:
        async def connect(user: Any) -> WsClient:
            return await stack.enter_async_context(ws_connect(live_server, user.token))

        first = await connect(owner)
        await first.send({"type": "subscribe", "room": room, "ref": "s"})
        await gate.held.wait()  # the first batch is held: what follows piles up behind it
        clients = [await connect(member) for member in members]
        for n, ws in enumerate(clients):
            await ws.send({"type": "subscribe", "room": room, "ref": "s", **({"presence": "diff"} if n % 2 else {})})
        refused = {"not_a_member": await connect(outsider), "not_found": await connect(outsider),
                   "elsewhere": await connect(owner)}
        await refused["not_a_member"].send({"type": "subscribe", "room": room, "ref": "s"})
        await refused["not_found"].send({"type": "subscribe", "room": 10**12, "ref": "s"})
        await refused["elsewhere"].send({"type": "subscribe", "room": elsewhere, "ref": "s"})
        await eventually(lambda: gate.queued() == len(clients) + 3)
        gate.open()

        assert (await first.until_ref("s"))["type"] == "subscribed"
        for n, ws in enumerate(clients):
            reply = await ws.until_ref("s")
            assert reply["type"] == "subscribed", reply
            if n % 2:  # written with the whole batch, then read: everyone who joined is online
                assert reply["online_count"] == len(members) + 1
                assert [u["id"] for u in reply["online"]] == sorted([owner.id] + [m.id for m in members])
        for expected, ws in (("not_a_member", refused["not_a_member"]), ("not_found", refused["not_found"]),
                             ("not_a_member", refused["elsewhere"])):
            reply = await ws.until_ref("s")
            assert reply["type"] == "error" and reply["code"] == expected, reply
        # Two batches: the held one, then all the others; only the members' entries were written.
        assert len(gate.writes) == 2
        assert sorted(user_id for _, user_id, _ in gate.writes[1]) == sorted(m.id for m in members)
        assert await node.presence.online_in(room) == sorted([owner.id] + [m.id for m in members])
        assert await node.presence.online_in(elsewhere) == []

        # A refused join leaves nothing: the room's messages do not reach the outsider, and typing
        # in the room is checked again (it is not among the session's rooms).
        assert (await first.request({"type": "send", "room": room, "body": "hi"}))["type"] == "ack"
        for ws in clients:
            await ws.until("message")
        assert "message" not in await quiet(refused["not_a_member"])
        typing = await refused["not_a_member"].request({"type": "typing", "room": room, "state": True})
        assert typing["type"] == "error" and typing["code"] == "not_a_member"
        # Once a member, the same session subscribes like anyone.
        await client.post(f"/api/rooms/{room}/members", headers=owner.headers, json={"user_id": outsider.id})
        await refused["not_a_member"].subscribe(room)
        assert outsider.id in await node.presence.online_in(room)


async def test_membership_changes_during_the_burst_count_as_of_each_join(
        node: Node, live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, bob, carol, dave = [await users.create("member") for _ in range(4)]
    room = (await make_group(client, owner, [bob, dave]))["id"]
    gate = JoinGate(node, monkeypatch)
    async with ws_connect(live_server, bob.token) as b, ws_connect(live_server, carol.token) as c, \
            ws_connect(live_server, dave.token) as d, ws_connect(live_server, owner.token) as o:
        await b.send({"type": "subscribe", "room": room, "ref": "s", "presence": "diff"})
        await gate.held.wait()  # bob's membership is checked; his entry waits to be written
        await d.send({"type": "subscribe", "room": room, "ref": "s"})
        await c.send({"type": "subscribe", "room": room, "ref": "s"})  # not yet a member
        await eventually(lambda: gate.queued() == 2)  # both for the next batch
        # Bob leaves the room after his membership was read, before his entry is written;
        # carol is added before hers is read.
        assert (await client.delete(f"/api/rooms/{room}/members/{bob.id}", headers=owner.headers)).status_code == 204
        await client.post(f"/api/rooms/{room}/members", headers=owner.headers, json={"user_id": carol.id})
        await b.until("room_removed")
        await c.until("room_added")
        gate.open()

        reply = await b.until_ref("s")
        assert reply["type"] == "error" and reply["code"] == "not_a_member", reply
        assert (await d.until_ref("s"))["type"] == "subscribed"
        assert (await c.until_ref("s"))["type"] == "subscribed"
        await eventually(lambda: node.presence.online_in(room), until=sorted([carol.id, dave.id]))
        assert (await o.request({"type": "send", "room": room, "body": "after"}))["type"] == "ack"
        await c.until("message")
        await d.until("message")
        assert "message" not in await quiet(b)
        actor = node.rooms.get(room)
        assert actor is not None and len(actor.subscriptions) == 2


@pytest.mark.parametrize("while_held", ["written", "queued"])
async def test_a_session_that_goes_away_during_its_join_leaves_no_presence(
        while_held: str, node: Node, live_server: str, client: Any, users: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    owner, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [bob]))["id"]
    gate = JoinGate(node, monkeypatch)
    # The owner's first session goes away while its entry is being written (its batch is held);
    # bob's while its join waits for the next batch, or before it sent any.
    first = await SmallWindowClient.connect(live_server, owner.token)
    await first.send({"type": "subscribe", "room": room, "ref": "s"})
    await gate.held.wait()
    second = await SmallWindowClient.connect(live_server, bob.token)
    if while_held == "queued":
        await second.send({"type": "subscribe", "room": room, "ref": "s"})
        await eventually(lambda: gate.queued() == 1)
    await first.stream.aclose()
    await second.stream.aclose()
    await eventually(lambda: node.notices.sessions_of(owner.id) + node.notices.sessions_of(bob.id) == 0)
    gate.open()
    await eventually(lambda: gate.queued() == 0 and gate.written == 1)  # the owner's entry went in...
    await eventually(lambda: node.presence.online_in(room), until=[])  # ...and out again
    await node.presence.refresh()  # nothing of theirs is kept alive either
    assert await node.presence.online_in(room) == []
    assert [[user_id for _, user_id, _ in batch] for batch in gate.writes] == [[owner.id]]  # bob's: never
    # The room carries on: a join now is answered as usual.
    async with ws_connect(live_server, owner.token) as o:
        await o.subscribe(room)
        assert await node.presence.online_in(room) == [owner.id]


async def test_a_join_whose_session_goes_away_during_its_membership_check_is_dropped(
        node: Node, live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    owner, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [bob]))["id"]
    gate = JoinGate(node, monkeypatch, at="membership")
    gone = await SmallWindowClient.connect(live_server, bob.token)
    await gone.send({"type": "subscribe", "room": room, "ref": "s"})
    await gate.held.wait()  # alone in its batch, which is reading the membership
    await gone.stream.aclose()
    await eventually(lambda: node.notices.sessions_of(bob.id) == 0)
    gate.open()
    async with ws_connect(live_server, owner.token) as o:  # the next batch: the batcher went on
        await o.subscribe(room)
        assert await node.presence.online_in(room) == [owner.id]
    assert gate.writes[0] == []  # nothing written for the one that went away
    assert "a batch of joins failed" not in caplog.text



async def test_a_member_removed_while_the_room_takes_the_subscription_gets_nothing_of_the_room_after(
        node: Node, live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [bob]))["id"]
    entered, go = trio.Event(), trio.Event()
    real_subscribe = node.rooms.subscribe

    async def held_subscribe(*args: Any, **kwargs: Any) -> int:
        entered.set()  # the membership was checked and the presence entry written
        await go.wait()
        return await real_subscribe(*args, **kwargs)

    monkeypatch.setattr(node.rooms, "subscribe", held_subscribe)
    async with ws_connect(live_server, owner.token) as o, ws_connect(live_server, bob.token) as b:
        await b.send({"type": "subscribe", "room": room, "ref": "s", "presence": "diff"})
        await entered.wait()
        assert (await client.delete(f"/api/rooms/{room}/members/{bob.id}", headers=owner.headers)).status_code == 204
        await b.until("room_removed")
        go.set()  # the room actor takes the subscription only now
        reply = await b.until_ref("s")
        assert reply["type"] == "error" and reply["code"] == "not_a_member", reply
        monkeypatch.setattr(node.rooms, "subscribe", real_subscribe)
        await o.subscribe(room)
        assert (await o.request({"type": "send", "room": room, "body": "after"}))["type"] == "ack"
        await o.until("presence", lambda e: e["user"]["id"] == owner.id)
        assert await quiet(b) == []  # nothing of the room after room_removed: no presence, no message
        assert await node.presence.online_in(room) == [owner.id]
        actor = node.rooms.get(room)
        assert actor is not None and len(actor.subscriptions) == 1
