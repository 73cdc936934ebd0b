"""Rooms: list, create, detail, settings, members, and provisioning by reference (PROTOCOL §3)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...services import rooms
from ...services.presence import room_presence
from ..auth import current_user, require_authentication, require_roles
from ..chat_schemas import (
    AddMemberIn,
    CreateRoomIn,
    PresenceOut,
    ProvisionRoomIn,
    RoomOut,
    RoomPage,
    RoomsQuery,
    UpdateRoomIn,
)
from ..context import current_node
from ..openapi import documents_no_content
from ..pagination import decode_keyset, encode_keyset
from ..schemas import ErrorOut
from ..validation import validate_request

blueprint = Blueprint("rooms", __name__, url_prefix="/api/rooms")
require_authentication(blueprint)

# Path ids go through the `id` converter (ids.py): out of range is a 404, not a database error.
ROOM = "<id:room_id>"
USER = "<id:user_id>"


@blueprint.get("")
@validate_querystring(RoomsQuery)
@document_response(RoomPage, 200)
@document_response(ErrorOut, 400)
async def list_rooms(query_args: RoomsQuery) -> dict:
    """The caller's rooms, most recent activity first, with `last_message` and `unread_count`.

    Activity is the last message sent (or the room's creation). `unread_count` counts the visible
    messages of others after the caller's read pointer. Pass `next_cursor` back as `cursor`.
    """
    after = decode_keyset(query_args.cursor, 2)
    items, next_position = await rooms.list_rooms(
        current_node(), current_user(), limit=query_args.limit,
        after=(after[0], after[1]) if after else None,
    )
    return {"items": items, "next_cursor": encode_keyset(*next_position) if next_position else None}


@blueprint.post("")
@validate_request(CreateRoomIn)
@document_response(RoomOut, 201)
@document_response(RoomOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def create_room(data: CreateRoomIn) -> tuple[dict, int]:
    """Open a direct chat (200 with the pair's existing room) or create a group or forum room.

    Group and forum members must be users of the caller's tenant (404 otherwise) that the contact
    policy lets the caller chat with (403 `policy_denied`; admins are exempt). The caller is the owner.
    """
    node, caller = current_node(), current_user()
    if data.kind == "direct":
        room, created = await rooms.open_direct_room(node, caller, data.members[0])
        return room, 201 if created else 200
    assert data.name is not None  # checked by CreateRoomIn
    room = await rooms.create_group_room(node, caller, kind=data.kind, name=data.name, topic=data.topic or "",
                                         member_ids=data.members)
    return room, 201


@blueprint.get(f"/{ROOM}")
@document_response(RoomOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def get_room(room_id: int) -> dict:
    """A room the caller is a member of.

    Admins may open any room of their tenant, to moderate it (their `unread_count` is 0 there).
    """
    return await rooms.get_room(current_node(), current_user(), room_id)


@blueprint.patch(f"/{ROOM}")
@validate_request(UpdateRoomIn)
@document_response(RoomOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def update_room(room_id: int, data: UpdateRoomIn) -> dict:
    """Change name, topic or is_active (owners, moderators, admins)."""
    return await rooms.update_room(current_node(), current_user(), room_id, name=data.name, topic=data.topic,
                                   is_active=data.is_active)


@blueprint.post(f"/{ROOM}/members")
@validate_request(AddMemberIn)
@document_response(RoomOut, 201)
@document_response(RoomOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def add_member(room_id: int, data: AddMemberIn) -> tuple[dict, int]:
    """Add a member (201), or change a member's room role (200); owners, moderators, admins.

    Only owners and admins make or unmake owners. The contact policy applies as for group creation.
    A direct room's members never change (400). Stores a `room_updated` event when something changed.
    """
    room, added = await rooms.add_member(current_node(), current_user(), room_id, data.user_id, data.room_role)
    return room, 201 if added else 200


@blueprint.delete(f"/{ROOM}/members/{USER}")
@documents_no_content()
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def remove_member(room_id: int, user_id: int) -> tuple[str, int]:
    """Remove a member (owners, moderators, admins), or leave (a member removing itself).

    Moderators cannot remove owners. A direct room's members never change (400).
    """
    await rooms.remove_member(current_node(), current_user(), room_id, user_id)
    return "", 204


@blueprint.put("/by-ref/<external_ref>")
@require_roles("admin", "service")
@validate_request(ProvisionRoomIn)
@document_response(RoomOut, 201)
@document_response(RoomOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def provision_room(external_ref: str, data: ProvisionRoomIn) -> tuple[dict, int]:
    """Create (201) or update (200) the room with this reference; its members become exactly `members`.

    For integrations (admin or service). `kind` is `group` or `forum`; `topic` and `is_active` are kept
    when omitted. A PUT that changes nothing stores no event, so repeating it is harmless.
    """
    room, created = await rooms.provision_room(
        current_node(), current_user(), external_ref, kind=data.kind, name=data.name, topic=data.topic,
        is_active=data.is_active, members={member.user_id: member.room_role for member in data.members},
    )
    return room, 201 if created else 200


@blueprint.delete("/by-ref/<external_ref>")
@require_roles("admin", "service")
@documents_no_content()
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def unprovision_room(external_ref: str) -> tuple[str, int]:
    """Delete the room with this reference, with its messages."""
    await rooms.unprovision_room(current_node(), current_user(), external_ref)
    return "", 204


@blueprint.get(f"/{ROOM}/presence")
@document_response(PresenceOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def presence(room_id: int) -> dict:
    """The users subscribed to the room over /ws right now, on any node."""
    return {"online": await room_presence(current_node(), current_user(), room_id)}
