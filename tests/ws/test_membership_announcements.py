"""room_added / room_removed when the announcer comes late: the room may have changed or gone meanwhile."""

from __future__ import annotations

from typing import Any

from roomcast.node import Node
from roomcast.services.announcements import MembershipChange, announce
from tests.chat_helpers import body_of
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
