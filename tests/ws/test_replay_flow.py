"""Catching up with `since` through a slow link is paced by the socket (DESIGN.md §14).

The stored events are big (about 7 MB in all), more than loopback's kernel buffers hold
(a few MB), so the replay must wait for the client to read, as it would on a slow network.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from roomcast.node import Node
from tests.actors.helpers import commit_events
from tests.actors.lifecycle import Lifecycle
from tests.chat_helpers import make_group
from tests.ws_client import SmallWindowClient, ws_connect

STORED = 2400
FILLER = "x" * 3000
LIVE = 20


def room_seqs(events: list[dict[str, Any]], room: int) -> list[int]:
    return [event["seq"] for event in events if event["type"] == "message" and event["room"] == room]


async def replaying_room(node: Node, room: int) -> Any:
    """The room's actor, once it replays to a subscriber."""
    with trio.fail_after(30):
        while True:
            actor = node.rooms.get(room)
            if actor is not None and actor.describe()["replaying"] == 1:
                return actor
            await trio.sleep(0.01)


@pytest.mark.parametrize("ws_settings", [{"ws_outbound_queue": 64}])
async def test_a_client_on_a_slow_link_catches_up_on_thousands_of_events_then_follows_live(
        live_server: str, client: Any, users: Any, node: Node) -> None:
    owner, member = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [member]))["id"]
    await commit_events(node, room, STORED, filler=FILLER)
    slow = await SmallWindowClient.connect(live_server, member.token)
    await slow.send({"type": "subscribe", "room": room, "since": 0})
    actor = await replaying_room(node, room)

    async with ws_connect(live_server, owner.token) as sender:
        for n in range(LIVE):
            reply = await sender.request({"type": "send", "room": room, "body": f"live {n}"})
            assert reply["type"] == "ack"
        # The client has read nothing yet: these were sent while its replay waited for its socket.
        assert actor.describe()["replaying"] == 1
        with trio.fail_after(60):
            # A slow but steady reader: 4 KiB at a time, with a pause after each read.
            events = await slow.read_events(lambda got: len(room_seqs(got, room)) >= STORED + LIVE,
                                            recv_bytes=4096, pause_s=0.001)
            assert slow.closed is None and actor.describe()["replaying"] == 0
            reply = await sender.request({"type": "send", "room": room, "body": "after"})
            assert reply["type"] == "ack"
            events += await slow.read_events(lambda got: len(room_seqs(got, room)) >= 1)
    assert events[1]["type"] == "subscribed"
    assert room_seqs(events, room) == list(range(1, STORED + LIVE + 2))
    assert slow.closed is None


@pytest.mark.parametrize("ws_settings", [{"ws_outbound_queue": 64, "room_replay_stall_s": 0.5,
                                          "ws_close_timeout_s": 60.0}])
async def test_a_client_that_stops_reading_during_its_replay_is_closed_1013_and_forgotten(
        live_server: str, client: Any, users: Any, node: Node, caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle(caplog)
    owner, member = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [member]))["id"]
    await commit_events(node, room, STORED, filler=FILLER)
    stalled = await SmallWindowClient.connect(live_server, member.token)
    await stalled.send({"type": "subscribe", "room": room, "since": 0})
    actor = await replaying_room(node, room)
    with trio.fail_after(30):
        while not lifecycle.lines("room.replay_stalled", room=room):
            await trio.sleep(0.05)
    assert actor.subscriptions == {} and actor._replays is not None and not actor._replays.child_tasks
    with trio.fail_after(30):
        events = await stalled.read_events(lambda got: False)  # everything, up to the close frame
    assert stalled.closed == 1013
    seqs = room_seqs(events, room)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < STORED
