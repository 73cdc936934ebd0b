"""/readyz answers within its probes' 2 s when a dependency stops answering without refusing
(a network that drops every packet): 503 naming it, then 200 once it answers again."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.helpers import eventually

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize("dependency", ["database", "streams"])
async def test_readyz_names_a_blackholed_dependency_within_its_probe_timeout(
        dependency: str, live_server: str, pg_proxy: TcpProxy, redis_proxy: TcpProxy) -> None:
    proxy = pg_proxy if dependency == "database" else redis_proxy
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        proxy.blackhole()
        try:
            for _ in range(2):  # the second: while the first one's probe may still be stuck
                with trio.fail_after(4):  # each probe has 2 s; a probe that waits for the dependency hangs here
                    response = await http.get("/readyz")
                assert response.status_code == 503, response.text
                assert response.json()["error"]["details"]["checks"][dependency] == "unavailable"
        finally:
            proxy.restore()  # before the node stops: its shutdown would wait for what is held

        async def ready() -> int:
            return (await http.get("/readyz")).status_code
        await eventually(ready, until=200, timeout=20)
