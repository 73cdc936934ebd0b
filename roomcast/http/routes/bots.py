"""Bots, for a tenant's admins (PROTOCOL §6): create one (its user and token), change, delete;
the messages sent to it, and replays."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...services import bots
from ..auth import current_user, require_authentication, require_roles
from ..context import current_node
from ..openapi import documents_no_content
from ..pagination import decode_cursor, encode_cursor
from ..schemas import (
    BotCreatedOut,
    BotIn,
    BotOut,
    BotPage,
    BotPatchIn,
    BotTokenOut,
    DeliveriesQuery,
    DeliveryOut,
    DeliveryPage,
    ErrorOut,
)
from ..validation import validate_request

blueprint = Blueprint("bots", __name__, url_prefix="/api/bots")
require_authentication(blueprint)


@blueprint.post("")
@require_roles("admin")
@validate_request(BotIn)
@document_response(BotCreatedOut, 201)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 409)
async def create_bot(data: BotIn) -> tuple[dict, int]:
    """Create a bot in the caller's tenant (admin): a user with role `bot`, and a token for it.

    Messages that meet its `trigger` are POSTed to `url` as signed `message.created` webhooks; a
    2xx answer `{"reply": {"body", "reply_to"?}}` is posted to the room as the bot, once.
    A taken username is 409; a bad url, secret or trigger 400 `validation_error`.
    """
    created = await bots.create_bot(current_node(), current_user(), username=data.username,
                                    display_name=data.display_name, url=data.url, secret=data.secret,
                                    trigger=data.trigger)
    return created, 201


@blueprint.get("")
@require_roles("admin")
@document_response(BotPage, 200)
@document_response(ErrorOut, 403)
async def list_bots() -> dict:
    """The tenant's bots, oldest first."""
    return {"items": await bots.list_bots(current_node(), current_user()), "next_cursor": None}


@blueprint.get("/<id:bot_id>")
@require_roles("admin")
@document_response(BotOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def get_bot(bot_id: int) -> dict:
    """One bot (its secret is never shown)."""
    return await bots.get_bot_view(current_node(), current_user(), bot_id)


@blueprint.patch("/<id:bot_id>")
@require_roles("admin")
@validate_request(BotPatchIn)
@document_response(BotOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def update_bot(bot_id: int, data: BotPatchIn) -> dict:
    """Change a bot's url, secret, trigger or active flag. An inactive bot is sent no new messages;
    its user and token keep working."""
    return await bots.update_bot(current_node(), current_user(), bot_id, url=data.url, secret=data.secret,
                                 trigger=data.trigger, active=data.active)


@blueprint.delete("/<id:bot_id>")
@require_roles("admin")
@documents_no_content()
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def delete_bot(bot_id: int) -> tuple[str, int]:
    """Delete a bot: its user is disabled (its tokens stop working, its sessions close with 1008; its messages
    stay) and it gets nothing more."""
    await bots.delete_bot(current_node(), current_user(), bot_id)
    return "", 204


@blueprint.post("/<id:bot_id>/token")
@require_roles("admin")
@document_response(BotTokenOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def rotate_token(bot_id: int) -> dict:
    """A new token for the bot; every token issued to it before is revoked and its sessions closed (1008)."""
    return await bots.rotate_token(current_node(), current_user(), bot_id)


@blueprint.get("/<id:bot_id>/deliveries")
@require_roles("admin")
@validate_querystring(DeliveriesQuery)
@document_response(DeliveryPage, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def list_deliveries(bot_id: int, query_args: DeliveriesQuery) -> dict:
    """The messages sent to the bot, as deliveries, newest first (as for webhooks). A reply that
    was malformed or refused is noted in `last_error` of a delivered delivery."""
    before = decode_cursor(query_args.cursor) or None
    items, next_position = await bots.list_bot_deliveries(current_node(), current_user(), bot_id,
                                                          limit=query_args.limit, before=before,
                                                          status=query_args.status)
    return {"items": items, "next_cursor": encode_cursor(next_position) if next_position else None}


@blueprint.post("/<id:bot_id>/deliveries/<id:delivery_id>/retry")
@require_roles("admin")
@document_response(DeliveryOut, 202)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def retry_delivery(bot_id: int, delivery_id: int) -> tuple[dict, int]:
    """Send a message to the bot again, with the same `id`: its reply is posted once all the same."""
    return await bots.retry_bot_delivery(current_node(), current_user(), bot_id, delivery_id), 202
