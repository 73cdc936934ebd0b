"""An admin's disable or revoke closes the user's open /ws with 1008 at once, not at the next audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.ws_client import ws_connect, ws_url

# Within this bound (the brief's "within a second"), and the audit cannot be what closed it.
CLOSE_WITHIN_S = 1.0


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"heartbeat_s": 600}  # the periodic audit never runs during these tests


async def close_of(ws: Any, timeout: float) -> tuple[int, str, float]:
    """(code, reason, seconds taken) of the server's close."""
    started = trio.current_time()
    with pytest.raises(ConnectionClosed) as caught, trio.fail_after(timeout):
        while True:
            await ws.event(timeout=timeout)
    return caught.value.reason.code, caught.value.reason.reason, trio.current_time() - started


@pytest.mark.parametrize(("action", "body", "reason"), [
    ("disable", None, "disabled"),
    ("revoke-tokens", None, "revoked"),
    ("password", {"password": "a new password"}, "revoked"),
])
async def test_the_users_sessions_close_with_1008_within_a_second(live_server: str, users: Any, action: str,
                                                                   body: Any, reason: str) -> None:
    admin = await users.create("admin")
    alice, bob = await users.create("member"), await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http, \
            ws_connect(live_server, alice.token) as first, ws_connect(live_server, alice.token) as second, \
            ws_connect(live_server, bob.token) as other:
        response = await http.post(f"/api/admin/users/{alice.id}/{action}", headers=admin.headers, json=body)
        assert response.status_code == 200
        for ws in (first, second):
            code, why, took = await close_of(ws, timeout=10)
            assert code == 1008 and reason in why
            assert took < CLOSE_WITHIN_S, f"closed after {took:.2f} s"
        assert (await other.request({"type": "ping"}))["type"] == "pong"  # nobody else is touched


async def test_changes_that_keep_access_keep_the_session(live_server: str, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http, \
            ws_connect(live_server, alice.token) as ws:
        for action, body in (("enable", None), ("password", {"password": "a new password", "revoke_tokens": False})):
            assert (await http.post(f"/api/admin/users/{alice.id}/{action}", headers=admin.headers,
                                    json=body)).status_code == 200
        await trio.sleep(0.2)  # what a notice would have done by now, it would have done
        assert (await ws.request({"type": "ping"}))["type"] == "pong"


async def test_a_disabled_user_cannot_connect(live_server: str, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        await http.post(f"/api/admin/users/{alice.id}/disable", headers=admin.headers)
    async with open_websocket_url(ws_url(live_server, alice.token)) as ws:
        with pytest.raises(ConnectionClosed) as caught:
            await ws.get_message()
    assert caught.value.reason.code == 1008
