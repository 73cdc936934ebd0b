"""Marking published outbox rows: by runs of consecutive seqs, exactly the rows given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from roomcast.storage.models import OutboxEvent
from roomcast.storage.outbox import mark_published, seq_runs
from roomcast.timestamps import utcnow
from tests.chat_helpers import make_group, send


def test_keys_make_runs_of_consecutive_seqs_per_room() -> None:
    keys = [(2, 5), (1, 3), (1, 1), (1, 2), (2, 7), (2, 6), (1, 5), (1, 2)]
    assert seq_runs(keys) == [(1, 1, 3), (1, 5, 5), (2, 5, 7)]
    assert seq_runs([]) == []


async def test_only_the_rows_given_are_marked(client: Any, users: Any, node: Any) -> None:
    owner = await users.create("member")
    rooms = [(await make_group(client, owner, name=f"r{n}"))["id"] for n in range(2)]
    for room in rooms:
        for n in range(6):
            await send(client, owner, room, f"{n}")

    marked_keys = [(rooms[0], 1), (rooms[0], 2), (rooms[0], 4), (rooms[1], 6), (rooms[1], 5)]

    def clear_mark_and_read(session: Any) -> set[tuple[int, int]]:
        # In one transaction, so that the relay's own marking cannot come between.
        for event in session.scalars(select(OutboxEvent).where(OutboxEvent.room_id.in_(rooms))):
            event.published_at = None
        session.flush()
        mark_published(session, marked_keys, utcnow())
        rows = session.execute(select(OutboxEvent.room_id, OutboxEvent.seq)
                               .where(OutboxEvent.room_id.in_(rooms), OutboxEvent.published_at.is_not(None)))
        return {(room, seq) for room, seq in rows}

    assert await node.database.write(clear_mark_and_read) == set(marked_keys)
