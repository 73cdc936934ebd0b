"""PROTOCOL §5 end to end over real sockets: every client frame, every server event, the guarantees.

REST calls that set things up go through the app's test client into the same node;
the WebSocket traffic goes over real sockets to that node's live server.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from tests.chat_helpers import history, make_group, read_pointer, room_of, send
from tests.helpers import error_of, eventually
from tests.ws_client import ws_connect


async def group_of(client: Any, users: Any, count: int = 2) -> tuple[list[Any], int]:
    people = [await users.create("member") for _ in range(count)]
    room = await make_group(client, people[0], people[1:])
    return people, room["id"]


def seqs(events: list[dict]) -> list[int]:
    return [event["seq"] for event in events]


# --------------------------------------------------------------------------- subscribe / unsubscribe


async def test_subscribe_replies_with_last_seq(live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    await send(client, bob, room, "before")
    async with ws_connect(live_server, alice.token) as ws:
        reply = await ws.request({"type": "subscribe", "room": room})
        assert reply["type"] == "subscribed" and reply["room"] == room
        # group creation took seq 0 or more; the message is the last event
        assert reply["last_seq"] == (await history(client, alice, room))["items"][-1]["seq"]


async def test_subscribe_errors(live_server: str, client: Any, users: Any) -> None:
    _, room = await group_of(client, users)
    outsider = await users.create("member")
    foreigner = await users.create("admin", tenant="acme")
    async with ws_connect(live_server, outsider.token) as ws:
        assert (await ws.request({"type": "subscribe", "room": room}))["code"] == "not_a_member"
        assert (await ws.request({"type": "subscribe", "room": 987654}))["code"] == "not_found"
        for bad in ({"room": "1"}, {"room": None}, {}, {"room": room, "since": -1}, {"room": room, "since": "x"},
                    {"room": True}):
            reply = await ws.request({"type": "subscribe", **bad})
            assert reply["type"] == "error" and reply["code"] == "validation_error", (bad, reply)
    async with ws_connect(live_server, foreigner.token) as ws:
        reply = await ws.request({"type": "subscribe", "room": room})
        assert reply["code"] == "not_found"  # another tenant's room does not exist


async def test_unsubscribe_stops_events(live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room)
        reply = await ws.request({"type": "unsubscribe", "room": room})
        assert reply["type"] == "unsubscribed" and reply["room"] == room and reply["ref"]
        await send(client, bob, room, "after unsubscribe")
        pong = await ws.request({"type": "ping"})
        assert pong["type"] == "pong"
        assert not [e for e in ws.pending if e["type"] == "message"]


# --------------------------------------------------------------------------- send


async def test_send_acks_after_commit_and_reaches_every_subscriber(live_server: str, client: Any,
                                                                    users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as a1, ws_connect(live_server, alice.token) as a2, \
            ws_connect(live_server, bob.token) as b:
        for ws in (a1, a2, b):
            await ws.subscribe(room)
        await a1.send({"type": "send", "room": room, "body": "héllo 👋\n\tworld", "client_id": "c-1",
                       "sender": bob.id, "ref": "send-1"})
        # The ack and the sender's own event both follow the commit, in either order (`request` would skip
        # an event that came first).
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < 2:
            answer = await a1.event()
            if answer.get("ref") == "send-1" or answer["type"] == "message":
                answers["reply" if answer.get("ref") == "send-1" else "event"] = answer
        ack = answers["reply"]
        assert ack["type"] == "ack"
        message = ack["message"]
        assert message["body"] == "héllo 👋\n\tworld" and message["sender"]["id"] == alice.id
        assert message["client_id"] == "c-1"
        stored = (await history(client, bob, room))["items"]
        assert stored[-1]["id"] == message["id"]  # committed before the ack
        for event in (answers["event"], await a2.until("message"), await b.until("message")):  # a2: the sender again
            assert event == {"type": "message", "room": room, "seq": message["seq"], "message": message}


async def test_send_is_idempotent_by_client_id(live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as ws:
        first = await ws.request({"type": "send", "room": room, "body": "once", "client_id": "same"})
        again = await ws.request({"type": "send", "room": room, "body": "once", "client_id": "same"})
        assert first["message"] == again["message"]
    assert [m["body"] for m in (await history(client, bob, room))["items"]] == ["once"]


async def test_send_follows_the_rest_rules(live_server: str, client: Any, users: Any, node: Any) -> None:
    (alice, _bob), room = await group_of(client, users)
    outsider = await users.create("member")
    async with ws_connect(live_server, alice.token) as ws:
        assert (await ws.request({"type": "send", "room": room, "body": "  \n"}))["code"] == "empty_body"
        too_long = "x" * (node.settings.max_body_chars + 1)
        assert (await ws.request({"type": "send", "room": room, "body": too_long}))["code"] == "validation_error"
        assert (await ws.request({"type": "send", "room": room, "body": 5}))["code"] == "validation_error"
        assert (await ws.request({"type": "send", "room": "x", "body": "hi"}))["code"] == "validation_error"
        assert (await ws.request({"type": "send", "room": room, "body": "hi", "attachments": "1"}))[
            "code"] == "validation_error"
        await client.patch(f"/api/rooms/{room}", headers=alice.headers, json={"is_active": False})
        assert (await ws.request({"type": "send", "room": room, "body": "hi"}))["code"] == "room_inactive"
    async with ws_connect(live_server, outsider.token) as ws:
        assert (await ws.request({"type": "send", "room": room, "body": "hi"}))["code"] == "not_a_member"


async def test_sends_fired_without_waiting_are_acked_in_order_each_after_its_commit(
        live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    other_room = await make_group(client, alice, [bob])
    async with ws_connect(live_server, alice.token) as a, ws_connect(live_server, bob.token) as b:
        await b.subscribe(room)
        frames = [{"type": "send", "room": room, "body": f"m{n}", "ref": f"s{n}"} for n in range(80)]
        frames[30] = {"type": "send", "room": room, "body": "to nothing", "reply_to": 987654, "ref": "s30"}
        frames[50] = {"type": "send", "room": other_room["id"], "body": "elsewhere", "ref": "s50"}
        for frame in frames:  # more than a connection may have pending: the reader waits, nothing is lost
            await a.send(frame)
        answers = [await a.until_ref(f"s{n}") for n in range(80)]
        assert answers[30]["type"] == "error" and answers[30]["code"] == "validation_error"
        acks = [answer for n, answer in enumerate(answers) if n not in (30, 50)]
        assert all(answer["type"] == "ack" for answer in acks) and answers[50]["type"] == "ack"
        assert [ack["message"]["body"] for ack in acks] == [f"m{n}" for n in range(80) if n not in (30, 50)]
        assert seqs([ack["message"] for ack in acks]) == sorted(seqs([ack["message"] for ack in acks]))
        stored = [m["body"] for m in (await history(client, bob, room, limit=200))["items"]]
        assert stored == [f"m{n}" for n in range(80) if n not in (30, 50)]  # committed before the acks
        delivered = await b.collect("message", 78)
        assert [event["message"]["body"] for event in delivered] == stored


# --------------------------------------------------------------------------- typing, read


async def test_typing_reaches_the_others_only(live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as a, ws_connect(live_server, bob.token) as b:
        await a.subscribe(room)
        await b.subscribe(room)
        await a.send({"type": "typing", "room": room, "state": True})
        typing = await b.until("typing")
        assert typing["room"] == room and typing["state"] is True and typing["user"]["id"] == alice.id
        await a.request({"type": "ping"})
        assert not [e for e in a.pending if e["type"] == "typing"]
        bad = await a.request({"type": "typing", "room": room, "state": "yes"})
        assert bad["code"] == "validation_error"


async def test_typing_reaches_the_senders_other_connections(live_server: str, client: Any, users: Any) -> None:
    (alice, _bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as laptop, ws_connect(live_server, alice.token) as phone:
        await laptop.subscribe(room)
        await phone.subscribe(room)
        await laptop.send({"type": "typing", "room": room, "state": True})
        typing = await phone.until("typing")
        assert typing["user"]["id"] == alice.id and typing["state"] is True
        await laptop.request({"type": "ping"})
        assert not [e for e in laptop.pending if e["type"] == "typing"]


@pytest.mark.parametrize("settings_overrides", [{"typing_burst": 100}])
async def test_typing_right_after_the_first_subscribe_of_a_room_arrives(live_server: str, client: Any,
                                                                      users: Any) -> None:
    # Each subscribe starts its room's actor; bob's typing follows alice's `subscribed` at
    # once. Transient events have no history to fetch: the actor must know its stream
    # position before it answers. Several fresh rooms, so that a race would show.
    alice, bob = await users.create("member"), await users.create("member")
    rooms = [(await make_group(client, alice, [bob]))["id"] for _ in range(10)]
    async with ws_connect(live_server, alice.token) as a, ws_connect(live_server, bob.token) as b:
        for room in rooms:
            await a.subscribe(room)
            await b.send({"type": "typing", "room": room, "state": True})
            typing = await a.until("typing", lambda e, room=room: e["room"] == room)
            assert typing["user"]["id"] == bob.id


async def test_read_is_stored_and_announced(live_server: str, client: Any, users: Any, node: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    message = await send(client, bob, room, "read me")
    async with ws_connect(live_server, alice.token) as a, ws_connect(live_server, bob.token) as b:
        await a.subscribe(room)
        await b.subscribe(room)
        await a.send({"type": "read", "room": room, "seq": message["seq"]})
        receipt = await b.until("read")
        assert receipt == {"type": "read", "room": room, "user": receipt["user"], "seq": message["seq"]}
        assert receipt["user"]["id"] == alice.id
        assert await read_pointer(node, room, alice.id) == message["seq"]
        # Over REST too: bob reads, alice hears of it.
        await client.post(f"/api/rooms/{room}/read", headers=bob.headers, json={"seq": message["seq"]})
        assert (await a.until("read", lambda e: e["user"]["id"] == bob.id))["seq"] == message["seq"]
        bad = await a.request({"type": "read", "room": room, "seq": -3})
        assert bad["code"] == "validation_error"


# --------------------------------------------------------------------------- events from REST


async def test_edits_deletes_and_room_updates_made_over_rest_are_delivered(live_server: str, client: Any,
                                                                          users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, bob.token) as b:
        await b.subscribe(room)
        message = await send(client, alice, room, "draft")
        assert (await b.until("message"))["message"]["id"] == message["id"]
        await client.patch(f"/api/rooms/{room}/messages/{message['id']}", headers=alice.headers,
                           json={"body": "final"})
        edited = await b.until("message_edited")
        assert edited["message"]["body"] == "final" and edited["seq"] > message["seq"]
        await client.delete(f"/api/rooms/{room}/messages/{message['id']}", headers=alice.headers)
        deleted = await b.until("message_deleted")
        assert deleted["message_id"] == message["id"] and deleted["seq"] > edited["seq"]
        await client.patch(f"/api/rooms/{room}", headers=alice.headers, json={"topic": "news"})
        updated = await b.until("room_updated")
        assert updated["changes"] == {"topic": "news"} and updated["seq"] > deleted["seq"]


async def test_room_added_and_removed_reach_connected_users(live_server: str, client: Any, users: Any,
                                                            node: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    carol = await users.create("member")
    async with ws_connect(live_server, carol.token) as c:
        await client.post(f"/api/rooms/{room}/members", headers=alice.headers, json={"user_id": carol.id})
        added = await c.until("room_added")
        assert added["room"]["id"] == room and carol.id in [m["id"] for m in added["room"]["members"]]
        await c.subscribe(room)
        await client.delete(f"/api/rooms/{room}/members/{carol.id}", headers=alice.headers)
        assert (await c.until("room_removed")) == {"type": "room_removed", "room": room}
        await send(client, alice, room, "not for carol")
        await c.request({"type": "ping"})
        assert not [e for e in c.pending if e["type"] == "message"]
    direct = await client.post("/api/rooms", headers=bob.headers, json={"kind": "direct", "members": [carol.id]})
    assert direct.status_code == 201


# --------------------------------------------------------------------------- presence


async def test_presence_joined_left_and_endpoint(live_server: str, client: Any, users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as a:
        await a.subscribe(room)
        joined = await a.until("presence")
        assert joined["status"] == "joined" and [u["id"] for u in joined["online"]] == [alice.id]
        async with ws_connect(live_server, bob.token) as b:
            await b.subscribe(room)
            bob_joined = await a.until("presence", lambda e: e["user"]["id"] == bob.id)
            assert sorted(u["id"] for u in bob_joined["online"]) == sorted([alice.id, bob.id])
            online = await client.get(f"/api/rooms/{room}/presence", headers=alice.headers)
            assert sorted(u["id"] for u in (await online.get_json())["online"]) == sorted([alice.id, bob.id])
            me = await client.get("/api/me", headers=bob.headers)
            assert (await me.get_json())["online"] is True
        left = await a.until("presence", lambda e: e["status"] == "left")
        assert left["user"]["id"] == bob.id and [u["id"] for u in left["online"]] == [alice.id]
    outsider = await users.create("member")
    response = await client.get(f"/api/rooms/{room}/presence", headers=outsider.headers)
    assert await error_of(response) == (403, "not_a_member")


# --------------------------------------------------------------------------- guarantees


async def test_500_rapid_sends_from_3_senders_reach_5_subscribers_in_order(live_server: str, client: Any,
                                                                           users: Any) -> None:
    people, room = await group_of(client, users, count=5)
    senders = people[:3]

    async def blast(person: Any, count: int) -> None:
        async with ws_connect(live_server, person.token) as ws:
            for n in range(count):
                await ws.send({"type": "send", "room": room, "body": f"{person.id}:{n}"})
            await ws.collect("ack", count, timeout=120)

    async with AsyncExitStack() as stack:
        subscribers = [await stack.enter_async_context(ws_connect(live_server, p.token)) for p in people]
        start = [(await ws.subscribe(room))["last_seq"] for ws in subscribers][-1]
        async with trio.open_nursery() as nursery:
            for person, count in zip(senders, (167, 167, 166), strict=True):
                nursery.start_soon(blast, person, count)
            for ws in subscribers:
                events = await ws.collect("message", 500, timeout=120)
                assert seqs(events) == list(range(start + 1, start + 501))  # in order, no gap, no duplicate
                for sender in senders:  # each sender's own order is kept too
                    mine = [int(e["message"]["body"].split(":")[1]) for e in events
                            if e["message"]["sender"]["id"] == sender.id]
                    assert mine == sorted(mine)


async def test_since_replays_what_was_missed_without_duplicates(live_server: str, client: Any,
                                                                users: Any) -> None:
    (alice, bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room)
        first = [await send(client, bob, room, f"seen {n}") for n in range(5)]
        seen = await ws.collect("message", 5)
        last_seen = seen[-1]["seq"]
    # Disconnected: more happens, including an edit and a delete.
    missed = [await send(client, bob, room, f"missed {n}") for n in range(20)]
    await client.patch(f"/api/rooms/{room}/messages/{first[0]['id']}", headers=bob.headers, json={"body": "e"})
    await client.delete(f"/api/rooms/{room}/messages/{missed[0]['id']}", headers=bob.headers)
    committed = (await room_of(client, bob, room))["last_seq"]
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room, since=last_seen)
        replayed = []
        while not replayed or replayed[-1]["seq"] < committed:
            event = await ws.event()
            if "seq" in event:
                replayed.append(event)
        assert seqs(replayed) == list(range(last_seen + 1, committed + 1))
        assert [e["type"] for e in replayed][-2:] == ["message_edited", "message_deleted"]
        live = await send(client, bob, room, "live after replay")
        assert (await ws.until("message"))["seq"] == live["seq"] == committed + 1


async def test_since_beyond_the_stream_is_served_from_the_database(live_server: str, client: Any,
                                                                  users: Any) -> None:
    """More missed events than the room keeps in memory: the replay reads the database."""
    (alice, bob), room = await group_of(client, users)
    sent = [await send(client, bob, room, f"m{n}") for n in range(60)]
    async with ws_connect(live_server, alice.token) as ws:
        reply = await ws.subscribe(room, since=0)
        events = await ws.collect("message", 60)
        assert [e["message"]["id"] for e in events] == [m["id"] for m in sent]
        # `last_seq` is where the room actor stood on attaching; the last sends may still
        # have been on their way through the outbox then, and follow live.
        assert reply["last_seq"] <= events[-1]["seq"]
        assert seqs(events) == sorted(set(seqs(events)))


async def test_no_task_or_subscription_outlives_a_session(live_server: str, client: Any, users: Any,
                                                          node: Any) -> None:
    (alice, _bob), room = await group_of(client, users)
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room)
        actor = node.rooms.get(room)
        assert actor is not None and actor.describe()["subscribers"] == 1
    # The server notices the close on its own socket; wait for that, then check what is left.
    await eventually(lambda: actor.describe()["subscribers"] == 0)
    await eventually(lambda: node.notices.sessions_of(alice.id) == 0)
    await eventually(lambda: node.presence.online_users([alice.id]), until=set())
    assert await node.presence.online_in(room) == []


async def test_the_presence_actor_is_supervised_from_the_first_connection(live_server: str, users: Any,
                                                                         node: Any) -> None:
    alice = await users.create("member")
    async with ws_connect(live_server, alice.token):
        keeper = node.actors.root.child("presence")
        assert keeper is not None
        await eventually(lambda: keeper.describe()["state"] == "running")
        assert keeper.parent is node.actors.root  # in the tree, so /api/admin/actors shows it


async def test_rate_limits(live_server: str, client: Any, users: Any, node: Any) -> None:
    from roomcast.ratelimit import RateLimiter

    (alice, bob), room = await group_of(client, users)
    node.send_limiter = RateLimiter(rate_per_s=0.01, burst=2)
    async with ws_connect(live_server, alice.token) as ws:
        for _ in range(2):
            assert (await ws.request({"type": "send", "room": room, "body": "ok"}))["type"] == "ack"
        limited = await ws.request({"type": "send", "room": room, "body": "too many"})
        assert limited["code"] == "rate_limited" and limited["retry_after"] > 0
    response = await client.post(f"/api/rooms/{room}/messages", headers=alice.headers, json={"body": "rest"})
    assert await error_of(response) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert (await client.post(f"/api/rooms/{room}/messages", headers=bob.headers, json={"body": "b"})).status_code \
        == 201
