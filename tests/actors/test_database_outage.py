"""A database outage is waited out by every actor, never a crash that exhausts a supervisor (DESIGN.md §11).

On MockClock: a minute of virtual outage costs no real time.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
import trio.testing

from roomcast.actors.actor import ActorState
from roomcast.node import Node
from roomcast.services.announcements import MembershipChange, announce
from roomcast.storage.streams import Append

from .faults import DatabaseOutage
from .helpers import Recorder, commit_events, create_rooms, unpublished_count
from .lifecycle import Lifecycle

OUTAGE_S = 60


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_the_tree_survives_a_minute_of_database_errors_and_resumes_by_itself(
        autojump_clock: trio.testing.MockClock, node: Node, users: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle(caplog)
    member = await users.create("member")
    outage = DatabaseOutage(node.database, monkeypatch)
    room_a, room_b = await create_rooms(node, 2)
    subscriber, notices = Recorder(), Recorder()
    await node.rooms.subscribe(room_a, subscriber)
    node.notices.add(member.id, notices)
    await commit_events(node, room_a, 3)
    await subscriber.wait_for(3)
    # Committed and published but not yet read by the room: the stream will show it seq 6 only.
    await commit_events(node, room_a, 3, notify=False, published=True)
    while await unpublished_count(node):
        await trio.sleep(0.1)

    outage.down = True
    went_down = trio.current_time()
    # Every actor that needs the database now meets the outage: the room actor heals a gap
    # (4-5), the relay looks for room B's rows, room B's new actor loads its last seq, and
    # the announcer looks up the room it must announce.
    seq_6 = {"type": "message", "room": room_a, "seq": 6, "message": {"body": "hello 6"}}
    await node.streams.append([Append(room_a, json.dumps(seq_6).encode(), 6)])
    node.notify_committed(room_b)
    announce(node, MembershipChange(room_b, added=(member.id,), removed=()))
    # At least OUTAGE_S virtual seconds, and until each of them has failed three times: on
    # MockClock virtual time may leap past a worker thread still on its way.
    waiting = [("room.waiting_for_database", {"room": room_a}), ("room.waiting_for_database", {"room": room_b}),
               ("announcer.waiting", {}), ("outbox.database_unavailable", {})]
    give_up_at = time.monotonic() + 60  # real seconds: a guard against a hang only
    while trio.current_time() - went_down < OUTAGE_S or not all(
            max((line["attempt"] for line in lifecycle.lines(event, **match)), default=0) >= 3
            for event, match in waiting):
        assert time.monotonic() < give_up_at, [(event, len(lifecycle.lines(event, **m))) for event, m in waiting]
        await trio.sleep(1)

    assert node.actors.root.actor.state is ActorState.RUNNING
    assert not lifecycle.lines("actor.crashed") and not lifecycle.lines("actor.gave_up")
    assert subscriber.seqs == [1, 2, 3]
    # Retried with backoff rather than in a hot loop: each of the four settles at one try per 2.5-5 s.
    assert outage.failed_calls / (trio.current_time() - went_down) < 3
    assert len(lifecycle.lines("dependency.unavailable", dependency="database")) == 1

    outage.down = False
    await subscriber.wait_for(6)
    assert subscriber.seqs == [1, 2, 3, 4, 5, 6]
    await commit_events(node, room_a, 2)
    await subscriber.wait_for(8)
    assert subscriber.seqs == list(range(1, 9))
    late = Recorder()
    await node.rooms.subscribe(room_b, late)  # room B's actor came up by itself
    await commit_events(node, room_b, 1)
    await late.wait_for(1)
    await notices.wait_for(1)  # announced late, not dropped
    assert notices.events[0]["type"] == "room_added"
    assert not lifecycle.lines("actor.crashed") and not lifecycle.lines("actor.gave_up")
    assert len(lifecycle.lines("dependency.recovered", dependency="database")) == 1
