"""Outbox queries: what the relay publishes and what room actors replay or heal gaps from.

Each takes a Session and runs inside Database.read/write (DESIGN.md §1, §2).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session

from .models import OutboxEvent, Room
from .replica import require_replayed


@dataclass(frozen=True, slots=True)
class StoredEvent:
    room_id: int
    seq: int
    payload: str


def room_last_seqs(session: Session, room_ids: Collection[int]) -> dict[int, int]:
    """The last committed seq of each room (rooms that do not exist are left out)."""
    if not room_ids:
        return {}
    rows = session.execute(select(Room.id, Room.last_seq).where(Room.id.in_(list(room_ids))))
    return {room_id: last_seq for room_id, last_seq in rows}


def room_last_seq(session: Session, room_id: int) -> int:
    """The last committed seq of a room; 0 for a room that does not exist (yet)."""
    return room_last_seqs(session, [room_id]).get(room_id, 0)


def events_after(session: Session, room_id: int, after: int, upto: int | None = None,
                 limit: int = 1000) -> list[StoredEvent]:
    """Stored events of a room with after < seq <= upto, in seq order.

    `upto` is a seq the caller knows is committed: on a replica that has not reached the events asked
    for, ReplicaBehind (a replay then reads them from the primary).
    """
    if upto is not None:
        require_replayed(session, lambda: room_last_seq(session, room_id) >= min(upto, after + limit))
    query = select(OutboxEvent.seq, OutboxEvent.payload).where(OutboxEvent.room_id == room_id,
                                                               OutboxEvent.seq > after)
    if upto is not None:
        query = query.where(OutboxEvent.seq <= upto)
    rows = session.execute(query.order_by(OutboxEvent.seq).limit(limit))
    return [StoredEvent(room_id, seq, payload) for seq, payload in rows]


def unpublished(session: Session, *, room_ids: Collection[int] | None = None,
                created_before: datetime | None = None, limit: int = 500) -> list[StoredEvent]:
    """Committed events not yet on their room's stream, by room then seq.

    `room_ids` narrows to rooms this process just committed to; `created_before`
    leaves recent rows to the process that wrote them (it publishes them itself).
    """
    query = select(OutboxEvent.room_id, OutboxEvent.seq, OutboxEvent.payload).where(
        OutboxEvent.published_at.is_(None))
    if room_ids is not None:
        query = query.where(OutboxEvent.room_id.in_(list(room_ids)))
    if created_before is not None:
        query = query.where(OutboxEvent.created_at < created_before)
    rows = session.execute(query.order_by(OutboxEvent.room_id, OutboxEvent.seq).limit(limit))
    return [StoredEvent(room_id, seq, payload) for room_id, seq, payload in rows]


def mark_published(session: Session, keys: Sequence[tuple[int, int]], at: datetime) -> None:
    """Set published_at on the (room_id, seq) rows given."""
    for start in range(0, len(keys), 500):
        chunk = list(keys[start:start + 500])
        session.execute(
            update(OutboxEvent)
            .where(tuple_(OutboxEvent.room_id, OutboxEvent.seq).in_(chunk), OutboxEvent.published_at.is_(None))
            .values(published_at=at)
            .execution_options(synchronize_session=False)
        )


def outbox_backlog(session: Session) -> tuple[int, datetime | None]:
    """How many committed events are not marked published yet, and when the oldest was committed."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))).one()
    return count, oldest
