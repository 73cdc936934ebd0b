"""A valid token costs no database read while its user is cached, and every admin change is seen at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
from sqlalchemy import event

from roomcast.node import Node
from tests.helpers import error_of


@contextmanager
def user_reads(node: Node) -> Iterator[list[str]]:
    """The statements that read the users table while inside."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM users" in statement:
            seen.append(statement)

    for engine in node.database.engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in node.database.engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_a_cached_user_costs_no_database_read(client: Any, users: Any, node: Node) -> None:
    alice = await users.create("member")
    with user_reads(node) as reads:
        assert (await client.get("/api/me", headers=alice.headers)).status_code == 200
        assert len(reads) == 1  # the first request reads the user
        for _ in range(3):
            assert (await client.get("/api/me", headers=alice.headers)).status_code == 200
        assert len(reads) == 1
    assert node.user_cache.hits >= 3


async def test_a_refused_token_is_refused_from_the_cache_too(client: Any, users: Any, node: Node) -> None:
    """A token that fails its signature never reaches the cache; one for an unknown user reads each time."""
    alice = await users.create("member")
    stranger = {"Authorization": f"Bearer {node.tokens.mint(alice.id + 1000)}"}
    for _ in range(2):
        assert await error_of(await client.get("/api/me", headers=stranger)) == (401, "unauthorized")
        assert await error_of(await client.get("/api/me", headers={"Authorization": "Bearer nope"})) == (
            401, "unauthorized")


@pytest.mark.parametrize(("action", "body"), [
    ("disable", None),
    ("revoke-tokens", None),
    ("password", {"password": "a brand new password"}),
])
async def test_an_admin_change_refuses_a_cached_token_at_once(client: Any, users: Any, node: Node, action: str,
                                                              body: Any) -> None:
    admin, alice = await users.create("admin"), await users.create("member")
    assert (await client.get("/api/me", headers=alice.headers)).status_code == 200  # cached now
    answer = await client.post(f"/api/admin/users/{alice.id}/{action}", headers=admin.headers, json=body)
    assert answer.status_code == 200
    assert await error_of(await client.get("/api/me", headers=alice.headers)) == (401, "unauthorized")


async def test_enabling_admits_new_tokens_at_once(client: Any, users: Any, node: Node) -> None:
    admin, alice = await users.create("admin"), await users.create("member")
    await client.post(f"/api/admin/users/{alice.id}/disable", headers=admin.headers)
    assert await error_of(await client.get("/api/me", headers=alice.headers)) == (401, "unauthorized")  # cached
    await client.post(f"/api/admin/users/{alice.id}/enable", headers=admin.headers)
    await trio.sleep(0.01)  # a token of the revocation's own millisecond counts as before it
    fresh = {"Authorization": f"Bearer {node.tokens.mint(alice.id)}"}
    assert (await client.get("/api/me", headers=fresh)).status_code == 200
    assert await error_of(await client.get("/api/me", headers=alice.headers)) == (401, "unauthorized")


async def test_a_reset_that_keeps_tokens_still_refreshes_the_cached_user(client: Any, users: Any,
                                                                         node: Node) -> None:
    admin, alice = await users.create("admin"), await users.create("member")
    assert (await client.get("/api/me", headers=alice.headers)).status_code == 200
    with user_reads(node) as reads:
        await client.post(f"/api/admin/users/{alice.id}/password", headers=admin.headers,
                          json={"password": "another password", "revoke_tokens": False})
        before = len(reads)
        assert (await client.get("/api/me", headers=alice.headers)).status_code == 200
        assert len(reads) == before + 1  # forgotten, read again
