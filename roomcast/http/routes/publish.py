"""Server-side publish for integrations: events to a room's subscribers, broadcasts to a tenant (PROTOCOL §4)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response

from ...services import publish
from ...services.publish import PUBLISHER_ROLES
from ..auth import current_user, require_authentication, require_roles
from ..chat_schemas import AcceptedOut, BroadcastIn, RoomEventIn
from ..context import current_node
from ..schemas import ErrorOut
from ..validation import validate_request
from .rooms import ROOM

blueprint = Blueprint("publish", __name__, url_prefix="/api")
require_authentication(blueprint)

_ACCEPTED = {"accepted": True}


@blueprint.post(f"/rooms/{ROOM}/events")
@require_roles(*PUBLISHER_ROLES)
@validate_request(RoomEventIn)
@document_response(AcceptedOut, 202)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 503)
async def room_event(room_id: int, data: RoomEventIn) -> tuple[dict, int]:
    """Send `{"type": "event", "room", "name", "data"}` to the room's subscribers on every node (admin or service).

    Not stored, no `seq`: subscribers connected now get it, no one later. The caller need not be a
    member. A room of another tenant is a 404; an inactive room a 400 `room_inactive`.
    """
    await publish.publish_room_event(current_node(), current_user(), room_id, data.name, data.data)
    return _ACCEPTED, 202


@blueprint.post("/broadcast")
@require_roles(*PUBLISHER_ROLES)
@validate_request(BroadcastIn)
@document_response(AcceptedOut, 202)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 503)
async def broadcast(data: BroadcastIn) -> tuple[dict, int]:
    """Send `{"type": "broadcast", "name", "data"}` to connected sessions of the caller's tenant (admin or service).

    Every connection, on every node, of a user who has one of `roles` or is one of `user_ids`;
    with neither, every connection of the tenant. Not stored: who is not connected misses it.
    Unknown user ids and users of other tenants are simply not reached.
    """
    await publish.broadcast(current_node(), current_user(), roles=data.roles, user_ids=data.user_ids,
                            name=data.name, data=data.data)
    return _ACCEPTED, 202
