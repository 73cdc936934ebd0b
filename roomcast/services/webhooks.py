"""The webhook admin API (PROTOCOL §6): a tenant's targets, their deliveries, and replays.

Targets are named by `id`: an integer for those made through the API (their tenant's
own), `config:N` for the settings file's N-th (0-based), which every tenant sees and none
can change here. Another tenant's id is as absent as a missing one (404).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal, TypeVar

from sqlalchemy.orm import Session

from ..config import check_webhook_events, check_webhook_secret, check_webhook_url
from ..errors import BadRequest, Forbidden, NotFound
from ..node import Node
from ..storage.database import on_commit
from ..storage.models import Webhook, WebhookDelivery
from ..storage.users import UserSnapshot
from ..storage.webhooks import (
    PENDING,
    deliveries_page,
    get_delivery,
    get_webhook,
    tenant_webhooks,
)
from ..timestamps import to_wire, utcnow
from ..wire import MAX_ID, JsonObject
from .webhook_delivery import wake_webhook_delivery
from .webhook_events import Target, config_targets

T = TypeVar("T")
DELIVERIES_MAX_LIMIT = 200
Events = list[str] | Literal["*"]


# --------------------------------------------------------------------------- ids and views


def _target_key(node: Node, tenant: str, webhook_id: str, session: Session | None = None) -> tuple[str, Webhook | None]:
    """("config:N" or "api:ID", the API row) for a path id; 404 for anything the caller cannot see."""
    if webhook_id.startswith("config:"):
        index = webhook_id.removeprefix("config:")
        if index.isascii() and index.isdigit() and int(index) < len(node.settings.webhooks):
            return f"config:{int(index)}", None
        raise NotFound("no such webhook")
    if not (webhook_id.isascii() and webhook_id.isdigit()) or not 1 <= int(webhook_id) <= MAX_ID:
        raise NotFound("no such webhook")
    webhook = get_webhook(session, tenant, int(webhook_id)) if session is not None else None
    if webhook is None:
        raise NotFound("no such webhook")
    return f"api:{webhook.id}", webhook


def _events_out(events: frozenset[str] | list[str]) -> list[str]:
    return ["*"] if "*" in events else sorted(events)


def _config_view(target: Target) -> JsonObject:
    return {"id": target.key, "url": target.url, "events": _events_out(target.events), "active": target.active,
            "source": "settings", "created_at": None, "updated_at": None}


def webhook_to_wire(webhook: Webhook) -> JsonObject:
    """A target as the API shows it; the secret is never shown."""
    return {"id": webhook.id, "url": webhook.url, "events": _events_out(json.loads(webhook.events)),
            "active": webhook.active, "source": "api", "created_at": to_wire(webhook.created_at),
            "updated_at": to_wire(webhook.updated_at)}


def delivery_to_wire(delivery: WebhookDelivery) -> JsonObject:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event": delivery.event,
        "room": delivery.room_id,
        "seq": delivery.seq,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": to_wire(delivery.next_attempt_at) if delivery.status == PENDING else None,
        "last_attempt_at": to_wire(delivery.last_attempt_at),
        "delivered_at": to_wire(delivery.delivered_at),
        "created_at": to_wire(delivery.created_at),
    }


def _checked(field: str, check: Callable[[T], T], value: T) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise BadRequest(str(exc), details={"field": field}) from None


def _events_in(events: Events) -> str:
    names = ["*"] if events == "*" else events
    return json.dumps(_checked("events", check_webhook_events, names))


# --------------------------------------------------------------------------- targets


async def create_webhook(node: Node, caller: UserSnapshot, *, url: str, secret: str, events: Events = "*",
                         active: bool = True) -> JsonObject:
    _checked("url", check_webhook_url, url)
    _checked("secret", check_webhook_secret, secret)
    stored_events = _events_in(events)

    def work(session: Session) -> JsonObject:
        now = utcnow()
        webhook = Webhook(tenant=caller.tenant, url=url, secret=secret, events=stored_events, active=active,
                          created_at=now, updated_at=now)
        session.add(webhook)
        session.flush()
        return webhook_to_wire(webhook)

    return await node.database.write(work)


async def list_webhooks(node: Node, caller: UserSnapshot) -> list[JsonObject]:
    """The settings file's targets, then the tenant's own, oldest first."""
    own = await node.database.read(
        lambda session: [webhook_to_wire(webhook) for webhook in tenant_webhooks(session, caller.tenant)])
    return [_config_view(target) for target in config_targets(node.settings)] + own


async def get_webhook_view(node: Node, caller: UserSnapshot, webhook_id: str) -> JsonObject:
    def work(session: Session) -> JsonObject:
        key, webhook = _target_key(node, caller.tenant, webhook_id, session)
        if webhook is None:
            return _config_view(config_targets(node.settings)[int(key.removeprefix("config:"))])
        return webhook_to_wire(webhook)

    return await node.database.read(work)


def _editable(node: Node, caller: UserSnapshot, session: Session, webhook_id: str) -> Webhook:
    _, webhook = _target_key(node, caller.tenant, webhook_id, session)
    if webhook is None:
        raise Forbidden("targets from the settings file cannot be changed through the API")
    return webhook


async def update_webhook(node: Node, caller: UserSnapshot, webhook_id: str, *, url: str | None = None,
                         secret: str | None = None, events: Events | None = None,
                         active: bool | None = None) -> JsonObject:
    """Change a target; what is queued already goes to the target as it is when it is sent."""
    if url is not None:
        _checked("url", check_webhook_url, url)
    if secret is not None:
        _checked("secret", check_webhook_secret, secret)
    stored_events = _events_in(events) if events is not None else None

    def work(session: Session) -> JsonObject:
        webhook = _editable(node, caller, session, webhook_id)
        for field, value in (("url", url), ("secret", secret), ("events", stored_events), ("active", active)):
            if value is not None:
                setattr(webhook, field, value)
        webhook.updated_at = utcnow()
        if active:  # deliveries held while it was paused may go now
            on_commit(session, lambda: wake_webhook_delivery(node))
        session.flush()
        return webhook_to_wire(webhook)

    return await node.database.write(work)


async def delete_webhook(node: Node, caller: UserSnapshot, webhook_id: str) -> None:
    """Delete a target with its deliveries, sent or not."""

    def work(session: Session) -> None:
        session.delete(_editable(node, caller, session, webhook_id))

    await node.database.write(work)


# --------------------------------------------------------------------------- deliveries


async def list_deliveries(node: Node, caller: UserSnapshot, webhook_id: str, *, limit: int, before: int | None,
                          status: str | None = None) -> tuple[list[JsonObject], int | None]:
    """A page of the target's deliveries of the caller's tenant, newest first, and where the next starts."""
    return await target_deliveries(node, caller, lambda session: _target_key(node, caller.tenant, webhook_id,
                                                                             session)[0],
                                   limit=limit, before=before, status=status)


async def retry_delivery(node: Node, caller: UserSnapshot, webhook_id: str, delivery_id: int) -> JsonObject:
    """Send a delivery again, whatever became of it: pending now, its attempts counted afresh.

    The body keeps its `id`. Until it is delivered (or dead again) later events of its
    target and room wait behind it, as for any pending delivery.
    """
    return await retry_target_delivery(node, caller, lambda session: _target_key(node, caller.tenant, webhook_id,
                                                                                 session)[0], delivery_id)


async def target_deliveries(node: Node, caller: UserSnapshot, key_of: Callable[[Session], str], *, limit: int,
                            before: int | None, status: str | None = None) -> tuple[list[JsonObject], int | None]:
    """`list_deliveries` for any kind of target: `key_of` names it (NotFound if the caller cannot see it)."""
    if not 1 <= limit <= DELIVERIES_MAX_LIMIT:
        raise BadRequest(f"limit must be 1 to {DELIVERIES_MAX_LIMIT}", details={"field": "limit"})

    def work(session: Session) -> tuple[list[JsonObject], int | None]:
        rows = deliveries_page(session, caller.tenant, key_of(session), before=before, limit=limit + 1,
                               status=status)
        page = rows[:limit]
        return [delivery_to_wire(row) for row in page], (page[-1].id if len(rows) > limit else None)

    return await node.database.read(work)


async def retry_target_delivery(node: Node, caller: UserSnapshot, key_of: Callable[[Session], str],
                                delivery_id: int) -> JsonObject:
    """`retry_delivery` for any kind of target."""

    def work(session: Session) -> JsonObject:
        delivery = get_delivery(session, caller.tenant, key_of(session), delivery_id)
        if delivery is None:
            raise NotFound("no such delivery")
        if delivery.status != PENDING or delivery.lease_until is None:
            delivery.status = PENDING
            delivery.attempts = 0
            delivery.next_attempt_at = utcnow()
            delivery.delivered_at = None
            on_commit(session, lambda: wake_webhook_delivery(node))
        session.flush()
        return delivery_to_wire(delivery)

    return await node.database.write(work)
