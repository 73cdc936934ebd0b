"""An open /ws of a user disabled, or whose tokens were revoked, after it connected is closed with 1008."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import update
from trio_websocket import ConnectionClosed

from roomcast.storage.models import User
from tests.ws_client import ws_connect


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # Sessions are checked once per heartbeat interval. A client silent for two intervals is dropped,
    # so not much shorter: on a loaded machine the test's own clients missed 0.6 s and were dropped.
    return {"heartbeat_s": 1.0}


async def set_user(node: Any, user_id: int, **values: Any) -> None:
    await node.database.write(lambda session: session.execute(update(User).where(User.id == user_id).values(**values)))


async def closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as caught:
        with trio.fail_after(10):  # a bound: the check runs every 1 s
            while True:
                await ws.event()
    return caught.value.reason.code, caught.value.reason.reason


@pytest.mark.parametrize("change", ["disabled", "revoked"])
async def test_a_disabled_or_revoked_user_is_closed_with_1008(live_server: str, users: Any, node: Any,
                                                              change: str) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    async with ws_connect(live_server, alice.token) as gone, ws_connect(live_server, bob.token) as stays:
        if change == "disabled":
            await set_user(node, alice.id, is_active=False)
        else:
            await set_user(node, alice.id, tokens_valid_after=datetime.now(UTC) + timedelta(seconds=1))
        code, reason = await closed_with(gone)
        assert code == 1008 and ("disabled" in reason or "revoked" in reason)
        assert (await stays.request({"type": "ping"}))["type"] == "pong"
