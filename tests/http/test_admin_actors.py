"""GET /api/admin/actors (PROTOCOL §6): the live supervision tree, for admins only."""

from __future__ import annotations

from typing import Any

from roomcast.node import Node
from tests.actors.helpers import Recorder, commit_events, create_rooms


def find(tree: dict[str, Any], path: str) -> dict[str, Any]:
    if tree["path"] == path:
        return tree
    for child in tree.get("children", []):
        try:
            return find(child, path)
        except KeyError:
            pass
    raise KeyError(path)


async def test_without_a_token_it_is_401(client: Any) -> None:
    response = await client.get("/api/admin/actors")
    assert response.status_code == 401


async def test_a_non_admin_gets_403(client: Any, users: Any) -> None:
    member = await users.create("member")
    response = await client.get("/api/admin/actors", headers=member.headers)
    assert response.status_code == 403
    assert (await response.get_json())["error"]["code"] == "forbidden"


async def test_an_admin_sees_the_tree_with_room_actors(client: Any, users: Any, node: Node) -> None:
    admin = await users.create("admin")
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    await commit_events(node, room, 3)
    await subscriber.wait_for(3)
    await commit_events(node, room, 2, notify=False, published=True)  # committed, not yet delivered

    response = await client.get("/api/admin/actors", headers=admin.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["stream_backend"] == "memory"
    tree = body["tree"]
    assert tree["path"] == "roomcast" and tree["state"] == "running"
    # The services' actors (announcer, presence) start on first use; these are there from the start
    # (`stats` with the app: its rates need samples from the start).
    on_sqlite = {"wal_checkpointer"} if node.database.is_sqlite else set()  # a SQLite file's WAL
    assert {child["name"] for child in tree["children"]} == {"stream_reader", "outbox_relay", "notices", "transients",
                                                             "rooms", "stats"} | on_sqlite
    reader = find(tree, "roomcast/stream_reader")
    assert reader["rooms"] == 1 and reader["connected"] is True
    actor = find(tree, f"roomcast/rooms/room:{room}")
    assert actor["state"] == "running" and actor["restarts"] == 0 and actor["last_error"] is None
    assert actor["subscribers"] == 1 and actor["last_seq"] == 3
    assert actor["committed_seq"] == 5 and actor["lag"] == 2
    assert actor["stream_position"] is not None
    assert isinstance(actor["uptime_s"], float)
