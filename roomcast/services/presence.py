"""Who is online: as REST reports it, and as `presence` events announce it to a room."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..errors import DependencyUnavailable
from ..logs import log_event
from ..node import Node
from ..storage.models import User
from ..storage.users import UserSnapshot, get_tenant_users, get_user, user_badges
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
    return {"online": await node.database.read(user_badges, tenant, shown), "online_count": len(online)}


async def online_snapshots(node: Node, rooms: Mapping[int, tuple[str, list[int]]]) -> dict[int, JsonObject]:
    """`online_snapshot` of many rooms (room id -> its tenant and online ids) in one database read."""
    if not rooms:
        return {}
    limit = node.settings.presence_online_limit
    shown = {room_id: sorted(online)[:limit] for room_id, (_, online) in rooms.items()}
    wanted: defaultdict[str, set[int]] = defaultdict(set)  # tenant -> every id shown in one of its rooms
    for room_id, (tenant, _) in rooms.items():
        wanted[tenant].update(shown[room_id])

    def read(session: Session) -> dict[str, dict[int, JsonObject]]:
        return {tenant: {badge_id: badge for badge in user_badges(session, tenant, ids)
                         if isinstance(badge_id := badge["id"], int)}
                for tenant, ids in wanted.items() if ids}

    badges = await node.database.read(read)
    snapshots: dict[int, JsonObject] = {}
    for room_id, (tenant, online) in rooms.items():
        found = badges.get(tenant, {})
        snapshots[room_id] = {"online": [found[user_id] for user_id in shown[room_id] if user_id in found],
                              "online_count": len(online)}
    return snapshots


async def announce_presence(node: Node, room_id: int, user: User | UserSnapshot, status: str, online: list[int],
                            origin: str | None = None, *, snapshot: dict[str, Any] | None = None,
                            at: float | None = None) -> None:
    """Publish `user` `joined` or `left` to the room, with who is online now (best effort).

    What travels is the PROTOCOL §5 `presence` event plus `present` (is the user still
    online in the room) and `at` (when the presence write was made); each node's room
    actor folds these per window (actors/presence_fold.py). `snapshot`/`at`: the
    `online_snapshot` of `online` and its time, when the caller has them already.
    """
    at = time.time() if at is None else at  # just after the presence write: orders concurrent records
    try:
        if snapshot is None:
            snapshot = await online_snapshot(node, user.tenant, online)
        event = {"type": "presence", "room": room_id, "user": sender_to_wire(user), "status": status,
                 **snapshot, "present": user.id in online, "at": at}
        await node.rooms.publish_transient(room_id, event, origin=origin)
    except DependencyUnavailable as exc:  # best effort; subscriptions stand; the outage is logged once
        log_event(log, "presence.announce_failed", logging.DEBUG, room=room_id, error=str(exc))


class PresenceKeeper:
    """The `presence` actor: refreshes this node's entries and announces users whose node died."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.failing = False
        self.departures = 0

    async def run(self, ctx: ActorContext) -> None:
        presence = self.node.presence
        while True:
            await trio.sleep(presence.refresh_interval_s)
            try:
                for departure in await presence.refresh():
                    user = await self.node.database.read(get_user, departure.user_id)
                    if user is not None:
                        await announce_presence(self.node, departure.room_id, user, "left", departure.online)
                        self.departures += 1
            except DependencyUnavailable as exc:  # logged once per outage by its gateway; the next round catches up
                log_event(log, "presence.refresh_failed", logging.DEBUG, error=str(exc))
                self.failing = True
                continue
            except Exception as exc:  # not an outage: a bug; the next round tries again
                log_event(log, "presence.refresh_failed", logging.ERROR, error=repr(exc))
                self.failing = True
                continue
            if self.failing:
                log_event(log, "presence.refresh_recovered")
            self.failing = False

    def describe(self) -> dict[str, Any]:
        return {"failing": self.failing, "departures_announced": self.departures}


def ensure_presence_keeper(node: Node) -> None:
    """Start the node's `presence` actor if it is not running yet (the first session connects)."""
    node.actors.ensure("presence", lambda: _keeper_actor(node))


def _keeper_actor(node: Node) -> Actor:
    keeper = PresenceKeeper(node)
    return Actor("presence", keeper.run, describe_extra=keeper.describe)
