"""GET /api/admin/stats (PROTOCOL §6): live figures for admins, rates over 10 s and 1 min."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from roomcast.http.schemas import StatsOut
from roomcast.services.monitoring import Rates
from tests.helpers import eventually
from tests.ws_client import ws_connect

FIGURES = {"id", "host", "pid", "started_at", "updated_at", "connections", "users_online", "subscriptions", "rooms",
           "messages_per_s", "deliveries_per_s"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"stats_interval_s": 0.2, "send_burst": 1000}


async def test_without_a_token_it_is_401(client: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
        response = await client.get("/api/admin/stats", headers=headers)
        assert response.status_code == 401
        assert (await response.get_json())["error"]["code"] in ("unauthorized", "token_expired")


@pytest.mark.parametrize("role", ["member", "service", "teacher", "bot"])
async def test_other_roles_get_403(client: Any, users: Any, role: str) -> None:
    caller = await users.create(role)
    response = await client.get("/api/admin/stats", headers=caller.headers)
    assert response.status_code == 403
    assert (await response.get_json())["error"]["code"] == "forbidden"


async def test_an_admin_sees_the_node_live(live_server: str, users: Any) -> None:
    admin = await users.create("admin")
    other_tenant_admin = await users.create("admin", tenant="acme")
    alice, bob = await users.create("member"), await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        room = (await http.post("/api/rooms", headers=alice.headers,
                                json={"kind": "group", "name": "stats", "members": [bob.id]})).json()["id"]
        async with ws_connect(live_server, alice.token) as first, ws_connect(live_server, alice.token) as second, \
                ws_connect(live_server, bob.token) as third:
            for ws in (first, second, third):
                await ws.subscribe(room)
            response = await http.get("/api/admin/stats", headers=admin.headers)
            assert response.status_code == 200
            body = response.json()
            assert set(body) == {"node", "nodes", "total", "cluster"}
            StatsOut.model_validate(body)  # what /openapi.json documents
            node = body["node"]
            assert set(node) == FIGURES
            assert (node["connections"], node["users_online"], node["subscriptions"]) == (3, 2, 3)
            assert node["rooms"] >= 1
            assert body["cluster"] == "single" and body["nodes"] == [node]
            total = body["total"]
            assert total["nodes"] == 1 and total["connections"] == 3 and total["users_online"] == 2
            # Node-wide, whatever the admin's tenant (documented).
            acme = (await http.get("/api/admin/stats", headers=other_tenant_admin.headers)).json()
            assert acme["node"]["connections"] == 3

            async def rates() -> tuple[float, float]:
                figures = (await http.get("/api/admin/stats", headers=admin.headers)).json()["node"]
                return figures["messages_per_s"]["10s"], figures["deliveries_per_s"]["1m"]

            for n in range(5):
                await first.request({"type": "send", "room": room, "body": f"m{n}"})
            await eventually(lambda: _positive(rates()))
        await eventually(lambda: _connections(http, admin.headers), until=0)


async def _positive(pending: Any) -> bool:
    return all(rate > 0 for rate in await pending)


async def _connections(http: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await http.get("/api/admin/stats", headers=headers)).json()["node"]["connections"]


async def test_rates_over_the_windows(autojump_clock: trio.testing.MockClock) -> None:
    """Sampled once a second as the stats actor does: 10 messages/s for 30 s, then none."""
    rates = Rates(interval_s=1.0)
    assert rates.per_second(trio.current_time(), (0,), 10) == (0.0,)
    count = 0
    for _ in range(30):
        rates.add(trio.current_time(), (count,))
        await trio.sleep(1)
        count += 10
    now = trio.current_time()
    assert rates.per_second(now, (count,), 10) == (10.0,)
    assert rates.per_second(now, (count,), 60) == (10.0,)  # only 30 s of samples yet: over those
    for _ in range(20):
        rates.add(trio.current_time(), (count,))
        await trio.sleep(1)
    now = trio.current_time()
    assert rates.per_second(now, (count,), 10) == (0.0,)
    # The last minute: 300 messages over the 50 s of samples there are.
    assert rates.per_second(now, (count,), 60) == pytest.approx((300 / 50,))
    for _ in range(60):
        rates.add(trio.current_time(), (count,))
        await trio.sleep(1)
    assert rates.per_second(trio.current_time(), (count,), 60) == (0.0,)


async def test_a_counter_never_makes_a_rate_negative(autojump_clock: trio.testing.MockClock) -> None:
    rates = Rates(interval_s=1.0)
    rates.add(trio.current_time(), (100, 5))
    await trio.sleep(2)
    assert rates.per_second(trio.current_time(), (50, 9), 10) == (0.0, 2.0)
