"""Marking published outbox rows: by runs of consecutive seqs, exactly the rows given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from roomcast.storage.models import OutboxEvent
from roomcast.storage.outbox import mark_published, seq_runs
from roomcast.timestamps import utcnow
from tests.chat_helpers import make_group, send
from tests.helpers import eventually


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

    relay = node.actors.relay
    await eventually(lambda: relay.describe()["unmarked"] == 0 and relay.published == 12)  # its own marking is done

    def clear(session: Any) -> None:
        for event in session.scalars(select(OutboxEvent)):
            event.published_at = None

    await node.database.write(clear)
    marked_keys = [(rooms[0], 1), (rooms[0], 2), (rooms[0], 4), (rooms[1], 6), (rooms[1], 5)]
    await node.database.write(mark_published, marked_keys, utcnow())

    def marked(session: Any) -> set[tuple[int, int]]:
        rows = session.execute(select(OutboxEvent.room_id, OutboxEvent.seq)
                               .where(OutboxEvent.published_at.is_not(None)))
        return {(room, seq) for room, seq in rows}

    assert await node.database.read(marked) == set(marked_keys)
