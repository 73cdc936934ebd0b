"""A consumer that stops reading is closed with 1013; everyone else keeps full speed."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.chat_helpers import make_group
from tests.ws_client import SmallWindowClient, ws_connect

QUEUE = 64


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # The stalled client reads again only at the end, to find the close frame: wait for it.
    return {"ws_outbound_queue": QUEUE, "ws_close_timeout_s": 60.0}


async def test_a_stalled_consumer_is_closed_1013_while_others_get_everything(live_server: str, client: Any,
                                                                             users: Any) -> None:
    people = [await users.create("member") for _ in range(4)]
    room = (await make_group(client, people[0], people[1:]))["id"]
    stalled = await SmallWindowClient.connect(live_server, people[3].token)
    await stalled.send({"type": "subscribe", "room": room})
    body = "x" * 3900  # big events fill the stalled socket's buffers quickly
    total = 300
    received: dict[int, list[int]] = {}

    async def read_all(index: int, fast: Any) -> None:
        events = await fast.collect("message", total, timeout=120)
        received[index] = [int(e["message"]["body"].split(":")[0]) for e in events]

    async with ws_connect(live_server, people[1].token) as fast1, ws_connect(live_server, people[2].token) as fast2, \
            ws_connect(live_server, people[0].token) as sender:
        await fast1.subscribe(room)
        await fast2.subscribe(room)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, 1, fast1)
            nursery.start_soon(read_all, 2, fast2)
            for n in range(total):
                # One at a time: the readers share this process's one thread with the server,
                # so an unpaced burst could outrun them as well as the stalled client.
                reply = await sender.request({"type": "send", "room": room, "body": f"{n}:{body}"})
                assert reply["type"] == "ack"
    assert received == {1: list(range(total)), 2: list(range(total))}
    with trio.fail_after(30):
        assert await stalled.close_code() == 1013
