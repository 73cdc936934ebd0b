"""The online snapshots `subscribed` and `presence` events carry: badges from the user cache first."""

from __future__ import annotations

from typing import Any

from roomcast.node import Node
from roomcast.services.presence import online_snapshot, online_snapshots
from roomcast.storage.users import user_access


async def test_online_badges_come_from_the_user_cache_and_only_the_rest_from_the_database(
        node: Node, users: Any, query_guard: Any) -> None:
    cached = [await users.create("member", display_name=f"Cached {n}") for n in range(3)]
    uncached = await users.create("member", display_name="Read")
    elsewhere = await users.create("member", tenant="other", display_name="Other tenant")
    for user in [*cached, elsewhere]:
        await node.user_cache.get(user.id, lambda user_id: node.database.read(user_access, user_id))

    before = query_guard.statements
    snapshot = await online_snapshot(node, "default", [user.id for user in reversed(cached)])
    assert query_guard.statements == before  # every badge was cached: no database read
    assert snapshot == {"online": [{"id": user.id, "username": user.username, "display_name": f"Cached {n}"}
                                   for n, user in enumerate(cached)], "online_count": 3}

    # A user not cached is read; one cached under another tenant is not this tenant's to show.
    [mixed] = (await online_snapshots(node, {7: ("default", [cached[0].id, uncached.id, elsewhere.id])})).values()
    assert query_guard.statements > before
    assert [badge["display_name"] for badge in mixed["online"]] == ["Cached 0", "Read"]
    assert mixed["online_count"] == 3
