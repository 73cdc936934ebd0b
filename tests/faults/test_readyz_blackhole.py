"""/readyz answers within its probes' 2 s when a dependency stops answering without refusing
(a network that drops every packet): 503 naming it, then 200 once it answers again."""

from __future__ import annotations

import httpx
import pytest
import trio

from roomcast.node import Node
from tests.helpers import eventually

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize("dependency", ["database", "streams"])
async def test_readyz_names_a_blackholed_dependency_within_its_probe_timeout(
        dependency: str, live_server: str, node: Node, pg_proxy: TcpProxy, redis_proxy: TcpProxy) -> None:
    proxy = pg_proxy if dependency == "database" else redis_proxy
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        proxy.blackhole()
        try:
            held: list[int] = []  # worker slots held after each probe
            for _ in range(4):  # the next ones: while the first one's probe may still be stuck
                with trio.fail_after(4):  # each probe has 2 s; a probe that waits for the dependency hangs here
                    response = await http.get("/readyz")
                assert response.status_code == 503, response.text
                assert response.json()["error"]["details"]["checks"][dependency] == "unavailable"
                held.append(node.database.limiter.borrowed_tokens)
            # Each database probe left its thread waiting on the network, holding a connection and a
            # worker slot: a probe every second took them all within an outage. One stays stuck now.
            assert node.database.stuck_probes == (1 if dependency == "database" else 0)
            assert held[-1] - held[0] < 3, held  # not one more per probe
        finally:
            proxy.restore()  # before the node stops: its shutdown would wait for what is held

        async def ready() -> int:
            return (await http.get("/readyz")).status_code
        await eventually(ready, until=200, timeout=20)
