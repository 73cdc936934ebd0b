"""Room and membership queries. Each takes a Session and runs inside Database.read/write."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, Table, and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from . import driver_rows
from .events import insert_outbox_rows
from .messages import INSERT_MESSAGES_PG, insert_messages, message_columns, used_client_ids
from .models import Membership, Message, OutboxEvent, Room, User
from .replica import require_replayed
from .streams.base import Append


@dataclass
class RoomRow:
    """A room as one caller sees it: its last visible message and the caller's unread count."""

    room: Room
    last_message: Message | None
    last_sender: User | None
    unread_count: int


def direct_key(user_a: int, user_b: int) -> str:
    """The key that makes a pair of users have at most one direct room."""
    low, high = sorted((user_a, user_b))
    return f"{low}:{high}"


def load_room(session: Session, tenant: str, room_id: int, user_id: int, *,
              lock: bool = False) -> tuple[Room | None, Membership | None]:
    """The room (if it is in `tenant`) and `user_id`'s membership of it.

    With `lock`, the room row stays locked until commit (FOR NO KEY UPDATE on
    PostgreSQL; SQLite's writer lock covers it), so everything that takes the
    room's next seq, or changes who is in it, runs one at a time per room.
    """
    query = (
        select(Room, Membership)
        .outerjoin(Membership, and_(Membership.room_id == Room.id, Membership.user_id == user_id))
        .where(Room.id == room_id, Room.tenant == tenant)
    )
    if lock:
        query = query.with_for_update(of=Room, key_share=True)
    row = session.execute(query).first()
    return (row[0], row[1]) if row else (None, None)


@dataclass(frozen=True, slots=True)
class SendTarget:
    """What sending a message needs of its room, read with the room's row locked."""

    room_id: int
    is_active: bool
    last_seq: int
    is_member: bool


# The send path's two statements on `rooms`, built once: every send runs both, and building
# and compiling a statement costs several times what SQLite takes to run it. They run on the
# session's Connection (Core), not through the ORM's execute, for the same reason.
_ROOMS = Room.__table__
_MEMBERSHIPS = Membership.__table__
assert isinstance(_ROOMS, Table)  # declarative models type __table__ as a FromClause
_LOCK_FOR_SEND = (
    select(_ROOMS.c.id, _ROOMS.c.is_active, _ROOMS.c.last_seq, _MEMBERSHIPS.c.user_id)
    .select_from(_ROOMS.outerjoin(_MEMBERSHIPS, and_(_MEMBERSHIPS.c.room_id == _ROOMS.c.id,
                                                     _MEMBERSHIPS.c.user_id == bindparam("user_id"))))
    .where(_ROOMS.c.id == bindparam("room_id"), _ROOMS.c.tenant == bindparam("tenant"))
    .with_for_update(of=_ROOMS, key_share=True)
)
# SQLite has no row locks: the transaction's writer lock (BEGIN IMMEDIATE) holds every room.
_LOCK_ROOMS_FOR_SEND_SQLITE = "SELECT id, tenant, is_active, last_seq FROM rooms WHERE id IN ({marks}) ORDER BY id"
_RECORD_MESSAGE = (
    update(_ROOMS)
    .where(_ROOMS.c.id == bindparam("room_id"), _ROOMS.c.last_seq == bindparam("previous_seq"))
    .values(last_seq=bindparam("seq"), last_message_id=bindparam("message_id"), last_activity_at=bindparam("at"))
)


@dataclass(frozen=True, slots=True)
class RoomAccessRows:
    """What `open_room` reads, for many (room, user) pairs at once: each room's tenant, and which pairs are members."""

    tenants: dict[int, str]  # the rooms that exist
    members: set[tuple[int, int]]  # (room id, user id)


_ROOM_TENANTS = select(_ROOMS.c.id, _ROOMS.c.tenant).where(_ROOMS.c.id.in_(bindparam("room_ids", expanding=True)))


def room_access_rows(session: Session, pairs: Collection[tuple[int, int]]) -> RoomAccessRows:
    """The tenants of the pairs' rooms and which pairs are memberships: two statements, however many pairs.

    A burst of subscribes costs one database call this way instead of one per subscriber.
    """
    if not pairs:
        return RoomAccessRows({}, set())
    rows = session.connection().execute(_ROOM_TENANTS, {"room_ids": sorted({room_id for room_id, _ in pairs})})
    tenants: dict[int, str] = {room_id: tenant for room_id, tenant in rows}
    return RoomAccessRows(tenants, memberships_among(session, [pair for pair in pairs if pair[0] in tenants]))


def lock_room_for_send(session: Session, tenant: str, room_id: int, user_id: int) -> SendTarget | None:
    """The room (if it is in `tenant`), locked as by `load_room(lock=True)`, as a send needs it.

    Columns, not ORM objects: a send reads the room once and writes it once, and loading
    entities into the session costs more than the query.
    """
    row = session.connection().execute(
        _LOCK_FOR_SEND, {"room_id": room_id, "tenant": tenant, "user_id": user_id}).first()
    if row is None:
        return None
    return SendTarget(row[0], bool(row[1]), row[2], row[3] is not None)


def record_room_message(session: Session, room_id: int, seq: int, message_id: int, at: datetime) -> None:
    """The room's seq moves from `seq - 1` to `seq` with a new message: call with the room locked."""
    result = session.connection().execute(
        _RECORD_MESSAGE, {"room_id": room_id, "previous_seq": seq - 1, "seq": seq, "message_id": message_id, "at": at})
    if result.rowcount != 1:
        # The lock makes this impossible; a seq taken twice would break every subscriber's order.
        raise RuntimeError(f"room {room_id} is no longer at seq {seq - 1}")


@dataclass(frozen=True, slots=True)
class LockedRoom:
    """A room as a batch of sends needs it, read with its row locked."""

    room_id: int
    tenant: str
    is_active: bool
    last_seq: int


# A batch's rooms, locked in id order by one statement: ORDER BY comes before the row locks
# on PostgreSQL, so every batch takes its locks in the same order and two never deadlock.
_LOCK_ROOMS_FOR_SEND = (
    select(_ROOMS.c.id, _ROOMS.c.tenant, _ROOMS.c.is_active, _ROOMS.c.last_seq)
    .where(_ROOMS.c.id.in_(bindparam("room_ids", expanding=True)))
    .order_by(_ROOMS.c.id)
    .with_for_update(of=_ROOMS, key_share=True)
)


def lock_rooms_for_send(session: Session, room_ids: Collection[int]) -> dict[int, LockedRoom]:
    """The rooms among `room_ids` that exist, each locked as by `load_room(lock=True)`, by id.

    One statement for a batch of sends to many rooms; the caller checks each sender's tenant.
    """
    ordered = sorted(room_ids)
    if driver_rows.dialect(session) != "sqlite":
        rows = session.connection().execute(_LOCK_ROOMS_FOR_SEND, {"room_ids": ordered})
        return {row[0]: LockedRoom(row[0], row[1], bool(row[2]), row[3]) for row in rows}
    # Through the driver: SQLAlchemy's expanding IN list costs several times the query itself.
    found: dict[int, LockedRoom] = {}
    for room_id, tenant, is_active, last_seq in driver_rows.sqlite_select(
            session, _LOCK_ROOMS_FOR_SEND_SQLITE.format(marks=", ".join(["?"] * len(ordered))), ordered):
        assert isinstance(room_id, int) and isinstance(tenant, str) and isinstance(last_seq, int)
        found[room_id] = LockedRoom(room_id, tenant, bool(is_active), last_seq)
    return found


_MEMBERSHIPS_AMONG_PG = (
    "SELECT memberships.room_id, memberships.user_id FROM memberships "
    "JOIN unnest(%(rooms)b::bigint[], %(users)b::bigint[]) AS pair(room_id, user_id) "
    "ON memberships.room_id = pair.room_id AND memberships.user_id = pair.user_id")


_MEMBERSHIPS_AMONG_SQLITE = (
    "WITH pair(room_id, user_id) AS (VALUES {pairs}) SELECT memberships.room_id, memberships.user_id "
    "FROM pair JOIN memberships ON memberships.room_id = pair.room_id AND memberships.user_id = pair.user_id")


def memberships_among(session: Session, pairs: Collection[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those (room_id, user_id) pairs that are memberships."""
    if not pairs:
        return set()
    ordered = sorted(pairs)
    dialect = driver_rows.dialect(session)
    if dialect == "postgresql":  # one statement text whatever the number of pairs (see driver_rows)
        rows, _ = driver_rows.pg_execute(session, _MEMBERSHIPS_AMONG_PG, {
            "rooms": [room_id for room_id, _ in ordered], "users": [user_id for _, user_id in ordered]})
    elif dialect == "sqlite":  # joined, not `(room_id, user_id) IN (...)`: see messages._MESSAGES_WITH_KEYS_SQLITE
        marks, params = driver_rows.sqlite_values(ordered)
        rows = driver_rows.sqlite_select(session, _MEMBERSHIPS_AMONG_SQLITE.format(pairs=marks), params)
    else:
        query = select(_MEMBERSHIPS.c.room_id, _MEMBERSHIPS.c.user_id).where(
            tuple_(_MEMBERSHIPS.c.room_id, _MEMBERSHIPS.c.user_id).in_(ordered))
        rows = [tuple(row) for row in session.connection().execute(query)]
    return {(room_id, user_id) for room_id, user_id in rows}  # type: ignore[misc]


# PostgreSQL: the rooms locked as by _LOCK_ROOMS_FOR_SEND, each with those of the (room, user) pairs
# asked about that are memberships and the client_ids asked about already used, in one round trip.
# Each pair and key is looked up once in its unique index (a lateral lookup: never a scan of the
# table, whatever the planner's statistics), grouped by room and joined to the rooms. Read room by
# room instead, every room went through every key: 160 keys x 100 rooms is 16 000 rows, most of
# the statement's time. The membership reads take the statement's snapshot: a
# join committed while this waited for a room's lock is not seen (the send raced it, either
# order is an outcome the sender could have had). So do the client_ids already used: a retry
# committed meanwhile by another node is caught by the messages' unique key, and the committer's
# draft-by-draft path then answers with the original.
_LOCK_FOR_SENDS_PG = (
    "SELECT rooms.id, rooms.tenant, rooms.is_active, rooms.last_seq, member.users, used.senders, used.client_ids "
    "FROM rooms LEFT JOIN (SELECT pair.room_id, array_agg(pair.user_id) AS users "
    "FROM unnest(%(pair_rooms)b::bigint[], %(pair_users)b::bigint[]) AS pair(room_id, user_id) "
    "CROSS JOIN LATERAL (SELECT FROM memberships WHERE memberships.room_id = pair.room_id "
    "AND memberships.user_id = pair.user_id LIMIT 1) AS found "
    "GROUP BY pair.room_id) AS member ON member.room_id = rooms.id "
    "LEFT JOIN (SELECT key.room_id, array_agg(key.sender_id) AS senders, array_agg(key.client_id) AS client_ids "
    "FROM unnest(%(key_rooms)b::bigint[], %(key_senders)b::bigint[], %(key_clients)b::varchar[]) "
    "AS key(room_id, sender_id, client_id) "
    "CROSS JOIN LATERAL (SELECT FROM messages WHERE messages.room_id = key.room_id "
    "AND messages.sender_id = key.sender_id AND messages.client_id = key.client_id LIMIT 1) AS found "
    "GROUP BY key.room_id) AS used ON used.room_id = rooms.id "
    "WHERE rooms.id = ANY(%(room_ids)b::bigint[]) ORDER BY rooms.id FOR NO KEY UPDATE OF rooms")


@dataclass(frozen=True, slots=True)
class LockedForSends:
    """What a batch of sends reads before it writes, its rooms locked."""

    rooms: dict[int, LockedRoom]  # the rooms that exist, by id
    members: set[tuple[int, int]]  # the (room_id, user_id) pairs asked about that are memberships
    used_client_ids: set[tuple[int, int, str]]  # the (room_id, sender_id, client_id) keys asked about already stored


def lock_for_sends(session: Session, pairs: Collection[tuple[int, int]],
                   keys: Collection[tuple[int, int, str]]) -> LockedForSends:
    """`lock_rooms_for_send` of the rooms of `pairs` (room_id, user_id), `memberships_among` of those
    pairs in the rooms found and `used_client_ids` of `keys`: on PostgreSQL in one statement."""
    if driver_rows.dialect(session) != "postgresql":
        found = lock_rooms_for_send(session, {room_id for room_id, _ in pairs})
        return LockedForSends(found, memberships_among(session, [pair for pair in pairs if pair[0] in found]),
                              used_client_ids(session, keys))
    statement, params = pg_lock_for_sends(pairs, keys)
    rows, _ = driver_rows.pg_execute(session, statement, params)
    return locked_of_rows(rows)


def pg_lock_for_sends(pairs: Collection[tuple[int, int]],
                      keys: Collection[tuple[int, int, str]]) -> tuple[str, dict[str, object]]:
    """`lock_for_sends` on PostgreSQL as a statement for `driver_rows.pg_execute_together`; its rows
    go to `locked_of_rows`."""
    ordered = sorted(set(pairs))
    return _LOCK_FOR_SENDS_PG, {
        "room_ids": sorted({room_id for room_id, _ in ordered}),
        "pair_rooms": [room_id for room_id, _ in ordered], "pair_users": [user_id for _, user_id in ordered],
        "key_rooms": [room_id for room_id, _, _ in keys], "key_senders": [sender_id for _, sender_id, _ in keys],
        "key_clients": [client_id for _, _, client_id in keys]}


def locked_of_rows(rows: Sequence[tuple[object, ...]]) -> LockedForSends:
    """What `lock_for_sends` gives, from the PostgreSQL statement's rows (it reads only the pairs and
    keys asked about)."""
    rooms: dict[int, LockedRoom] = {}
    members: set[tuple[int, int]] = set()
    used: set[tuple[int, int, str]] = set()
    for room_id, tenant, is_active, last_seq, users, senders, client_ids in rows:
        assert isinstance(room_id, int) and isinstance(tenant, str) and isinstance(last_seq, int)
        rooms[room_id] = LockedRoom(room_id, tenant, bool(is_active), last_seq)
        if users is not None:  # NULL: none of the senders asked about is a member
            assert isinstance(users, list)
            members.update((room_id, user_id) for user_id in users)
        if senders is not None:  # NULL: no key asked about is used; both arrays list the same rows in one order
            assert isinstance(senders, list) and isinstance(client_ids, list)
            used.update((room_id, sender_id, client_id)
                        for sender_id, client_id in zip(senders, client_ids, strict=True))
    return LockedForSends(rooms, members, used)


_RECORD_MESSAGES_SQLITE = ("UPDATE rooms SET last_seq = ?, last_message_id = ?, last_activity_at = ? "
                           "WHERE rooms.id = ? AND rooms.last_seq = ?")


def record_room_messages(session: Session, moves: Sequence[tuple[int, int, int, int]], at: datetime) -> None:
    """Move each room on by several messages at once: (room_id, previous last_seq, new last_seq, last
    message id) with every room locked; one statement for the batch (executemany). PostgreSQL
    does it within `insert_messages_with_events`'s statement."""
    if not moves:
        return
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        stamp = driver_rows.sqlite_timestamp(at)
        changed = driver_rows.sqlite_execute_many(session, _RECORD_MESSAGES_SQLITE, [
            (seq, message_id, stamp, room_id, previous) for room_id, previous, seq, message_id in moves])
    else:
        changed = connection.execute(_RECORD_MESSAGE, [
            {"room_id": room_id, "previous_seq": previous, "seq": seq, "message_id": message_id, "at": at}
            for room_id, previous, seq, message_id in moves]).rowcount
    if connection.dialect.supports_sane_multi_rowcount:
        _require_moved(changed, moves)


def _require_moved(changed: int, moves: Sequence[object]) -> None:
    if changed != len(moves):
        # The locks make this impossible; a seq taken twice would break every subscriber's order.
        raise RuntimeError("a room is no longer at the seq it was locked at")


# PostgreSQL: a batch's messages inserted, their rooms moved on and each one's outbox row written,
# in one round trip. The UPDATE takes each room's last message id from the INSERT's RETURNING (it
# cannot see the new rows themselves: every part of the statement reads the same snapshot); each
# outbox payload is joined around the id the INSERT drew.
_INSERT_MESSAGES_WITH_EVENTS_PG = (
    f"WITH inserted AS ({INSERT_MESSAGES_PG}), "
    "moved AS (UPDATE rooms SET last_seq = moves.seq, last_message_id = inserted.id, last_activity_at = %(at)b "
    "FROM unnest(%(move_rooms)b::bigint[], %(previous_seqs)b::bigint[], %(seqs)b::bigint[]) "
    "AS moves(room_id, previous_seq, seq) "
    "JOIN inserted ON inserted.room_id = moves.room_id AND inserted.seq = moves.seq "
    "WHERE rooms.id = moves.room_id AND rooms.last_seq = moves.previous_seq RETURNING rooms.id), "
    "outboxed AS (INSERT INTO outbox (room_id, seq, type, payload, created_at) "
    "SELECT inserted.room_id, inserted.seq, 'message', event.head || inserted.id || event.tail, %(at)b "
    "FROM unnest(%(event_rooms)b::bigint[], %(event_seqs)b::bigint[], %(heads)b::text[], %(tails)b::text[]) "
    "AS event(room_id, seq, head, tail) "
    "JOIN inserted ON inserted.room_id = event.room_id AND inserted.seq = event.seq) "
    "SELECT inserted.id, inserted.room_id, inserted.seq, (SELECT count(*) FROM moved) FROM inserted")


def insert_messages_with_events(session: Session, rows: Sequence[dict[str, object]],
                                moves: Sequence[tuple[int, int, int]], events: Sequence[tuple[str, str]],
                                at: datetime) -> tuple[list[int], list[Append]]:
    """Insert the messages `rows` (the columns of `insert_message`), move each room on by `moves`
    (room_id, previous last_seq, new last_seq: the room's last message is its row of that seq) and
    write the outbox row of each message's `message` event, given as its text around the message's
    id (`wire.message_event_around_id`, one per row). Returns the ids, in the rows' order, and the
    outbox rows as the relay takes them. On PostgreSQL one statement; elsewhere three."""
    on_postgresql = driver_rows.dialect(session) == "postgresql"
    if on_postgresql:
        columns = message_columns(rows)
        returned, _ = driver_rows.pg_execute(session, _INSERT_MESSAGES_WITH_EVENTS_PG, {
            **columns, "move_rooms": [room_id for room_id, _, _ in moves],
            "previous_seqs": [previous for _, previous, _ in moves], "seqs": [seq for _, _, seq in moves],
            "event_rooms": columns["room_id"], "event_seqs": columns["seq"],
            "heads": [head for head, _ in events], "tails": [tail for _, tail in events], "at": at})
        moved = returned[0][3] if returned else 0
        assert isinstance(moved, int)
        _require_moved(moved, moves)
        new_ids: dict[tuple[object, object], int] = {}
        for message_id, room_id, seq, _ in returned:
            assert isinstance(message_id, int)
            new_ids[(room_id, seq)] = message_id
        ids = [new_ids[(row["room_id"], row["seq"])] for row in rows]
    else:
        ids = insert_messages(session, rows)
        by_seq = {(row["room_id"], row["seq"]): message_id for row, message_id in zip(rows, ids, strict=True)}
        record_room_messages(session, [(room_id, previous, seq, by_seq[(room_id, seq)])
                                       for room_id, previous, seq in moves], at)
    payloads = [head + str(message_id) + tail for message_id, (head, tail) in zip(ids, events, strict=True)]
    if not on_postgresql:
        insert_outbox_rows(session, [(row["room_id"], row["seq"], "message", payload)  # type: ignore[misc]
                                     for row, payload in zip(rows, payloads, strict=True)], at)
    return ids, [Append(row["room_id"], payload.encode(), row["seq"])  # type: ignore[arg-type]
                 for row, payload in zip(rows, payloads, strict=True)]


def find_room_by_ref(session: Session, tenant: str, external_ref: str, *, lock: bool = False) -> Room | None:
    query = select(Room).where(Room.tenant == tenant, Room.external_ref == external_ref)
    if lock:
        query = query.with_for_update(key_share=True)
    return session.scalars(query).first()


def find_direct_room(session: Session, tenant: str, key: str) -> Room | None:
    return session.scalars(select(Room).where(Room.tenant == tenant, Room.direct_key == key)).first()


def insert_room(session: Session, room: Room, members: Mapping[int, str]) -> Room | None:
    """Insert `room` with `members` (user id -> room role).

    Returns None, with nothing written, when another transaction took the room's
    direct_key or external_ref first: the caller then reads the winner's room.
    """
    try:
        with session.begin_nested():
            session.add(room)
            session.flush()
            session.add_all(Membership(room_id=room.id, user_id=uid, room_role=role) for uid, role in members.items())
            session.flush()
    except IntegrityError:
        return None
    return room


def delete_room(session: Session, room_id: int) -> None:
    """Delete the room with its memberships (ON DELETE CASCADE), messages and outbox rows.

    The room's row goes first: that waits for its lock, so a send in flight commits before and
    its messages go too (each later statement sees what committed), and a send after finds no
    room. Messages and outbox rows keep no foreign key to the room (`models.Message`)."""
    session.execute(delete(Room).where(Room.id == room_id))
    session.execute(delete(OutboxEvent).where(OutboxEvent.room_id == room_id))
    session.execute(delete(Message).where(Message.room_id == room_id))


def tenant_users(session: Session, tenant: str, user_ids: Collection[int]) -> dict[int, User]:
    """The active users of `tenant` among `user_ids`, by id (missing ids are absent or elsewhere)."""
    if not user_ids:
        return {}
    query = select(User).where(User.tenant == tenant, User.id.in_(sorted(user_ids)), User.is_active.is_(True))
    return {user.id: user for user in session.scalars(query)}


def room_memberships(session: Session, room_id: int) -> dict[int, Membership]:
    return {m.user_id: m for m in session.scalars(select(Membership).where(Membership.room_id == room_id))}


def add_membership(session: Session, room_id: int, user_id: int, room_role: str, *, since_seq: int = 0) -> None:
    """Make the user a member; `message.unread` will not notify them of events up to `since_seq`."""
    session.add(Membership(room_id=room_id, user_id=user_id, room_role=room_role, notified_seq=since_seq))
    session.flush()


def remove_memberships(session: Session, room_id: int, user_ids: Collection[int]) -> None:
    if user_ids:
        session.execute(delete(Membership).where(Membership.room_id == room_id,
                                                 Membership.user_id.in_(sorted(user_ids))))


def members_of(session: Session, room_ids: Sequence[int]) -> dict[int, list[tuple[User, str]]]:
    """Each room's members with their room roles, for all `room_ids` in one query."""
    members: dict[int, list[tuple[User, str]]] = defaultdict(list)
    if not room_ids:
        return members
    query = (
        select(Membership.room_id, Membership.room_role, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.room_id.in_(sorted(set(room_ids))))
        .order_by(Membership.room_id, User.id)
    )
    for room_id, room_role, user in session.execute(query):
        members[room_id].append((user, room_role))
    return members


def _room_rows_query(user_id: int, tenant: str, *, members_only: bool) -> Select:
    """Rooms with their last message, its sender and `user_id`'s unread count, in one statement."""
    last = aliased(Message, name="last_message")
    sender = aliased(User, name="last_sender")
    # Someone who is not a member has nothing unread.
    read_up_to = func.coalesce(Membership.last_read_seq, Room.last_seq)
    unread = (
        select(func.count())
        .select_from(Message)
        .where(Message.room_id == Room.id, Message.seq > read_up_to,
               Message.sender_id != user_id, Message.deleted_at.is_(None))
        .correlate(Room, Membership)
        .scalar_subquery()
    )
    membership = and_(Membership.room_id == Room.id, Membership.user_id == user_id)
    query = select(Room, last, sender, unread)
    query = query.join(Membership, membership) if members_only else query.outerjoin(Membership, membership)
    return (
        query.outerjoin(last, last.id == Room.last_message_id)
        .outerjoin(sender, sender.id == last.sender_id)
        .where(Room.tenant == tenant)
    )


def room_row(session: Session, tenant: str, user_id: int, room_id: int) -> RoomRow | None:
    """One room as `user_id` sees it (member or not)."""
    query = _room_rows_query(user_id, tenant, members_only=False).where(Room.id == room_id)
    # Fresh from the database, even when this transaction has just changed the room.
    row = session.execute(query.execution_options(populate_existing=True)).first()
    return RoomRow(*row) if row else None


def user_room_rows(session: Session, tenant: str, user_id: int, *, limit: int,
                   after: tuple[datetime, int] | None = None) -> list[RoomRow]:
    """The rooms `user_id` is a member of, most recent activity first, after the keyset `after`."""
    query = _room_rows_query(user_id, tenant, members_only=True)
    if after is not None:
        activity, room_id = after
        # The page before ended at this room, this active: a replica must have seen it so.
        require_replayed(session, lambda: _active_since(session, room_id, activity))
        query = query.where(or_(Room.last_activity_at < activity,
                                and_(Room.last_activity_at == activity, Room.id < room_id)))
    query = query.order_by(Room.last_activity_at.desc(), Room.id.desc()).limit(limit)
    return [RoomRow(*row) for row in session.execute(query)]


def _active_since(session: Session, room_id: int, moment: datetime) -> bool:
    active = session.scalar(select(Room.last_activity_at).where(Room.id == room_id))
    return active is not None and active >= moment


def advance_read_pointer(session: Session, room_id: int, user_id: int, seq: int) -> tuple[int, bool]:
    """Move the member's read pointer up to `seq`, never backwards: the pointer as it now stands, and whether it moved.

    Told by the update itself, not by a read before it: a concurrent move past `seq` committed
    meanwhile (PostgreSQL's READ COMMITTED) leaves this one a no-op, and the pointer is then
    read again, so nobody announces a pointer below the stored one.
    """
    moved = session.connection().execute(
        update(Membership)
        .where(Membership.room_id == room_id, Membership.user_id == user_id, Membership.last_read_seq < seq)
        .values(last_read_seq=seq)
    ).rowcount == 1
    if moved:
        return seq, True
    pointer = session.scalar(
        select(Membership.last_read_seq).where(Membership.room_id == room_id, Membership.user_id == user_id))
    return (pointer if pointer is not None else seq), False
