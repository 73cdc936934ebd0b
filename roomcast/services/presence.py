"""Who is online: as REST reports it, and the snapshots `presence` events and `subscribed` carry."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from ..node import Node
from ..storage.models import User
from ..storage.users import UserSnapshot, get_tenant_users, user_badges
from ..wire import JsonObject, sender_to_wire, user_to_wire
from .access import open_room

log = logging.getLogger("roomcast.presence")


async def users_with_presence(node: Node, users: Sequence[User | UserSnapshot]) -> list[dict[str, Any]]:
    """User objects with `online` filled in from presence (one lookup for the lot)."""
    online = await node.presence.online_users(user.id for user in users)
    return [user_to_wire(user, online=user.id in online) for user in users]


async def room_presence(node: Node, caller: UserSnapshot, room_id: int) -> list[dict[str, Any]]:
    """The users subscribed to the room right now, on any node (members and the tenant's admins ask)."""
    await node.database.read(lambda session: open_room(session, caller, room_id))
    online_ids = await node.presence.online_in(room_id)

    def load(session: Session) -> list[User]:
        return get_tenant_users(session, caller.tenant, online_ids)

    return [user_to_wire(user, online=True) for user in await node.database.read(load)]


async def online_snapshot(node: Node, tenant: str, online: list[int]) -> dict[str, Any]:
    """`online` (badges of the first `presence_online_limit` ids) and `online_count`, as events carry them."""
    shown = sorted(online)[:node.settings.presence_online_limit]
    found = (await _badges(node, {tenant: set(shown)})).get(tenant, {})
    return {"online": [found[user_id] for user_id in shown if user_id in found], "online_count": len(online)}


async def _badges(node: Node, wanted: Mapping[str, set[int]]) -> dict[str, dict[int, JsonObject]]:
    """The badges of these users of each tenant, by id: from the node's user cache where it holds
    them (a join storm's online users all connected here), the rest in one database read."""
    badges: dict[str, dict[int, JsonObject]] = {}
    missing: dict[str, set[int]] = {}
    for tenant, ids in wanted.items():
        found = badges[tenant] = {}
        for user_id in ids:
            cached = node.user_cache.peek(user_id)
            if cached is not None and cached.user.tenant == tenant:
                found[user_id] = sender_to_wire(cached.user)  # a badge: what user_badges reads
            else:
                missing.setdefault(tenant, set()).add(user_id)
    if missing:
        def read(session: Session) -> dict[str, list[dict[str, object]]]:
            return {tenant: user_badges(session, tenant, ids) for tenant, ids in missing.items()}

        for tenant, rows in (await node.database.read(read)).items():
            for badge in rows:
                if isinstance(badge_id := badge["id"], int):
                    badges[tenant][badge_id] = badge
    return badges


async def online_snapshots(node: Node, rooms: Mapping[int, tuple[str, list[int]]]) -> dict[int, JsonObject]:
    """`online_snapshot` of many rooms (room id -> its tenant and online ids) in one database read."""
    if not rooms:
        return {}
    limit = node.settings.presence_online_limit
    shown = {room_id: sorted(online)[:limit] for room_id, (_, online) in rooms.items()}
    wanted: defaultdict[str, set[int]] = defaultdict(set)  # tenant -> every id shown in one of its rooms
    for room_id, (tenant, _) in rooms.items():
        wanted[tenant].update(shown[room_id])

    badges = await _badges(node, wanted)
    snapshots: dict[int, JsonObject] = {}
    for room_id, (tenant, online) in rooms.items():
        found = badges.get(tenant, {})
        snapshots[room_id] = {"online": [found[user_id] for user_id in shown[room_id] if user_id in found],
                              "online_count": len(online)}
    return snapshots
