"""Reads from a streaming replica: served there when it has what the client has seen, else by the primary.

A real primary and replica (tests/replication.sh). Lag is real too: replay is paused on the replica
(`pg_wal_replay_pause()`), so it stays at what it had while the primary takes new writes. Which
engine answered is read from the replica's counters (what /metrics reports).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roomcast.node import Node
from roomcast.services.rooms import list_rooms
from roomcast.services.users import list_contacts
from roomcast.storage.models import Room
from roomcast.storage.replica import ReadReplica
from roomcast.storage.users import UserSnapshot
from tests.chat_helpers import body_of, history, make_group, room_of, send
from tests.helpers import eventually
from tests.replica.conftest import Pair
from tests.ws_client import ws_connect


def replica_of(node: Node) -> ReadReplica:
    assert node.database.replica is not None
    return node.database.replica


async def writes_replayed(node: Node, *user_ids: int) -> None:
    """Wait until the replica serves these users again: their writes through the node are on it."""
    replica = replica_of(node)
    await eventually(lambda: all(replica.refusal(user_id) is None for user_id in user_ids), timeout=30)


def bodies(page: dict[str, Any]) -> list[str]:
    return [message["body"] for message in page["items"]]


@pytest.fixture
def replica_settings() -> dict[str, Any]:
    # No recent events kept by room actors: a replay reads the database (the replica, when it may).
    return {"room_replay_buffer": 0}


async def test_history_room_lists_and_contacts_come_from_the_replica(node: Node, client: Any, users: Any) -> None:
    replica = replica_of(node)
    alice, bob = await users.create(), await users.create()
    room = await make_group(client, alice, [bob])
    for n in range(3):
        await send(client, alice, room["id"], f"m{n}")
    await writes_replayed(node, alice.id)
    served, fallbacks = replica.served, sum(replica.fallbacks.values())

    assert bodies(await history(client, alice, room["id"])) == ["m0", "m1", "m2"]
    assert bodies(await history(client, bob, room["id"], after=1)) == ["m1", "m2"]
    listed = await body_of(await client.get("/api/rooms", headers=bob.headers), 200)
    assert [(item["id"], item["last_message"]["body"]) for item in listed["items"]] == [(room["id"], "m2")]
    assert (await room_of(client, bob, room["id"]))["last_message"]["body"] == "m2"
    contacts = await body_of(await client.get("/api/contacts", headers=bob.headers), 200)
    assert alice.id in [user["id"] for user in contacts["items"]]
    assert (await body_of(await client.get(f"/api/users/{alice.id}", headers=bob.headers), 200))["id"] == alice.id

    assert (replica.served - served, sum(replica.fallbacks.values()) - fallbacks) == (6, 0)
    admin = await users.create("admin")
    tree = await body_of(await client.get("/api/admin/actors", headers=admin.headers), 200)
    prober = next(child for child in tree["tree"]["children"] if child["name"] == "read_replica")
    assert (prober["state"], prober["replica"], prober["served"]) == ("running", "ok", replica.served)


async def test_a_lagging_replica_never_shows_a_client_less_than_it_has_seen(
        node: Node, client: Any, users: Any, pair: Pair, live_server: str) -> None:
    replica = replica_of(node)
    alice, bob = await users.create(), await users.create()
    room = await make_group(client, alice, [bob])
    await send(client, alice, room["id"], "before the pause")  # seq 1
    await writes_replayed(node, alice.id)
    await pair.pause()
    second = await send(client, alice, room["id"], "second")  # seq 2 and 3: only on the primary
    await send(client, alice, room["id"], "third")
    served = replica.served

    # Alice's next read sees her own sends: the replica has not replayed them, the primary answers.
    own_write = replica.fallbacks["own_write"]
    assert bodies(await history(client, alice, room["id"])) == ["before the pause", "second", "third"]
    listed = await body_of(await client.get("/api/rooms", headers=alice.headers), 200)
    assert listed["items"][0]["last_message"]["body"] == "third"
    assert replica.fallbacks["own_write"] == own_write + 2

    # Bob has seen nothing newer: the replica may answer him, and does, from what it has.
    assert bodies(await history(client, bob, room["id"])) == ["before the pause"]
    assert replica.served == served + 1

    # Bob has seen seq 2 (live): a page after it is beyond the replica, so the primary gives it.
    behind = replica.fallbacks["behind"]
    assert bodies(await history(client, bob, room["id"], after=second["seq"])) == ["third"]
    assert bodies(await history(client, bob, room["id"], before=second["seq"] + 1)) == ["before the pause", "second"]
    assert replica.fallbacks["behind"] == behind + 2

    # A subscription resumed from seq 1 is replayed up to what the room has, though the replica lacks it.
    async with ws_connect(live_server, bob.token) as ws:
        await ws.subscribe(room["id"], since=1)
        replayed = await ws.collect("message", 2)
    assert [event["message"]["body"] for event in replayed] == ["second", "third"]
    assert replica.fallbacks["behind"] >= behind + 3
    assert replica.served == served + 1

    # Replay resumed: once the replica has Alice's sends, both read from it again, and see them.
    await pair.resume()
    await writes_replayed(node, alice.id)
    served = replica.served
    assert bodies(await history(client, alice, room["id"])) == ["before the pause", "second", "third"]
    assert bodies(await history(client, bob, room["id"], after=second["seq"])) == ["third"]
    assert replica.served == served + 2


async def test_what_the_replica_refuses_for_want_of_a_change_the_primary_grants(
        node: Node, client: Any, users: Any, pair: Pair) -> None:
    """A room made, or a member added, after the replica's state: not found or not a member there."""
    replica = replica_of(node)
    alice, bob, carol = await users.create(), await users.create(), await users.create()
    await pair.caught_up()
    await eventually(lambda: replica.state == "ok")
    await pair.pause()
    room = await make_group(client, alice, [bob])
    await send(client, alice, room["id"], "hello")
    refused = replica.fallbacks["refused"]
    # Bob wrote nothing: his reads may go to the replica, which has neither the room nor his membership.
    assert (await room_of(client, bob, room["id"]))["id"] == room["id"]
    assert bodies(await history(client, bob, room["id"])) == ["hello"]
    # Carol is not a member on the primary either: the primary's refusal is the answer.
    response = await client.get(f"/api/rooms/{room['id']}/messages", headers=carol.headers)
    assert response.status_code == 403
    assert replica.fallbacks["refused"] == refused + 3


async def test_a_cursor_beyond_the_replica_is_served_by_the_primary(
        node: Node, client: Any, users: Any, pair: Pair) -> None:
    replica = replica_of(node)
    alice, bob = await users.create(), await users.create()
    rooms = [await make_group(client, alice, [bob], name=f"r{n}") for n in range(3)]  # r2 the most recent
    await writes_replayed(node, alice.id)
    await pair.pause()
    # r0 becomes the most recent on the primary only. A first page the primary served (limit 1) ends
    # at r0, at its new moment; the next page must not come from a replica that has r0 where it was.
    await send(client, alice, rooms[0]["id"], "r0 moves up")
    moved = await node.database.read(lambda session: session.get(Room, rooms[0]["id"]).last_activity_at)
    cursor = ((moved - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1), rooms[0]["id"])
    caller = UserSnapshot(bob.id, bob.tenant, bob.username, bob.username, bob.role)  # no writes: no fence
    behind = replica.fallbacks["behind"]
    page, _ = await list_rooms(node, caller, limit=10, after=cursor)
    assert [room["id"] for room in page] == [rooms[2]["id"], rooms[1]["id"]]  # r0 not listed twice
    assert replica.fallbacks["behind"] == behind + 1

    # A contacts cursor naming a user the replica does not know yet.
    newcomer = await users.create()
    contacts, _ = await list_contacts(node, caller, after_id=newcomer.id, limit=10)
    assert contacts == []
    assert replica.fallbacks["behind"] == behind + 2
