"""Presence events in big rooms: `online` is capped, `online_count` tells the whole number."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.chat_helpers import make_group
from tests.ws_client import ws_connect


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"presence_online_limit": 2}


async def test_online_list_is_capped_and_counted(live_server: str, client: Any, users: Any) -> None:
    people = [await users.create("member") for _ in range(4)]
    room = (await make_group(client, people[0], people[1:]))["id"]
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(ws_connect(live_server, people[0].token))
        await watcher.subscribe(room)
        for person in people[1:]:
            other = await stack.enter_async_context(ws_connect(live_server, person.token))
            await other.subscribe(room)
        last = await watcher.until("presence", lambda e: e["user"]["id"] == people[-1].id)
        assert last["online_count"] == 4
        assert [u["id"] for u in last["online"]] == sorted(p.id for p in people)[:2]
        response = await client.get(f"/api/rooms/{room}/presence", headers=people[0].headers)
        assert len((await response.get_json())["online"]) == 4  # the endpoint lists everyone
