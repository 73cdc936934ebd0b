"""Login throttling: failed attempts per username and per client address, 429 with Retry-After."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest

from roomcast.errors import RateLimited
from roomcast.login_throttle import LoginThrottle
from roomcast.node import Node
from roomcast.ratelimit import SharedRateLimiter
from tests.conftest import REDIS_KINDS, redis_kind_url
from tests.helpers import error_of, eventually
from tests.redis_helpers import delete_keys

ADDRESS = {"client": ("198.51.100.7", 40000)}
OTHER_ADDRESS = {"client": ("198.51.100.8", 40000)}


@pytest.fixture(params=["memory", *REDIS_KINDS])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_backend() -> str:
    return "sqlite"  # the throttle does not touch the database


@pytest.fixture
def throttle_limits() -> dict[str, str]:
    return {"login_failures_per_username": "3/minute", "login_failures_per_address": "5/minute"}


@pytest.fixture
async def settings_overrides(store: str, request: pytest.FixtureRequest,
                             throttle_limits: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    if store == "memory":
        yield throttle_limits
        return
    url, prefix = redis_kind_url(request, store), request.getfixturevalue("redis_key_prefix")
    yield {**throttle_limits, "redis_url": url, "redis_key_prefix": prefix}
    await delete_keys(url, prefix)


@pytest.fixture
def node(node: Node) -> Node:
    """The node, its throttle waiting for Redis as long as a loaded machine may need: past its 1 s the throttle
    fails open (by design, tested below), and a count these tests make would go missing."""
    node.login_throttle.timeout_s = 30.0
    return node


async def attempt(client: Any, username: str, password: str, scope: dict | None = None, **extra: str) -> Any:
    return await client.post("/api/auth/login", json={"username": username, "password": password, **extra},
                             scope_base=scope)


async def test_failures_per_username_are_limited(client: Any, users: Any) -> None:
    await users.create("member", username="alice", password="correct horse")
    await users.create("member", username="alice", password="correct horse", tenant="acme")
    await users.create("member", username="bob", password="correct horse")
    for _ in range(3):
        assert await error_of(await attempt(client, "alice", "wrong")) == (401, "unauthorized")
    refused = await attempt(client, "alice", "correct horse")  # the right password too: it is not checked
    assert await error_of(refused) == (429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = await refused.get_json()
    assert 0 < body["error"]["details"]["retry_after"] <= 60 and "username" in body["error"]["message"]
    # Another username, and the same username in another tenant, are not affected.
    assert (await attempt(client, "bob", "correct horse")).status_code == 200
    assert (await attempt(client, "alice", "correct horse", tenant="acme")).status_code == 200


async def test_unknown_usernames_are_throttled_alike(client: Any) -> None:
    for _ in range(3):
        assert (await attempt(client, "nobody", "guess")).status_code == 401
    assert (await attempt(client, "nobody", "guess")).status_code == 429


async def test_failures_per_address_are_limited(client: Any, users: Any) -> None:
    await users.create("member", username="carol", password="correct horse")
    for n in range(5):  # five usernames, one failure each: no username reaches its limit
        assert (await attempt(client, f"guess{n}", "wrong", ADDRESS)).status_code == 401
    refused = await attempt(client, "carol", "correct horse", ADDRESS)
    assert await error_of(refused) == (429, "rate_limited") and "Retry-After" in refused.headers
    assert "address" in (await refused.get_json())["error"]["message"]
    assert (await attempt(client, "carol", "correct horse", OTHER_ADDRESS)).status_code == 200


async def test_an_ipv6_client_is_counted_by_its_64(client: Any) -> None:
    for n in range(5):  # five addresses of one /64
        scope = {"client": (f"2001:db8:1:2::{n + 1}", 40000)}
        assert (await attempt(client, f"guess{n}", "wrong", scope)).status_code == 401
    assert (await attempt(client, "guess9", "wrong", {"client": ("2001:db8:1:2:ffff::9", 1)})).status_code == 429
    assert (await attempt(client, "guess9", "wrong", {"client": ("2001:db8:1:3::1", 1)})).status_code == 401


async def test_successes_do_not_count(client: Any, users: Any) -> None:
    await users.create("member", username="dave", password="correct horse")
    for _ in range(12):
        assert (await attempt(client, "dave", "correct horse", ADDRESS)).status_code == 200
    for _ in range(2):
        assert (await attempt(client, "dave", "typo", ADDRESS)).status_code == 401
    assert (await attempt(client, "dave", "correct horse", ADDRESS)).status_code == 200


@pytest.mark.parametrize("throttle_limits", [{"login_failures_per_username": "1/second",
                                              "login_failures_per_address": "100/minute"}])
async def test_the_window_moves_on(client: Any, users: Any) -> None:
    await users.create("member", username="erin", password="correct horse")
    assert (await attempt(client, "erin", "wrong")).status_code == 401
    assert (await attempt(client, "erin", "correct horse")).status_code == 429

    async def allowed() -> bool:
        return (await attempt(client, "erin", "correct horse")).status_code == 200

    await eventually(allowed, timeout=10)


@pytest.mark.parametrize("body", [{"username": "x" * 65, "password": "p"}, {"username": "a"}, {}])
async def test_malformed_logins_are_400_and_not_counted(client: Any, users: Any, body: dict) -> None:
    await users.create("member", username="fay", password="correct horse")
    for _ in range(5):
        response = await client.post("/api/auth/login", json=body, scope_base=ADDRESS)
        assert (await error_of(response))[0] == 400
    assert (await attempt(client, "fay", "correct horse", ADDRESS)).status_code == 200


# --------------------------------------------------------------------------- Redis down: fail open


async def test_an_unreachable_redis_lets_logins_and_sends_through_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="roomcast.ratelimit")
    dead = coredis.Redis(host="127.0.0.1", port=1, connect_timeout=0.5, stream_timeout=0.5)
    async with dead:
        throttle = LoginThrottle("2/minute", "5/minute", redis=dead, key_prefix="rc-dead:")
        for _ in range(5):  # nothing counted, nothing refused
            await throttle.check("default", "alice", "198.51.100.7")
            await throttle.failed("default", "alice", "198.51.100.7")

        sends = SharedRateLimiter(dead, "rc-dead:rate:send:", rate_per_s=0.001, burst=2)
        await sends.acquire(1)
        await sends.acquire(1)
        with pytest.raises(RateLimited):  # this node's own bucket meanwhile
            await sends.acquire(1)
        await sends.acquire(2)
    outages = [r for r in caplog.records if r.getMessage() == "ratelimit.store_unavailable"]
    assert len(outages) == 2  # once for the login throttle, once for the send buckets
