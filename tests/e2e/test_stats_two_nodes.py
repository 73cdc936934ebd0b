"""Two server processes sharing PostgreSQL and Redis (one server, or a cluster): /api/admin/stats on either
sums both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import eventually
from tests.redis_fixtures import redis_key_prefix, redis_url
from tests.ws_client import ws_connect

from .test_two_nodes import server_process

__all__ = ["redis_key_prefix", "redis_url"]  # on one Redis and on a cluster, keys deleted afterwards

pytestmark = pytest.mark.postgres


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


async def test_stats_sum_across_nodes(tmp_path: Path, database_url: str, redis_url: str, redis_key_prefix: str,
                                      users: Any) -> None:
    admin = await users.create("admin")
    alice, bob = await users.create("member"), await users.create("member")
    fast = {"stats_interval_s": "0.2", "stats_ttl_s": "2"}
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix, **fast) as (_, url_a), \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix, **fast) as (process_b, url_b):
        async with httpx.AsyncClient(timeout=30) as http:
            room = (await http.post(f"{url_a}/api/rooms", headers=alice.headers,
                                    json={"kind": "group", "name": "stats", "members": [bob.id]})).json()["id"]

            async def stats(url: str) -> dict[str, Any]:
                response = await http.get(f"{url}/api/admin/stats", headers=admin.headers)
                assert response.status_code == 200, response.text
                return response.json()

            # alice on both nodes (one user, counted once in total), bob on B; everyone in the room.
            async with ws_connect(url_a, alice.token) as a1, ws_connect(url_b, alice.token) as b1, \
                    ws_connect(url_b, bob.token) as b2:
                for ws in (a1, b1, b2):
                    await ws.subscribe(room)

                async def summed(url: str) -> bool:
                    body = await stats(url)
                    total = body["total"]
                    return body["cluster"] == "redis" and total is not None and (
                        total["nodes"], total["connections"], total["users_online"], total["subscriptions"]
                    ) == (2, 3, 2, 3)

                await eventually(lambda: summed(url_a), timeout=20)
                await eventually(lambda: summed(url_b), timeout=20)
                body = await stats(url_a)
                assert body["node"] == body["nodes"][0]
                by_id = {entry["id"]: entry for entry in body["nodes"]}
                assert len(by_id) == 2
                assert sorted(entry["connections"] for entry in by_id.values()) == [1, 2]
                assert sorted(entry["users_online"] for entry in by_id.values()) == [1, 2]

                # Sends on B are rates on B, and in the total read on A.
                for n in range(5):
                    await b2.request({"type": "send", "room": room, "body": f"m{n}"})

                async def rate_seen_on_a() -> bool:
                    total = (await stats(url_a))["total"]
                    return total["messages_per_s"]["10s"] > 0 and total["deliveries_per_s"]["1m"] > 0

                await eventually(rate_seen_on_a, timeout=20)

            # B stops: its entry leaves the board (withdrawn at once, or expired within stats_ttl_s).
            process_b.terminate()
            await trio.to_thread.run_sync(process_b.wait)

            async def alone() -> bool:
                body = await stats(url_a)
                return body["total"]["nodes"] == 1 and [e["id"] for e in body["nodes"]] == [body["node"]["id"]]

            await eventually(alone, timeout=20)
