"""Outgoing webhooks, for a tenant's admins (PROTOCOL §6): targets, their deliveries, replays."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...services import webhooks
from ..auth import current_user, require_authentication, require_roles
from ..context import current_node
from ..openapi import documents_no_content
from ..pagination import decode_cursor, encode_cursor
from ..schemas import (
    DeliveriesQuery,
    DeliveryOut,
    DeliveryPage,
    ErrorOut,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatchIn,
)
from ..validation import validate_request

blueprint = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")
require_authentication(blueprint)

# An integer (a target made here) or `config:N` (the settings file's N-th, read-only). The converter
# is named: quart-schema's OpenAPI paths misread an unnamed one followed by a named one.
WEBHOOK = "<string:webhook>"


@blueprint.post("")
@require_roles("admin")
@validate_request(WebhookIn)
@document_response(WebhookOut, 201)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
async def create_webhook(data: WebhookIn) -> tuple[dict, int]:
    """Add a webhook target for the caller's tenant (admin).

    `url` must be http or https; `secret` signs every body (it is never shown again); `events`
    lists event names or is `"*"`. Unknown events and bad URLs are 400 `validation_error`.
    """
    hook = await webhooks.create_webhook(current_node(), current_user(), url=data.url, secret=data.secret,
                                         events=data.events, active=data.active)
    return hook, 201


@blueprint.get("")
@require_roles("admin")
@document_response(WebhookPage, 200)
@document_response(ErrorOut, 403)
async def list_webhooks() -> dict:
    """The settings file's targets (ids `config:N`, every tenant's, read-only), then the tenant's own."""
    return {"items": await webhooks.list_webhooks(current_node(), current_user()), "next_cursor": None}


@blueprint.get(f"/{WEBHOOK}")
@require_roles("admin")
@document_response(WebhookOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def get_webhook(webhook: str) -> dict:
    """One target (its secret is never shown)."""
    return await webhooks.get_webhook_view(current_node(), current_user(), webhook)


@blueprint.patch(f"/{WEBHOOK}")
@require_roles("admin")
@validate_request(WebhookPatchIn)
@document_response(WebhookOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def update_webhook(webhook: str, data: WebhookPatchIn) -> dict:
    """Change a target's url, secret, events or active flag. Settings-file targets are 403.

    While `active` is false its queued deliveries wait; new events are not queued for it.
    """
    return await webhooks.update_webhook(current_node(), current_user(), webhook, url=data.url,
                                         secret=data.secret, events=data.events, active=data.active)


@blueprint.delete(f"/{WEBHOOK}")
@require_roles("admin")
@documents_no_content()
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def delete_webhook(webhook: str) -> tuple[str, int]:
    """Delete a target with its deliveries. Settings-file targets are 403."""
    await webhooks.delete_webhook(current_node(), current_user(), webhook)
    return "", 204


@blueprint.get(f"/{WEBHOOK}/deliveries")
@require_roles("admin")
@validate_querystring(DeliveriesQuery)
@document_response(DeliveryPage, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def list_deliveries(webhook: str, query_args: DeliveriesQuery) -> dict:
    """The target's deliveries of the caller's tenant, newest first: status, attempts, the last
    response code or error, and the next try. Pass `next_cursor` back as `cursor`."""
    before = decode_cursor(query_args.cursor) or None
    items, next_position = await webhooks.list_deliveries(current_node(), current_user(), webhook,
                                                          limit=query_args.limit, before=before,
                                                          status=query_args.status)
    return {"items": items, "next_cursor": encode_cursor(next_position) if next_position else None}


@blueprint.post(f"/{WEBHOOK}/deliveries/<id:delivery_id>/retry")
@require_roles("admin")
@document_response(DeliveryOut, 202)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def retry_delivery(webhook: str, delivery_id: int) -> tuple[dict, int]:
    """Send a delivery again now, whatever its status, with the same body `id`; attempts start afresh."""
    delivery = await webhooks.retry_delivery(current_node(), current_user(), webhook, delivery_id)
    return delivery, 202
