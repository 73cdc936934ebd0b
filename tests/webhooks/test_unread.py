"""`message.unread` (PROTOCOL §6): offline members who leave messages unread, notified once per window.

Time is moved by passing `now` to `scan_unread` (the `unread` actor passes the clock's); the
actor itself is tested with a short `notify_after_s`. A real receiver on loopback gets the events.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import func, select

from roomcast.node import Node, open_node
from roomcast.services.unread import ensure_unread_scanner, scan_unread
from roomcast.storage.models import Membership, WebhookDelivery
from roomcast.timestamps import utcnow
from tests.chat_helpers import body_of, make_group, send
from tests.helpers import eventually
from tests.webhooks.conftest import FAST, SECRET
from tests.webhooks.receiver import Receiver
from tests.ws_client import ws_connect

AFTER = timedelta(seconds=61)  # past the default notify_after_s (60)


@pytest.fixture
def unread_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(receiver: Receiver, unread_settings: dict[str, Any]) -> dict[str, Any]:
    return {"webhooks": [{"url": receiver.url, "secret": SECRET, "events": ["message.unread"]}], **FAST,
            **unread_settings}


def later() -> datetime:
    return utcnow() + AFTER


async def notified_seq(node: Node, room_id: int, user_id: int) -> int:
    return await node.database.read(lambda session: session.scalar(
        select(Membership.notified_seq).where(Membership.room_id == room_id, Membership.user_id == user_id)))


async def test_an_offline_member_is_notified_once_with_every_unread_message_folded_in(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann, [bob])
    first = await send(client, ann, room["id"], "one")
    gone = await send(client, ann, room["id"], "deleted before anyone read it")
    assert (await client.delete(f"/api/rooms/{room['id']}/messages/{gone['id']}",
                                headers=ann.headers)).status_code == 204
    last = await send(client, ann, room["id"], "three")
    await send(client, bob, room["id"], "bob's own")  # never counted for bob; unread by ann, who sent three before

    assert await scan_unread(node, utcnow()) == 0  # not yet: the window has not ended
    queued = await scan_unread(node, later())
    assert queued == 2  # bob for ann's messages, ann for bob's
    await eventually(lambda: len(receiver.requests) == 2)
    bodies = {body["user"]: body for body in receiver.bodies("message.unread")}
    for request in receiver.requests:
        assert request.signed_with(SECRET)
    to_bob = bodies[bob.id]
    assert to_bob["room"] == room["id"] and to_bob["tenant"] == "default" and to_bob["username"] == bob.username
    assert (to_bob["count"], to_bob["first_seq"], to_bob["last_seq"]) == (2, first["seq"], last["seq"])
    assert to_bob["first_at"] == first["created_at"] and "seq" not in to_bob
    assert bodies[ann.id]["count"] == 1 and bodies[ann.id]["first_seq"] == last["seq"] + 1

    assert await scan_unread(node, later()) == 0  # once per window
    await trio.sleep(0.2)
    assert len(receiver.requests) == 2


async def test_a_second_batch_after_the_notification_gives_a_second_one_with_only_the_new_messages(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann, [bob])
    await send(client, ann, room["id"], "one")
    assert await scan_unread(node, later()) == 1
    new = [await send(client, ann, room["id"], f"new {i}") for i in range(3)]
    assert await scan_unread(node, utcnow()) == 0
    assert await scan_unread(node, later()) == 1
    await eventually(lambda: len(receiver.requests) == 2)
    second = receiver.bodies("message.unread")[1]
    assert (second["count"], second["first_seq"], second["last_seq"]) == (3, new[0]["seq"], new[-1]["seq"])
    assert receiver.bodies()[0]["id"] != second["id"]


async def test_a_member_who_read_in_time_is_not_notified(node: Node, client: Any, users: Any,
                                                         receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob, carol = await users.create("admin"), await users.create("member"), await users.create("member")
    room = await make_group(client, ann, [bob, carol])
    await send(client, ann, room["id"], "one")
    message = await send(client, ann, room["id"], "two")
    assert (await client.post(f"/api/rooms/{room['id']}/read", headers=bob.headers,
                              json={"seq": message["seq"]})).status_code == 204
    assert (await client.post(f"/api/rooms/{room['id']}/read", headers=carol.headers,
                              json={"seq": message["seq"] - 1})).status_code == 204
    assert await scan_unread(node, later()) == 1
    await eventually(lambda: len(receiver.requests) == 1)
    body = receiver.bodies()[0]
    assert body["user"] == carol.id and body["count"] == 1 and body["first_seq"] == message["seq"]


async def test_a_member_with_a_live_connection_is_not_notified(node: Node, client: Any, users: Any,
                                                               receiver: Receiver, live_server: str,
                                                               nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob, carol = await users.create("admin"), await users.create("member"), await users.create("member")
    room = await make_group(client, ann, [bob, carol])
    async with ws_connect(live_server, bob.token):  # connected, not even subscribed to the room
        message = await send(client, ann, room["id"], "hello")
        assert await scan_unread(node, later()) == 1
    await eventually(lambda: len(receiver.requests) == 1)
    assert [body["user"] for body in receiver.bodies()] == [carol.id]
    # Passed over for good: the message was in front of bob when its window ended.
    assert await notified_seq(node, room["id"], bob.id) == message["seq"]
    assert await scan_unread(node, later()) == 0


async def test_nothing_is_read_or_marked_when_no_target_wants_message_unread(
        node: Node, client: Any, users: Any, receiver: Receiver) -> None:
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann, [bob])
    await send(client, ann, room["id"], "one")
    hook = await body_of(await client.post("/api/webhooks", headers=ann.headers,
                                           json={"url": receiver.url, "secret": "s", "events": ["message.created"]}),
                         201)
    async with open_node(node.settings.model_copy(update={"webhooks": []}), migrate=False) as bare:
        assert await scan_unread(bare, later()) == 0
        assert await notified_seq(node, room["id"], bob.id) == 0
        # A tenant's own target that wants it is enough.
        await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=ann.headers,
                                         json={"events": ["message.unread"]}), 200)
        assert await scan_unread(bare, later()) == 1


@pytest.mark.parametrize("unread_settings", [{"notify_after_s": 0.3, "notify_poll_s": 0.05}])
async def test_the_unread_actor_notifies_by_itself(node: Node, client: Any, users: Any, receiver: Receiver,
                                                   nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann, [bob])
    sent = [await send(client, ann, room["id"], f"m{i}") for i in range(2)]
    ensure_unread_scanner(node)
    await eventually(lambda: len(receiver.requests) >= 1, timeout=30)
    body = receiver.bodies()[0]
    assert (body["user"], body["count"], body["last_seq"]) == (bob.id, 2, sent[-1]["seq"])
    await trio.sleep(0.5)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("db_backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_two_nodes_sharing_postgresql_notify_once(node: Node, client: Any, users: Any, receiver: Receiver,
                                                        nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann = await users.create("admin")
    members = [await users.create("member") for _ in range(8)]
    rooms = [await make_group(client, ann, members, name=f"r{i}") for i in range(3)]
    for room in rooms:
        await send(client, ann, room["id"], "hello all")
    total = len(rooms) * len(members)
    counts: list[int] = []

    async def scan(on: Node, now: datetime) -> None:
        counts.append(await scan_unread(on, now))

    async with open_node(node.settings, migrate=False) as other:
        for _ in range(3):  # the two nodes race on every member, several times
            now = later()
            async with trio.open_nursery() as scans:
                for on in (node, other, node, other):
                    scans.start_soon(scan, on, now)
    assert sum(counts) == total

    def events() -> dict[str, tuple[int, int]]:
        # By event id: delivery is at least once, so an attempt that timed out, or that `other` was making
        # when it closed, is sent again as the same event; notifying once means one event per member and room.
        return {body["id"]: (body["room"], body["user"]) for body in receiver.bodies()}

    try:
        await eventually(lambda: len(events()) >= total, timeout=30)
    except trio.TooSlowError:  # say where the missing ones are, should this ever fail again
        rows = await node.database.read(lambda session: session.execute(
            select(WebhookDelivery.event_id, WebhookDelivery.status, WebhookDelivery.attempts,
                   WebhookDelivery.lease_owner, WebhookDelivery.lease_until, WebhookDelivery.next_attempt_at,
                   WebhookDelivery.last_status_code, WebhookDelivery.last_error)
            .where(WebhookDelivery.event == "message.unread")).all())
        missing = [row for row in rows if row[0] not in events()]
        raise AssertionError(f"{len(events())} of {total} events arrived; the others' deliveries "
                             f"(now {utcnow()}): {missing}") from None
    await trio.sleep(0.3)
    assert len(events()) == total == len(set(events().values()))
    queued = await node.database.read(lambda session: session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.event == "message.unread")))
    assert queued == total


@pytest.mark.parametrize("db_backend", ["sqlite"])
@pytest.mark.parametrize("unread_settings", [{"notify_after_s": 0.2, "notify_poll_s": 0.05}])
async def test_the_unread_actor_waits_out_a_database_outage(node: Node, client: Any, users: Any,
                                                            receiver: Receiver, nursery: trio.Nursery,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.actors.faults import DatabaseOutage

    await receiver.start(nursery)
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann, [bob])
    await send(client, ann, room["id"], "while the database goes away")
    outage = DatabaseOutage(node.database, monkeypatch)
    outage.down = True
    actor = ensure_unread_scanner(node)
    await eventually(lambda: outage.failed_calls >= 4)
    assert actor.restarts == 0 and not receiver.requests
    outage.down = False
    await eventually(lambda: len(receiver.requests) == 1, timeout=30)
    assert receiver.bodies()[0]["user"] == bob.id and actor.restarts == 0


async def test_a_member_added_later_is_not_notified_of_what_came_before(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann, bob = await users.create("admin"), await users.create("member")
    room = await make_group(client, ann)
    await send(client, ann, room["id"], "before bob")
    await body_of(await client.post(f"/api/rooms/{room['id']}/members", headers=ann.headers,
                                    json={"user_id": bob.id}), 201)
    assert await scan_unread(node, later()) == 0
    after = await send(client, ann, room["id"], "after bob")
    assert await scan_unread(node, later()) == 1
    await eventually(lambda: len(receiver.requests) == 1)
    body = receiver.bodies()[0]
    assert (body["user"], body["count"], body["first_seq"]) == (bob.id, 1, after["seq"])
