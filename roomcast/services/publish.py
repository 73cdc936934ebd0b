"""Server-side publish: events from an integration to a room's subscribers, and broadcasts to a tenant.

Neither is stored nor carries a `seq`: they reach the sessions connected when they pass, on
every node, and no one later. A room event travels as typing does, on the room's stream
(`RoomHub.publish_transient`), so every node with subscribers of the room delivers it; a
broadcast travels on the notices stream with its audience (tenant, roles, user ids), and each
node hands it to its own sessions in that audience (`NoticesHub`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from ..actors.notices import Audience
from ..errors import BadRequest, NotFound, TooLarge
from ..node import Node
from ..storage.rooms import load_room
from ..storage.users import UserSnapshot
from ..wire import JsonValue, encode_json
from .text import text_problem

PUBLISHER_ROLES = ("admin", "service")
MAX_EVENT_NAME_CHARS = 64
MAX_EVENT_DATA_BYTES = 64 << 10
MAX_BROADCAST_USER_IDS = 1000


def require_sendable(name: str, data: JsonValue) -> None:
    """`name` and `data` as every client can receive them: 400, or 413 `too_large` past 64 KiB."""
    if (problem := text_problem(name)) is not None:
        raise BadRequest(f"name {problem}", details={"field": "name"})
    try:
        size = len(encode_json(data))
    except ValueError as exc:
        raise BadRequest(f"data cannot be sent as JSON: {exc}", details={"field": "data"}) from None
    if size > MAX_EVENT_DATA_BYTES:
        raise TooLarge(f"data is {size} bytes encoded; at most {MAX_EVENT_DATA_BYTES}",
                       details={"field": "data", "limit": MAX_EVENT_DATA_BYTES})


async def publish_room_event(node: Node, caller: UserSnapshot, room_id: int, name: str, data: JsonValue) -> None:
    """Deliver `{"type": "event", "room", "name", "data"}` to the room's subscribers on every node.

    404 for a room that is absent or in another tenant; 400 `room_inactive` for an inactive
    room (it takes no new events, as it takes no messages). The caller need not be a member.
    """
    require_sendable(name, data)

    def check(session: Session) -> None:
        room, _ = load_room(session, caller.tenant, room_id, caller.id)
        if room is None:
            raise NotFound("no such room")
        if not room.is_active:
            raise BadRequest("the room is inactive", code="room_inactive")

    await node.database.read(check)
    # An integration may publish through a node none of the room's subscribers is on: no actor
    # is started for it there; the nodes that have subscribers read it from the room's stream.
    event = {"type": "event", "room": room_id, "name": name, "data": data}
    await node.rooms.publish_transient(room_id, event, start_actor=False)


async def broadcast(node: Node, caller: UserSnapshot, *, roles: Sequence[str] | None, user_ids: Sequence[int] | None,
                    name: str, data: JsonValue) -> None:
    """Deliver `{"type": "broadcast", "name", "data"}` to the caller's tenant's sessions, on every node.

    The sessions whose user has one of `roles` or is one of `user_ids`; with neither given (None),
    every session of the tenant. Given but both empty selects no one: a 400, so that a list that
    came out empty never turns into "everyone". Users of other tenants are never reached.
    """
    require_sendable(name, data)
    if (roles is not None or user_ids is not None) and not roles and not user_ids:
        raise BadRequest("roles and user_ids select no one; omit both to reach everyone in the tenant",
                         details={"fields": ["roles", "user_ids"]})
    audience = Audience(tuple(dict.fromkeys(user_ids or ())), caller.tenant, tuple(dict.fromkeys(roles or ())))
    await node.notices.publish(audience, {"type": "broadcast", "name": name, "data": data})
