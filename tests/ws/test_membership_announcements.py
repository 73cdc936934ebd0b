"""room_added / room_removed when the announcer comes late: the room may have changed or gone meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from roomcast.node import Node
from roomcast.services import announcements
from roomcast.services.announcements import MembershipChange, announce
from tests.chat_helpers import body_of, make_group
from tests.ws_client import ws_connect


async def test_a_change_announced_after_its_room_was_deleted_still_tells_who_left(
        live_server: str, client: Any, users: Any, node: Node) -> None:
    """A PUT replaced ann by ben; the room was deleted before the announcer read ben's view of it. The
    announcer used to assert on the missing room and crash, losing ann's room_removed with it."""
    service, ann, ben = await users.create("service"), await users.create("member"), await users.create("member")
    async with ws_connect(live_server, ann.token) as ann_ws, ws_connect(live_server, ben.token) as ben_ws:
        put = await client.put("/api/rooms/by-ref/course:1", headers=service.headers,
                               json={"kind": "group", "name": "Course", "members": [{"user_id": ann.id}]})
        room = (await body_of(put, 201))["id"]
        assert (await ann_ws.until("room_added"))["room"]["id"] == room
        deleted = await client.delete("/api/rooms/by-ref/course:1", headers=service.headers)
        assert deleted.status_code == 204
        assert await ann_ws.until("room_removed") == {"type": "room_removed", "room": room}

        # What the PUT that replaced ann by ben hands the announcer, reaching it only now.
        announce(node, MembershipChange(room, added=(ben.id,), removed=(ann.id,)))
        assert await ann_ws.until("room_removed") == {"type": "room_removed", "room": room}

        # The announcer goes on at once: a later change is announced without a restart's delay.
        other = await client.put("/api/rooms/by-ref/course:2", headers=service.headers,
                                 json={"kind": "group", "name": "Other", "members": [{"user_id": ben.id}]})
        other_room = (await body_of(other, 201))["id"]
        added = await ben_ws.until("room_added")
        assert added["room"]["id"] == other_room, "ben hears of no room that no longer exists"
    announcer = node.actors.root.child("announcer")
    assert announcer is not None and announcer.restarts == 0 and announcer.last_error is None


async def test_changes_announced_out_of_order_leave_the_user_where_the_last_change_put_them(
        live_server: str, client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """ann is added to a room, then removed, and the announcements go out the other way round (two nodes'
    announcers, or two writes of one node, each publish when they get to it). ann's sessions used to get
    room_removed, then room_added: they showed a room ann is not in. The older change is now dropped."""
    owner, ann = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner))["id"]
    held: list[MembershipChange] = []
    monkeypatch.setattr(announcements, "announce", lambda _node, change: held.append(change))
    async with ws_connect(live_server, ann.token) as ann_ws:
        await body_of(await client.post(f"/api/rooms/{room}/members", headers=owner.headers,
                                        json={"user_id": ann.id}), 201)
        assert (await client.delete(f"/api/rooms/{room}/members/{ann.id}", headers=owner.headers)).status_code == 204
        await body_of(await client.post(f"/api/rooms/{room}/members", headers=owner.headers,
                                        json={"user_id": ann.id}), 201)
        assert (await client.delete(f"/api/rooms/{room}/members/{ann.id}", headers=owner.headers)).status_code == 204
        added, removed, added_again, removed_again = held
        for change in (removed, added, removed_again, added_again):  # each removal overtakes its addition
            announce(node, change)
        told: list[str] = []
        with trio.move_on_after(1):  # whatever was coming has come by then
            while True:
                event = await ann_ws.event()
                if event["type"] in ("room_added", "room_removed"):
                    told.append(event["type"])
        assert told == ["room_removed", "room_removed"]
    assert (await body_of(await client.get("/api/rooms", headers=ann.headers), 200))["items"] == []
