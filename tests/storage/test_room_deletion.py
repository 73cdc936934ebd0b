"""Deleting a room deletes its messages and outbox rows, which keep no foreign key to it.

A send holds its room's lock until it commits; `delete_room` takes that lock first, so a
send in flight when the room goes is deleted with it, and none is left behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from roomcast.storage.database import create_database_engine
from roomcast.storage.models import Membership, Message, OutboxEvent, Room, User
from roomcast.storage.rooms import delete_room, lock_room_for_send, record_room_message
from roomcast.timestamps import utcnow


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


def _rooms_with_a_member(engine: Engine, count: int) -> tuple[int, list[int]]:
    with engine.begin() as connection:
        user = connection.execute(insert(User).returning(User.id), {
            "tenant": "default", "username": "u", "display_name": "U", "role": "member"}).scalar_one()
        rooms = [connection.execute(insert(Room).returning(Room.id), {
            "tenant": "default", "kind": "group", "name": f"r{n}", "last_seq": 0}).scalar_one()
            for n in range(count)]
        connection.execute(insert(Membership), [{"room_id": room, "user_id": user} for room in rooms])
    return user, rooms


def _send(session: Session, room: int, user: int, seq: int) -> None:
    """One message with its outbox row, as a send stores it (the room locked first)."""
    assert lock_room_for_send(session, "default", room, user) is not None
    message = Message(room_id=room, seq=seq, sender_id=user, body=f"m{seq}")
    session.add(message)
    session.flush()
    session.add(OutboxEvent(room_id=room, seq=seq, type="message", payload="{}"))
    record_room_message(session, room, seq, message.id, utcnow())
    session.flush()


def _rows_of(engine: Engine, room: int) -> tuple[int, int]:
    with Session(engine) as session:
        messages = session.scalar(select(func.count()).select_from(Message).where(Message.room_id == room))
        outbox = session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.room_id == room))
    assert messages is not None and outbox is not None
    return messages, outbox


def test_a_deleted_rooms_messages_and_outbox_rows_go_and_no_other_rooms(engine: Engine) -> None:
    user, (doomed, kept) = _rooms_with_a_member(engine, 2)
    with Session(engine) as session, session.begin():
        for seq in (1, 2, 3):
            _send(session, doomed, user, seq)
            _send(session, kept, user, seq)
    with Session(engine) as session, session.begin():
        delete_room(session, doomed)
    assert _rows_of(engine, doomed) == (0, 0)
    assert _rows_of(engine, kept) == (3, 3)


@pytest.mark.parametrize("db_backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_send_in_flight_goes_with_its_room(engine: Engine) -> None:
    user, (room,) = _rooms_with_a_member(engine, 1)
    deleted = threading.Event()
    failures: list[BaseException] = []

    def delete() -> None:
        try:
            with Session(engine) as session, session.begin():
                delete_room(session, room)
        except BaseException as exc:  # reported in the test, not lost with the thread
            failures.append(exc)
        deleted.set()

    with Session(engine) as sending, sending.begin():
        _send(sending, room, user, 1)
        deleter = threading.Thread(target=delete)
        deleter.start()
        _wait_for_a_lock_wait(engine)
        assert not deleted.is_set()
    deleter.join(timeout=30)
    assert deleted.is_set() and failures == []
    assert _rows_of(engine, room) == (0, 0)
    with Session(engine) as session, session.begin():  # a send after finds no room
        assert lock_room_for_send(session, "default", room, user) is None


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Until another session of this database waits for a row lock (the deleter, on the send's)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting = connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM rooms%'")).scalar()
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the deleter never waited for the send's lock")
