"""Stored room events: the room's next seq and the outbox row, in the committing transaction.

DESIGN.md §1: an event exists once its transaction commits. The seq comes from
`UPDATE rooms SET last_seq = last_seq + 1 ... RETURNING`, which holds the room's
row lock on PostgreSQL (SQLite's writer lock is already held by Database.write)
until commit, so seqs of one room are strictly increasing with no gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, update
from sqlalchemy.orm import Session

from ..timestamps import utcnow
from ..wire import encode_text
from . import driver_rows
from .models import OutboxEvent, Room
from .streams.base import Append

# Built once and run on the session's Connection: it runs for every stored event.
_OUTBOX = OutboxEvent.__table__
assert isinstance(_OUTBOX, Table)  # declarative models type __table__ as a FromClause
_INSERT_OUTBOX_ROW = insert(_OUTBOX)


# PostgreSQL: the rows as arrays, in binary (see driver_rows).
_INSERT_OUTBOX_ROWS_PG = (
    "INSERT INTO outbox (room_id, seq, type, payload, created_at) "
    "SELECT room_id, seq, type, payload, %(at)b FROM unnest(%(room_ids)b::bigint[], %(seqs)b::bigint[], "
    "%(types)b::varchar[], %(payloads)b::text[]) AS event(room_id, seq, type, payload)")
_INSERT_OUTBOX_ROW_SQLITE = "INSERT INTO outbox (room_id, seq, type, payload, created_at) VALUES (?, ?, ?, ?, ?)"


def take_next_seq(session: Session, room_id: int, **also_set: Any) -> int:
    """Increment the room's last_seq (setting `also_set` columns too) and return the new value."""
    statement = (
        update(Room)
        .where(Room.id == room_id)
        .values(last_seq=Room.last_seq + 1, **also_set)
        .returning(Room.last_seq)
    )
    return session.execute(statement).scalar_one()


def append_event(session: Session, event: dict[str, Any]) -> Append:
    """Write the outbox row of `event` (which carries its `room` and `seq`) in this transaction;
    returns it as the outbox relay publishes it."""
    payload = encode_text(event)
    # A plain INSERT, not an ORM object: the unit of work costs more than the row on the send path.
    session.connection().execute(_INSERT_OUTBOX_ROW, {"room_id": event["room"], "seq": event["seq"],
                                                       "type": event["type"], "payload": payload,
                                                       "created_at": utcnow()})
    return Append(event["room"], payload.encode(), event["seq"])


def insert_outbox_rows(session: Session, rows: Sequence[tuple[int, int, str, str]], at: datetime) -> None:
    """Outbox rows (room_id, seq, type, payload) of events already encoded, in one statement (executemany)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        stamp = driver_rows.sqlite_timestamp(at)
        driver_rows.sqlite_execute_many(session, _INSERT_OUTBOX_ROW_SQLITE, [(*row, stamp) for row in rows])
    elif connection.dialect.name == "postgresql":
        room_ids, seqs, types, payloads = (list(column) for column in zip(*rows, strict=True))
        driver_rows.pg_execute(session, _INSERT_OUTBOX_ROWS_PG, {
            "room_ids": room_ids, "seqs": seqs, "types": types, "payloads": payloads, "at": at})
    else:
        connection.execute(_INSERT_OUTBOX_ROW, [
            {"room_id": room_id, "seq": seq, "type": kind, "payload": payload, "created_at": at}
            for room_id, seq, kind, payload in rows])
