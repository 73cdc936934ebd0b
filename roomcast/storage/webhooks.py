"""Webhook queries: API targets, and the delivery queue the webhook actor works from.

Each takes a Session and runs inside Database.read/write. A delivery is claimed with a
lease (`lease_owner`, `lease_until`): on PostgreSQL the candidate rows are locked with
`FOR UPDATE SKIP LOCKED`, so nodes sharing the database never claim the same one; on
SQLite the claim's write transaction holds the one writer lock. A node that dies mid-attempt
leaves its lease to run out, and the delivery is claimable again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from .models import Webhook, WebhookDelivery

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

_DELIVERIES = WebhookDelivery.__table__
assert isinstance(_DELIVERIES, Table)  # declarative models type __table__ as a FromClause
_INSERT_DELIVERY = insert(_DELIVERIES)


# --------------------------------------------------------------------------- API targets


@dataclass(frozen=True, slots=True)
class ActiveWebhook:
    id: int
    url: str
    secret: str
    events: str


_WEBHOOKS = Webhook.__table__
assert isinstance(_WEBHOOKS, Table)
# Built once and run on the session's Connection (Core): it runs in every transaction that stores an event.
_ACTIVE_WEBHOOKS = (
    select(_WEBHOOKS.c.id, _WEBHOOKS.c.url, _WEBHOOKS.c.secret, _WEBHOOKS.c.events)
    .where(_WEBHOOKS.c.tenant == bindparam("tenant"), _WEBHOOKS.c.active.is_(True))
    .order_by(_WEBHOOKS.c.id)
)


def active_webhooks(session: Session, tenant: str) -> list[ActiveWebhook]:
    """The tenant's active API targets (enqueue reads them in the event's transaction)."""
    rows = session.connection().execute(_ACTIVE_WEBHOOKS, {"tenant": tenant})
    return [ActiveWebhook(row[0], row[1], row[2], row[3]) for row in rows]


def tenant_webhooks(session: Session, tenant: str) -> list[Webhook]:
    return list(session.scalars(select(Webhook).where(Webhook.tenant == tenant).order_by(Webhook.id)))


def get_webhook(session: Session, tenant: str, webhook_id: int) -> Webhook | None:
    """The webhook if it is the tenant's (another tenant's is as absent as a missing one)."""
    webhook = session.get(Webhook, webhook_id)
    return webhook if webhook is not None and webhook.tenant == tenant else None


def webhooks_by_id(session: Session, ids: Collection[int]) -> dict[int, Webhook]:
    if not ids:
        return {}
    return {w.id: w for w in session.scalars(select(Webhook).where(Webhook.id.in_(list(ids))))}


# --------------------------------------------------------------------------- the queue


def insert_deliveries(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Queue deliveries (one per target of an event) in this transaction: a plain INSERT."""
    if rows:
        session.connection().execute(_INSERT_DELIVERY, list(rows))


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    tenant: str
    target: str
    webhook_id: int | None
    event_id: str
    event: str
    room_id: int
    seq: int | None
    body: str
    attempts: int


def _due_conditions() -> list[ColumnElement[bool]]:
    """Pending, due (`now`), not leased, of no paused target, and first of its target and room."""
    deliveries = _DELIVERIES
    earlier = deliveries.alias("earlier")
    return [
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= bindparam("now"),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now")),
        ~exists().where(earlier.c.target == deliveries.c.target, earlier.c.room_id == deliveries.c.room_id,
                        earlier.c.status == PENDING, earlier.c.id < deliveries.c.id),
        ~exists().where(_WEBHOOKS.c.id == deliveries.c.webhook_id, _WEBHOOKS.c.active.is_(False)),
    ]


# Built once (Core): the webhooks actor asks after every event committed while targets are busy,
# and building the ORM form anew each time cost more than running it.
_DUE_IDS = (
    select(_DELIVERIES.c.id, _DELIVERIES.c.target)
    .where(*_due_conditions(), _DELIVERIES.c.target.not_in(bindparam("busy", expanding=True)))
    .order_by(_DELIVERIES.c.id)
    .limit(bindparam("limit"))
)
_STILL_DUE = (
    select(_DELIVERIES.c.id)
    .where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), *_due_conditions())
    .order_by(_DELIVERIES.c.id)
)


def due_ids(session: Session, now: datetime, busy_targets: Collection[str], limit: int) -> list[tuple[int, str]]:
    """(id, target) of deliveries that could be claimed now, oldest first (a read: nothing is locked)."""
    rows = session.connection().execute(_DUE_IDS, {"now": now, "busy": list(busy_targets), "limit": limit})
    return [(row[0], row[1]) for row in rows]


def claim(session: Session, ids: Collection[int], owner: str, now: datetime, lease_until: datetime,
          *, skip_locked: bool) -> list[ClaimedDelivery]:
    """Lease those of `ids` that are still claimable; returns what this caller now holds.

    Run in a write transaction. `skip_locked` (PostgreSQL): rows another node is claiming
    right now are passed over instead of waited for. On SQLite the writer lock makes the
    re-check and the update one step.
    """
    if not ids:
        return []
    query = _STILL_DUE.with_for_update(skip_locked=True, of=_DELIVERIES) if skip_locked else _STILL_DUE
    held = list(session.connection().execute(query, {"ids": list(ids), "now": now}).scalars())
    if not held:
        return []
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(held))
                    .values(lease_owner=owner, lease_until=lease_until)
                    .execution_options(synchronize_session=False))
    rows = session.execute(select(
        WebhookDelivery.id, WebhookDelivery.tenant, WebhookDelivery.target, WebhookDelivery.webhook_id,
        WebhookDelivery.event_id, WebhookDelivery.event, WebhookDelivery.room_id, WebhookDelivery.seq,
        WebhookDelivery.body, WebhookDelivery.attempts).where(WebhookDelivery.id.in_(held))
        .order_by(WebhookDelivery.id))
    return [ClaimedDelivery(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])
            for row in rows]


def record_attempt(session: Session, delivery_id: int, owner: str, values: Mapping[str, object]) -> bool:
    """Store an attempt's outcome and release the lease, if `owner` still holds it; whether it did."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.lease_owner == owner,
               WebhookDelivery.status == PENDING)
        .values({"lease_owner": None, "lease_until": None, **values})
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_attempts(session: Session, owner: str, outcomes: Sequence[tuple[int, Mapping[str, object]]]) -> int:
    """`record_attempt` for several deliveries in one transaction; how many `owner` still held."""
    return sum(record_attempt(session, delivery_id, owner, values) for delivery_id, values in outcomes)


def release(session: Session, delivery_ids: Collection[int], owner: str) -> None:
    """Give leases back unattempted (the node is stopping)."""
    if delivery_ids:
        session.execute(update(WebhookDelivery)
                        .where(WebhookDelivery.id.in_(list(delivery_ids)), WebhookDelivery.lease_owner == owner)
                        .values(lease_owner=None, lease_until=None)
                        .execution_options(synchronize_session=False))


def deliveries_page(session: Session, tenant: str, target: str, *, before: int | None, limit: int,
                    status: str | None = None) -> list[WebhookDelivery]:
    """The target's deliveries in `tenant` (in `status`, if given), newest first, with ids below `before`."""
    query = select(WebhookDelivery).where(WebhookDelivery.tenant == tenant, WebhookDelivery.target == target)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def get_delivery(session: Session, tenant: str, target: str, delivery_id: int) -> WebhookDelivery | None:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.tenant != tenant or delivery.target != target:
        return None
    return delivery


def purge_finished(session: Session, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` delivered or dead deliveries created before `before`; how many went."""
    ids = list(session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.status != PENDING,
                                                                 WebhookDelivery.created_at < before)
                               .limit(limit)))
    if ids:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                        .execution_options(synchronize_session=False))
    return len(ids)
