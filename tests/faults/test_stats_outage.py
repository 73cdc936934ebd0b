"""With Redis or the database down, /api/admin/stats and /metrics still answer with what this node knows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from roomcast.node import Node
from tests.helpers import eventually
from tests.http.test_metrics import scrape, value
from tests.ws_client import ws_connect

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def _stats(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get("/api/admin/stats", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_stats_without_redis_answer_with_this_node(node: Node, live_server: str, users: Any,
                                                         redis_proxy: TcpProxy) -> None:
    admin = await users.create("admin")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http, \
            ws_connect(live_server, admin.token):
        # Redis up: this node's entry is on the board, and the sum is over the board.
        async def on_the_board() -> bool:
            body = await _stats(http, admin.headers)
            return body["cluster"] == "redis" and [n["id"] for n in body["nodes"]] == [node.metrics.node_id]
        await eventually(on_the_board)
        body = await _stats(http, admin.headers)
        assert body["total"]["nodes"] == 1 and body["total"]["connections"] == 1
        assert body["total"]["users_online"] == 1

        redis_proxy.cut()
        body = await _stats(http, admin.headers)
        assert body["cluster"] == "unavailable" and body["total"] is None
        assert body["node"]["connections"] == 1 and body["nodes"] == [body["node"]]
        samples = await scrape(http)  # /metrics too: never an error
        assert value(samples, "roomcast_connections") == 1
        await eventually(lambda: _up(http, "streams"), until=0.0)

        redis_proxy.restore()
        await eventually(on_the_board)
        await eventually(lambda: _up(http, "streams"), until=1.0)


async def test_metrics_answer_while_the_database_is_down(live_server: str, pg_proxy: TcpProxy) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        before = await scrape(http)
        assert value(before, "roomcast_dependency_up", dependency="database") == 1
        pg_proxy.cut()
        await eventually(lambda: _up(http, "database"), until=0.0)
        pg_proxy.restore()
        await eventually(lambda: _up(http, "database"), until=1.0, timeout=30)


async def _up(http: httpx.AsyncClient, dependency: str) -> float:
    return value(await scrape(http), "roomcast_dependency_up", dependency=dependency)
