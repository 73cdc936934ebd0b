"""Outbox queries: what the relay publishes and what room actors replay or heal gaps from.

Each takes a Session and runs inside Database.read/write (DESIGN.md §1, §2).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from . import driver_rows
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


_OUTBOX = OutboxEvent.__table__
assert isinstance(_OUTBOX, Table)  # declarative models type __table__ as a FromClause
# One run of a room's seqs per parameter set: what the relay publishes comes in runs, so a
# marking is a handful of cheap statements, not an IN list of every (room, seq) pair.
_MARK_RUN = (
    update(_OUTBOX)
    .where(_OUTBOX.c.room_id == bindparam("room"), _OUTBOX.c.seq >= bindparam("low"),
           _OUTBOX.c.seq <= bindparam("high"), _OUTBOX.c.published_at.is_(None))
    .values(published_at=bindparam("at"))
)
_MARK_RUNS_PG = (
    "UPDATE outbox SET published_at = %(at)b "
    "FROM unnest(%(rooms)b::bigint[], %(lows)b::bigint[], %(highs)b::bigint[]) AS run(room_id, low, high) "
    "WHERE outbox.room_id = run.room_id AND outbox.seq >= run.low AND outbox.seq <= run.high "
    "AND outbox.published_at IS NULL")
_MARK_RUN_SQLITE = ("UPDATE outbox SET published_at = ? "
                    "WHERE room_id = ? AND seq >= ? AND seq <= ? AND published_at IS NULL")


def seq_runs(keys: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The (room_id, seq) pairs as runs of consecutive seqs: (room_id, first seq, last seq)."""
    runs: list[tuple[int, int, int]] = []
    for room_id, seq in sorted(set(keys)):
        if runs and runs[-1][0] == room_id and runs[-1][2] == seq - 1:
            runs[-1] = (room_id, runs[-1][1], seq)
        else:
            runs.append((room_id, seq, seq))
    return runs


def mark_published(session: Session, keys: Sequence[tuple[int, int]], at: datetime) -> None:
    """Set published_at on the (room_id, seq) rows given."""
    runs = seq_runs(keys)
    if not runs:
        return
    dialect = driver_rows.dialect(session)
    if dialect == "sqlite":
        stamp = driver_rows.sqlite_timestamp(at)
        driver_rows.sqlite_execute_many(session, _MARK_RUN_SQLITE,
                                        [(stamp, room, low, high) for room, low, high in runs])
        return
    if dialect == "postgresql":
        rooms, lows, highs = (list(column) for column in zip(*runs, strict=True))
        driver_rows.pg_execute(session, _MARK_RUNS_PG, {"rooms": rooms, "lows": lows, "highs": highs, "at": at})
        return
    session.connection().execute(_MARK_RUN, [{"room": room, "low": low, "high": high, "at": at}
                                             for room, low, high in runs])


def outbox_backlog(session: Session) -> tuple[int, datetime | None]:
    """How many committed events are not marked published yet, and when the oldest was committed."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))).one()
    return count, oldest
