"""Who is online, as REST reports it: in a room, and for any list of users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ..node import Node
from ..storage.models import User
from ..storage.users import get_tenant_users
from ..wire import user_to_wire
from .access import open_room


async def users_with_presence(node: Node, users: Sequence[User]) -> list[dict[str, Any]]:
    """User objects with `online` filled in from presence (one lookup for the lot)."""
    online = await node.presence.online_users(user.id for user in users)
    return [user_to_wire(user, online=user.id in online) for user in users]


async def room_presence(node: Node, caller: User, room_id: int) -> list[dict[str, Any]]:
    """The users subscribed to the room right now, on any node (members and the tenant's admins ask)."""
    await node.database.read(lambda session: open_room(session, caller, room_id))
    online_ids = await node.presence.online_in(room_id)

    def load(session: Session) -> list[User]:
        return get_tenant_users(session, caller.tenant, online_ids)

    return [user_to_wire(user, online=True) for user in await node.database.read(load)]
