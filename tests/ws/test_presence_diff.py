"""Presence diffs over /ws (real sockets, both stacks): opting in, the online list with `subscribed`,
joins and leaves as `presence_diff`, and PROTOCOL §5 `presence` events for clients that did not opt in."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from tests.chat_helpers import make_group
from tests.ws_client import WsClient, ws_connect

LEGACY_KEYS = {"type", "room", "user", "status", "online", "online_count"}


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # Long enough that joins made one after another over real sockets fall into few windows.
    return {"presence_window_s": 0.5}


async def subscribe_diff(ws: WsClient, room: int) -> dict[str, Any]:
    reply = await ws.request({"type": "subscribe", "room": room, "presence": "diff"})
    assert reply["type"] == "subscribed", reply
    return reply


async def test_subscribed_carries_the_online_list_and_joins_and_leaves_come_as_diffs(
        live_server: str, client: Any, users: Any) -> None:
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    room = (await make_group(client, alice, [bob, carol]))["id"]
    async with ws_connect(live_server, alice.token) as a, ws_connect(live_server, carol.token) as c:
        legacy = await c.subscribe(room)
        assert "online" not in legacy and "online_count" not in legacy  # unchanged for clients that did not opt in
        reply = await subscribe_diff(a, room)
        assert [u["id"] for u in reply["online"]] == sorted([alice.id, carol.id]) and reply["online_count"] == 2
        assert set(reply["online"][0]) == {"id", "username", "display_name"}
        async with ws_connect(live_server, bob.token) as b:
            await b.subscribe(room)
            joined = await a.until("presence_diff", lambda e: bob.id in [u["id"] for u in e["joins"]])
            assert joined["room"] == room and joined["online_count"] == 3 and joined["leaves"] == []
            old = await c.until("presence", lambda e: e["user"]["id"] == bob.id)
            assert set(old) == LEGACY_KEYS and old["status"] == "joined"
        left = await a.until("presence_diff", lambda e: bool(e["leaves"]))
        assert [u["id"] for u in left["leaves"]] == [bob.id] and left["joins"] == [] and left["online_count"] == 2
        old = await c.until("presence", lambda e: e["status"] == "left")
        assert set(old) == LEGACY_KEYS and old["user"]["id"] == bob.id
        assert sorted(u["id"] for u in old["online"]) == sorted([alice.id, carol.id])
        await a.request({"type": "ping"})
        assert not [e for e in a.pending if e["type"] == "presence"]  # a diff client gets no old-format events


async def test_many_joins_fold_into_few_diffs_that_add_up(live_server: str, client: Any, users: Any) -> None:
    people = [await users.create("member") for _ in range(21)]
    room = (await make_group(client, people[0], people[1:]))["id"]
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(ws_connect(live_server, people[0].token))
        await subscribe_diff(watcher, room)
        others = [await stack.enter_async_context(ws_connect(live_server, p.token)) for p in people[1:]]
        async with trio.open_nursery() as nursery:
            for ws in others:
                nursery.start_soon(ws.subscribe, room)
        seen: set[int] = set()
        truncated = diffs = 0
        # A diff lists at most presence_diff_limit (20) joins, and the watcher's own join may share a
        # window with the others': then one of the 21 is only counted in joins_truncated.
        while len(seen - {people[0].id}) + truncated < 20:
            event = await watcher.until("presence_diff")
            diffs += 1
            seen |= {u["id"] for u in event["joins"]}
            truncated += event["joins_truncated"]
        assert seen <= {p.id for p in people}
        assert diffs < 10  # 20 joins, not 20 events


async def test_a_bad_presence_option_is_a_validation_error(live_server: str, client: Any, users: Any) -> None:
    alice, bob = [await users.create("member") for _ in range(2)]
    room = (await make_group(client, alice, [bob]))["id"]
    async with ws_connect(live_server, alice.token) as a:
        for value in ("full", 1, ["diff"], {"mode": "diff"}, True, "x" * 5000):
            error = await a.request({"type": "subscribe", "room": room, "presence": value})
            assert (error["type"], error["code"]) == ("error", "validation_error"), (value, error)
        assert room not in [e.get("room") for e in a.pending if e["type"] == "subscribed"]
        outsider = await users.create("member")
        async with ws_connect(live_server, outsider.token) as o:
            error = await o.request({"type": "subscribe", "room": room, "presence": "diff"})
            assert (error["type"], error["code"]) == ("error", "not_a_member")
            foreign = await users.create("member", tenant="acme")
            async with ws_connect(live_server, foreign.token) as f:
                error = await f.request({"type": "subscribe", "room": room, "presence": "diff"})
                assert error["type"] == "error" and error["code"] in ("not_found", "not_a_member")
        assert (await subscribe_diff(a, room))["online_count"] == 1  # still usable; `null` means the default
        assert "online" not in await a.request({"type": "subscribe", "room": room, "presence": None})
        again = await subscribe_diff(a, room)  # subscribing again sets the shape anew
        assert [u["id"] for u in again["online"]] == [alice.id] and again["online_count"] == 1
