"""Messages: history, send, edit, delete, and the read pointer (PROTOCOL §4)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...node import Node
from ...services import messaging
from ...services.users import UserSnapshot
from ...wire import JsonObject
from ..auth import current_user, require_authentication
from ..chat_schemas import EditMessageIn, HistoryQuery, MessageOut, MessagePage, ReadIn, SendMessageIn
from ..context import current_node
from ..openapi import documents_no_content
from ..schemas import ErrorOut
from ..validation import validate_request
from .rooms import ROOM

blueprint = Blueprint("messages", __name__, url_prefix="/api/rooms")
require_authentication(blueprint)

MESSAGE = "<id:message_id>"
SEND = f"/{ROOM}/messages"
SEND_RULE = f"{blueprint.url_prefix}{SEND}"  # the URL rule, as metrics and the access log name it


@blueprint.get(f"/{ROOM}/messages")
@validate_querystring(HistoryQuery)
@document_response(MessagePage, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def history(room_id: int, query_args: HistoryQuery) -> dict:
    """Visible messages, oldest first: the newest page, or the page before/after a seq.

    Deleted messages are not listed. `has_more` says whether older messages exist (no cursor or
    `before`) or newer ones (`after`). `before` and `after` together are a 400.
    """
    items, has_more = await messaging.list_messages(current_node(), current_user(), room_id,
                                                    limit=query_args.limit, before=query_args.before,
                                                    after=query_args.after)
    return {"items": items, "has_more": has_more}


@blueprint.post(SEND)
@validate_request(SendMessageIn)
@document_response(MessageOut, 201)
@document_response(MessageOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 429)
async def send(room_id: int, data: SendMessageIn) -> tuple[dict, int]:
    """Send as the caller; 201 once committed, 200 with the original for a repeated `client_id`.

    `reply_to` must be a message of this room (400) that is not deleted (400 `message_deleted`).
    `attachments` are the caller's own uploads to this room that no message carries yet (400 otherwise);
    with attachments the body may be empty.
    """
    return await send_as(current_node(), current_user(), room_id, data)


async def send_as(node: Node, sender: UserSnapshot, room_id: int, data: SendMessageIn) -> tuple[JsonObject, int]:
    """A send's answer and status, for this route and the fast sends (fast_sends.py) alike."""
    message, created = await messaging.send_message(node, sender, room_id, data.body, reply_to=data.reply_to,
                                                    client_id=data.client_id, attachments=data.attachments)
    return message, 201 if created else 200


@blueprint.patch(f"/{ROOM}/messages/{MESSAGE}")
@validate_request(EditMessageIn)
@document_response(MessageOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def edit(room_id: int, message_id: int, data: EditMessageIn) -> dict:
    """Replace the body of one's own message.

    The same body rules as sending; an inactive room is a 400 `room_inactive`. An unchanged body
    stores no event.
    """
    return await messaging.edit_message(current_node(), current_user(), room_id, message_id, data.body)


@blueprint.delete(f"/{ROOM}/messages/{MESSAGE}")
@documents_no_content()
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def delete(room_id: int, message_id: int) -> tuple[str, int]:
    """Soft-delete a message (its sender, the room's owners and moderators, admins).

    Deleting a deleted message succeeds again (204) and stores nothing.
    """
    await messaging.delete_message(current_node(), current_user(), room_id, message_id)
    return "", 204


@blueprint.post(f"/{ROOM}/read")
@validate_request(ReadIn)
@documents_no_content()
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def read(room_id: int, data: ReadIn) -> tuple[str, int]:
    """The caller has read up to `seq` (never moves backwards; clamped to the room's last seq)."""
    await messaging.mark_read(current_node(), current_user(), room_id, data.seq)
    return "", 204
