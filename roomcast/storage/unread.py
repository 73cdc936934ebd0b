"""Queries of the `message.unread` scan: who is due a notification, and marking it given once.

A member is due when a message of someone else, not deleted, past both their read pointer
and their `notified_seq`, was sent at or before `due_before`. The scan starts from the rooms
with activity since `since` (an index on `rooms.last_activity_at`), so a poll reads the rooms
that moved lately and their members who are behind, never the whole membership table; each
member's check is a range probe of the (room_id, seq) index. Marking is a conditional UPDATE
of `notified_seq` from the value the scan saw: of two nodes that race, one updates the row and
the other updates nothing, so only one queues the notification.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from .models import Membership, Message, Room, User, Webhook

UNREAD_EVENT = "message.unread"


def tenants_wanting_unread(session: Session) -> list[str]:
    """Tenants with an active API webhook that wants `message.unread` (its own name, or "*")."""
    rows = session.execute(select(Webhook.tenant, Webhook.events).where(Webhook.active.is_(True))
                           .where(or_(Webhook.events.contains(f'"{UNREAD_EVENT}"'), Webhook.events.contains('"*"')))
                           .distinct())
    return sorted({tenant for tenant, events in rows if {"*", UNREAD_EVENT} & set(json.loads(events))})


@dataclass(frozen=True, slots=True)
class Candidate:
    tenant: str
    room_id: int
    user_id: int


def due_candidates(session: Session, tenants: Collection[str] | None, since: datetime, due_before: datetime,
                   limit: int) -> list[Candidate]:
    """Members who may be due a notification (`tenants` None: every tenant), by room and user."""
    pending = aliased(Message)
    query = (
        select(Room.tenant, Membership.room_id, Membership.user_id)
        .join(Membership, Membership.room_id == Room.id)
        .join(User, User.id == Membership.user_id)
        .where(Room.last_activity_at >= since,
               Membership.last_read_seq < Room.last_seq, Membership.notified_seq < Room.last_seq,
               User.is_active.is_(True), User.role != "bot",
               exists().where(pending.room_id == Membership.room_id,
                              pending.seq > Membership.last_read_seq, pending.seq > Membership.notified_seq,
                              pending.created_at <= due_before, pending.sender_id != Membership.user_id,
                              pending.deleted_at.is_(None)))
        .order_by(Membership.room_id, Membership.user_id)
        .limit(limit)
    )
    if tenants is not None:
        query = query.where(Room.tenant.in_(sorted(tenants)))
    return [Candidate(tenant, room_id, user_id) for tenant, room_id, user_id in session.execute(query)]


@dataclass(frozen=True, slots=True)
class Unread:
    """What a notification covers: the member's unread messages of others, not deleted."""

    username: str
    count: int
    first_seq: int
    last_seq: int
    first_at: datetime


def mark_notified(session: Session, room_id: int, user_id: int, due_before: datetime) -> Unread | None:
    """Move the member's `notified_seq` past their unread messages if the first is due; what it covered.

    None if nothing is due any more (read meanwhile, deleted) or another node got there first.
    Run in a write transaction, which then queues the notification (or, for a member who is
    online, queues nothing: the messages were in front of them).
    """
    row = session.execute(select(Membership.last_read_seq, Membership.notified_seq, User.username)
                          .join(User, User.id == Membership.user_id)
                          .where(Membership.room_id == room_id, Membership.user_id == user_id)).first()
    if row is None:
        return None
    read_seq, notified_seq, username = row
    summary = session.execute(
        select(func.count(), func.min(Message.seq), func.max(Message.seq), func.min(Message.created_at))
        .where(Message.room_id == room_id, Message.seq > max(read_seq, notified_seq), Message.sender_id != user_id,
               Message.deleted_at.is_(None))).one()
    count, first_seq, last_seq, first_at = summary
    if not count or first_at is None or _aware(first_at) > due_before:
        return None
    moved = session.execute(
        update(Membership)
        .where(and_(Membership.room_id == room_id, Membership.user_id == user_id,
                    Membership.notified_seq == notified_seq, Membership.last_read_seq == read_seq))
        .values(notified_seq=last_seq)
        .execution_options(synchronize_session=False))
    if not moved.rowcount:  # type: ignore[attr-defined]
        return None
    return Unread(username, int(count), int(first_seq), int(last_seq), _aware(first_at))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
