"""An admin's change on one node reaches the user cache of another by its notice (PostgreSQL + Redis).

Both nodes run in this process, each with its own stream backend and user cache, as two
processes would; they share only the database and Redis. The cache keeps an entry far longer
than a test waits, so a change seen on the other node came by the notice, however slow the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from roomcast.config import Settings
from roomcast.http.app import create_app
from roomcast.node import Node, open_node
from tests.helpers import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CACHE_TTL_S = 3600.0
WAIT_S = 30.0  # well under the ttl: only the notice can be seen within it


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"user_cache_ttl_s": CACHE_TTL_S}


@pytest.fixture
def stack() -> tuple[str, str]:
    return ("postgresql", "redis")


@pytest.fixture
async def second_node(settings: Settings) -> AsyncIterator[Node]:
    """Another node on the same database and Redis (same key prefix)."""
    async with open_node(settings, migrate=False) as other:
        yield other


@pytest.mark.parametrize("action", ["disable", "revoke-tokens", "password"])
async def test_a_change_on_one_node_refuses_the_cached_token_on_the_other(
        client: Any, users: Any, node: Node, second_node: Node, action: str) -> None:
    there = create_app(second_node).test_client()
    admin, alice = await users.create("admin"), await users.create("member")

    async def cached_there() -> bool:
        assert (await there.get("/api/me", headers=alice.headers)).status_code == 200
        return alice.id in second_node.user_cache._entries

    # A read that a notices gap overtook (the new node's reader may resync at first) keeps nothing.
    await eventually(cached_there, timeout=WAIT_S)
    body = {"password": "a brand new password"} if action == "password" else None
    assert (await client.post(f"/api/admin/users/{alice.id}/{action}", headers=admin.headers,
                              json=body)).status_code == 200

    async def refused_there() -> bool:
        return (await there.get("/api/me", headers=alice.headers)).status_code == 401

    await eventually(refused_there, timeout=WAIT_S)


async def test_enabling_on_one_node_admits_new_tokens_on_the_other(
        client: Any, users: Any, node: Node, second_node: Node) -> None:
    there = create_app(second_node).test_client()
    admin, alice = await users.create("admin"), await users.create("member")
    await client.post(f"/api/admin/users/{alice.id}/disable", headers=admin.headers)
    assert (await there.get("/api/me", headers=alice.headers)).status_code == 401  # cached, disabled, there
    await client.post(f"/api/admin/users/{alice.id}/enable", headers=admin.headers)
    await trio.sleep(0.01)
    fresh = {"Authorization": f"Bearer {node.tokens.mint(alice.id)}"}

    async def admitted_there() -> bool:
        return (await there.get("/api/me", headers=fresh)).status_code == 200

    await eventually(admitted_there, timeout=WAIT_S)
