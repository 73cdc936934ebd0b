"""Message queries. Each takes a Session and runs inside Database.read/write."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.orm import Session

from . import driver_rows
from .models import Message, User


def message_with_sender(session: Session, room_id: int, message_id: int) -> tuple[Message, User] | None:
    """The message with that id if it belongs to `room_id`, with its sender."""
    row = session.execute(
        select(Message, User).join(User, User.id == Message.sender_id)
        .where(Message.id == message_id, Message.room_id == room_id)
    ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as just inserted, for its wire form: an ORM object would cost more than the insert."""

    id: int
    room_id: int
    seq: int
    sender_id: int
    body: str
    reply_to_id: int | None
    client_id: str | None
    created_at: datetime
    edited_at: None = None


_MESSAGES = Message.__table__
assert isinstance(_MESSAGES, Table)  # declarative models type __table__ as a FromClause
# Built once and run on the session's Connection: it runs on every send (see storage.rooms).
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)


def insert_message(session: Session, *, room_id: int, seq: int, sender_id: int, body: str,
                   reply_to_id: int | None, client_id: str | None, created_at: datetime) -> int:
    """Insert a new message row; returns its id."""
    # A plain INSERT ... RETURNING: an ORM object would cost a unit-of-work flush on every send.
    return session.connection().execute(
        _INSERT_MESSAGE,
        {"room_id": room_id, "seq": seq, "sender_id": sender_id, "body": body, "reply_to_id": reply_to_id,
         "client_id": client_id, "created_at": created_at},
    ).scalar_one()


# Many rows in one statement (insertmanyvalues), ids back in the order of the rows given.
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)


_INSERT_MESSAGE_SQLITE = ("INSERT INTO messages (room_id, seq, sender_id, body, reply_to_id, client_id, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)")
# One array per column, in binary (see driver_rows); the ids come back keyed by (room, seq). The
# first part of `rooms.insert_messages_with_events`' statement.
INSERT_MESSAGES_PG = (
    "INSERT INTO messages (room_id, seq, sender_id, body, reply_to_id, client_id, created_at) "
    "SELECT * FROM unnest(%(room_id)b::bigint[], %(seq)b::bigint[], %(sender_id)b::bigint[], %(body)b::text[], "
    "%(reply_to_id)b::bigint[], %(client_id)b::varchar[], %(created_at)b::timestamptz[]) "
    "RETURNING id, room_id, seq")
_MESSAGE_COLUMNS = ("room_id", "seq", "sender_id", "body", "reply_to_id", "client_id", "created_at")


def message_columns(rows: Sequence[dict[str, object]]) -> dict[str, list[object]]:
    """The parameters of `INSERT_MESSAGES_PG` for `rows`: one list per column."""
    return {column: [row[column] for row in rows] for column in _MESSAGE_COLUMNS}


def insert_messages(session: Session, rows: Sequence[dict[str, object]]) -> list[int]:
    """Insert new message rows (the columns of `insert_message`) in one statement; their ids, in order.

    SQLite and others: PostgreSQL stores a batch's messages with `rooms.insert_messages_with_events`."""
    if not rows:
        return []
    dialect = driver_rows.dialect(session)
    if dialect == "sqlite":
        stamps: dict[object, str] = {}  # a batch's rows share their timestamp: formatted once
        return driver_rows.sqlite_insert_each(session, _INSERT_MESSAGE_SQLITE, [
            (row["room_id"], row["seq"], row["sender_id"], row["body"], row["reply_to_id"], row["client_id"],
             stamps.get(row["created_at"]) or stamps.setdefault(
                 row["created_at"], driver_rows.sqlite_timestamp(row["created_at"])))  # type: ignore[arg-type]
            for row in rows])
    # PostgreSQL inserts a batch's messages within `rooms.insert_messages_with_events`' statement.
    return list(session.connection().execute(_INSERT_MESSAGES, list(rows)).scalars())


# SQLite answers a row value IN list (`(room_id, sender_id, client_id) IN (...)`) by scanning the
# whole index, every message of every room (31 ms at 200k messages); joined to the keys as a
# VALUES table it searches the index once per key (0.1 ms).
_MESSAGES_WITH_KEYS_SQLITE = (
    "WITH key(room_id, sender_id, client_id) AS (VALUES {rows}) "
    "SELECT messages.id, messages.room_id, messages.sender_id, messages.client_id FROM key JOIN messages "
    "ON messages.room_id = key.room_id AND messages.sender_id = key.sender_id AND messages.client_id = key.client_id")


def _messages_with_keys(session: Session, keys: Collection[tuple[int, int, str]]) -> list[tuple[int, int, int, str]]:
    """(id, room_id, sender_id, client_id) of the stored messages that have one of those keys."""
    ordered = sorted(keys)
    if driver_rows.dialect(session) == "sqlite":
        marks, params = driver_rows.sqlite_values(ordered)
        rows = driver_rows.sqlite_select(session, _MESSAGES_WITH_KEYS_SQLITE.format(rows=marks), params)
    else:
        columns = (_MESSAGES.c.room_id, _MESSAGES.c.sender_id, _MESSAGES.c.client_id)
        rows = list(session.connection().execute(select(_MESSAGES.c.id, *columns).where(tuple_(*columns).in_(ordered))))
    return [(row[0], row[1], row[2], row[3]) for row in rows]  # type: ignore[misc]


def used_client_ids(session: Session, keys: Collection[tuple[int, int, str]]) -> set[tuple[int, int, str]]:
    """Those (room_id, sender_id, client_id) keys that a stored message already has."""
    if not keys:
        return set()
    return {(room_id, sender_id, client_id) for _, room_id, sender_id, client_id in _messages_with_keys(session, keys)}


def find_by_client_ids(session: Session,
                       keys: Collection[tuple[int, int, str]]) -> dict[tuple[int, int, str], Message]:
    """The messages already stored under those (room_id, sender_id, client_id) keys, by key."""
    if not keys:
        return {}
    ids = [message_id for message_id, _, _, _ in _messages_with_keys(session, keys)]
    if not ids:
        return {}
    found: dict[tuple[int, int, str], Message] = {}
    for message in session.scalars(select(Message).where(Message.id.in_(ids))):
        assert message.client_id is not None
        found[(message.room_id, message.sender_id, message.client_id)] = message
    return found


def find_by_client_id(session: Session, room_id: int, sender_id: int, client_id: str) -> Message | None:
    return session.scalars(
        select(Message).where(Message.room_id == room_id, Message.sender_id == sender_id,
                              Message.client_id == client_id)
    ).first()


def get_room_message(session: Session, room_id: int, message_id: int) -> Message | None:
    return session.scalars(select(Message).where(Message.id == message_id, Message.room_id == room_id)).first()


def latest_visible_message_id(session: Session, room_id: int) -> int | None:
    """The newest message of the room that is not deleted, if any."""
    return session.scalars(
        select(Message.id).where(Message.room_id == room_id, Message.deleted_at.is_(None))
        .order_by(Message.seq.desc()).limit(1)
    ).first()


def history_page(session: Session, room_id: int, *, limit: int, before: int | None = None,
                 after: int | None = None) -> tuple[list[tuple[Message, User]], bool]:
    """Up to `limit` visible messages, oldest first, with their senders, and whether there are more.

    With `after`: the oldest messages with seq > after ("more" = newer ones exist).
    Otherwise the newest messages, below `before` if given ("more" = older ones exist).
    """
    query = (
        select(Message, User).join(User, User.id == Message.sender_id)
        .where(Message.room_id == room_id, Message.deleted_at.is_(None))
    )
    if after is not None:
        query = query.where(Message.seq > after).order_by(Message.seq.asc())
    else:
        if before is not None:
            query = query.where(Message.seq < before)
        query = query.order_by(Message.seq.desc())
    rows = [(message, sender) for message, sender in session.execute(query.limit(limit + 1))]
    has_more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
    return rows, has_more
