"""On the sending connection a send's `ack` comes before its `message` event (docs/protocol.md).

Once a batch is committed its rows are visible to the outbox relay, which reads a
room's unpublished rows back whenever another transaction there asks it to. So the
message's fan-out can reach the sender's session before the committer's answer has.
These tests hold the committer's answer back, right after its commit, while such a
read-back publishes the message to every subscriber.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.chat_helpers import body_of, make_group, send
from tests.ws_client import WsClient, ws_connect


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"ws_outbound_queue": OUTBOUND}


OUTBOUND = 8


def answer_late(node: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[trio.Event, trio.Event]:
    """(committed, answer): the committer's transaction commits, sets `committed`, then waits for `answer`."""
    committed, answer = trio.Event(), trio.Event()
    real_write = node.database.write

    async def write(work: Any, *args: Any) -> Any:
        result = await real_write(work, *args)
        if work.__qualname__.startswith("SendCommitter."):
            committed.set()
            await answer.wait()
        return result

    monkeypatch.setattr(node.database, "write", write)
    return committed, answer


async def first_of(ws: WsClient, kinds: set[str]) -> dict[str, Any]:
    while True:
        event = await ws.event()
        if event["type"] in kinds:
            return event


async def posted(client: Any, user: Any, room: int, body: str) -> dict[str, Any]:
    return await body_of(await client.post(f"/api/rooms/{room}/messages", headers=user.headers,
                                           json={"body": body}), 201)


async def send_until_committed(sender: WsClient, room: int, committed: trio.Event) -> None:
    """Send "waiting" (ref s1) and return once it is committed, its answer held back (`answer_late`)."""
    await sender.send({"type": "send", "room": room, "body": "waiting", "ref": "s1"})
    with trio.fail_after(10):
        await committed.wait()


async def edit(client: Any, user: Any, room: int, message_id: int, body: str, seen_by: WsClient | None) -> None:
    """Edit in its own transaction, not the committer's; then wait until `seen_by` has its event (fanned out)."""
    response = await client.patch(f"/api/rooms/{room}/messages/{message_id}", headers=user.headers,
                                  json={"body": body})
    assert response.status_code == 200
    if seen_by is not None:
        await seen_by.until("message_edited")


async def events_until_pong(ws: WsClient) -> list[dict[str, Any]]:
    await ws.send({"type": "ping", "ref": "p1"})
    events: list[dict[str, Any]] = []
    while (event := await ws.event())["type"] != "pong":
        events.append(event)
    return events


async def test_the_ack_comes_before_the_message_event_published_before_the_answer(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender, ws_connect(live_server, bob.token) as other:
        await sender.subscribe(room)
        await other.subscribe(room)
        await sender.send({"type": "send", "room": room, "body": "hello", "ref": "s1"})
        with trio.fail_after(10):
            await committed.wait()
        node.notify_committed(room)  # as another transaction in the room would: its rows are read back
        seen = await other.until("message")  # fanned out to every subscriber, the sender's session included
        assert seen["message"]["body"] == "hello"
        answer.set()
        first = await first_of(sender, {"ack", "message"})
        assert first["type"] == "ack" and first["ref"] == "s1", first
        following = await sender.until("message")
        assert following["seq"] == first["message"]["seq"] == seen["seq"]
        # Nothing held is lost or repeated, and the room goes on as before.
        await sender.send({"type": "send", "room": room, "body": "again", "ref": "s2"})
        assert (await sender.until_ref("s2"))["type"] == "ack"
        later = await sender.until("message")
        assert later["message"]["body"] == "again" and later["seq"] == seen["seq"] + 1


async def test_events_of_other_rooms_are_not_held_behind_a_send_in_flight(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    sending_room = (await make_group(client, alice))["id"]
    other_room = (await make_group(client, bob, [alice]))["id"]
    message_id = (await posted(client, bob, other_room, "first"))["id"]
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender:
        await sender.subscribe(sending_room)
        await sender.subscribe(other_room)
        await send_until_committed(sender, sending_room, committed)
        await edit(client, bob, other_room, message_id, "edited", None)  # goes through while alice's send waits
        # Alice's own send is still unanswered; the other room's event reaches her all the same.
        passed = await first_of(sender, {"ack", "message", "message_edited"})
        assert passed["type"] == "message_edited" and passed["room"] == other_room, passed
        answer.set()
        assert (await sender.until_ref("s1"))["type"] == "ack"


async def test_more_events_than_a_session_queues_during_one_commit_go_at_once_and_the_connection_stays(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    message_id = (await posted(client, bob, room, "edit me"))["id"]
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender:
        await sender.subscribe(room)
        await send_until_committed(sender, room, committed)
        for n in range(OUTBOUND + 2):
            await edit(client, bob, room, message_id, f"edit {n}", None)
        # Held while they fit in the session's queue; past that they went, all of them, in order.
        edits = await sender.collect("message_edited", OUTBOUND + 2)
        assert [event["message"]["body"] for event in edits] == [f"edit {n}" for n in range(OUTBOUND + 2)]
        answer.set()
        assert (await sender.until_ref("s1"))["type"] == "ack"
        assert (await sender.request({"type": "ping"}))["type"] == "pong"


async def test_events_held_for_a_room_left_meanwhile_are_dropped(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    message_id = (await posted(client, bob, room, "edit me"))["id"]
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender, ws_connect(live_server, bob.token) as other:
        await sender.subscribe(room)
        await other.subscribe(room)
        await send_until_committed(sender, room, committed)
        await edit(client, bob, room, message_id, "edited", other)  # alice's copy is held behind her send
        await sender.send({"type": "unsubscribe", "room": room, "ref": "u1"})
        assert (await sender.until_ref("u1"))["type"] == "unsubscribed"
        answer.set()
        assert (await sender.until_ref("s1"))["type"] == "ack"
        after = await events_until_pong(sender)
        assert [event for event in after if event.get("room") == room] == [], after


async def test_a_catch_up_waiting_for_the_slots_of_held_events_goes_on_once_they_are_written(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    other_room = (await make_group(client, bob, [alice]))["id"]
    message_id = (await posted(client, bob, room, "edit me"))["id"]
    for n in range(5):  # for alice to catch up on
        await posted(client, bob, other_room, f"old {n}")
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender, ws_connect(live_server, bob.token) as other:
        await sender.subscribe(room)
        await other.subscribe(room)
        await send_until_committed(sender, room, committed)
        for n in range(3):  # held behind alice's send: they take the slots a catch-up may fill
            await edit(client, bob, room, message_id, f"edit {n}", other)
        await sender.subscribe(other_room, since=0)  # its catch-up waits for room in alice's queue
        answer.set()
        caught_up = await sender.collect("message", 5 + 1)  # alice's own, and the other room's five
        assert [event["message"]["body"] for event in caught_up if event["room"] == other_room] == [
            f"old {n}" for n in range(5)]


@pytest.mark.parametrize("since", [None, "earlier"])
async def test_events_held_for_a_subscription_replaced_meanwhile_do_not_follow_the_new_subscribed(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch,
        since: str | None) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    first = await posted(client, bob, room, "edit me")
    committed, answer = answer_late(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as sender, ws_connect(live_server, bob.token) as other:
        await sender.subscribe(room)
        await other.subscribe(room)
        await send_until_committed(sender, room, committed)
        await edit(client, bob, room, first["id"], "edited", other)  # alice's copy is held behind her send
        # Subscribing again replaces the subscription: the new one starts after `since`, or after last_seq.
        again = await sender.subscribe(room, first["seq"] if since else None)
        answer.set()
        assert (await sender.until_ref("s1"))["type"] == "ack"
        stored = [event["seq"] for event in await events_until_pong(sender)
                  if "seq" in event and event["type"] != "read"]
        # The held events were the replaced subscription's: the new one's come in order after its start, once.
        start = first["seq"] if since else again["last_seq"]
        assert stored == list(range(start + 1, start + 1 + len(stored))), (again, stored)
        await send(client, bob, room, "after")
        assert (await sender.until("message"))["seq"] == start + len(stored) + 1
