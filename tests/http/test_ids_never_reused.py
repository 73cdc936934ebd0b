"""An id, once handed out, is never handed out again (SQLite reused the largest after a delete)."""

from __future__ import annotations

from typing import Any

from tests.chat_helpers import body_of, make_group, send


async def test_a_deleted_rooms_id_and_its_message_ids_are_not_reused(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    older = await make_group(client, admin, name="older")
    await send(client, admin, older["id"])
    response = await client.put("/api/rooms/by-ref/course-1", headers=admin.headers,
                                json={"kind": "group", "name": "newest", "members": [{"user_id": admin.id}]})
    newest = await body_of(response, 201)
    sent = [await send(client, admin, newest["id"], f"m{i}") for i in range(3)]  # the newest messages

    deleted = await client.delete("/api/rooms/by-ref/course-1", headers=admin.headers)
    assert deleted.status_code == 204

    again = await make_group(client, admin, name="after the delete")
    assert again["id"] > newest["id"]
    later = await send(client, admin, again["id"])
    assert later["id"] > max(message["id"] for message in sent)
    # The old id names nothing now, rather than the new room.
    assert (await client.get(f"/api/rooms/{newest['id']}", headers=admin.headers)).status_code == 404
