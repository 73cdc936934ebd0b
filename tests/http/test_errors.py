"""Every error the app produces is PROTOCOL §1's envelope: routing, methods, sizes, crashes, outages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roomcast.config import Settings
from roomcast.http.app import create_app
from roomcast.node import Node, open_node
from tests.helpers import error_of


async def test_unknown_route_is_404(client: Any) -> None:
    assert await error_of(await client.get("/api/no/such/thing")) == (404, "not_found")


async def test_wrong_method_is_405_with_allow(client: Any) -> None:
    response = await client.delete("/api/me")
    assert await error_of(response) == (405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


async def test_oversized_body_is_413(client: Any, users: Any, node: Node) -> None:
    admin = await users.create("admin")
    body = b'{"username": "' + b"x" * node.settings.max_request_bytes + b'"}'
    response = await client.post("/api/users", headers=admin.headers | {"Content-Type": "application/json"},
                                 data=body)
    assert await error_of(response) == (413, "too_large")


async def test_non_json_body_is_a_validation_error(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    response = await client.post("/api/users", headers=admin.headers | {"Content-Type": "text/plain"},
                                 data=b"username=x")
    assert await error_of(response) == (400, "validation_error")


async def test_invalid_utf8_is_malformed(client: Any) -> None:
    response = await client.post("/api/auth/login", data=b'{"username": "\xff\xfe"}',
                                 headers={"Content-Type": "application/json"})
    assert await error_of(response) == (400, "malformed_json")


async def test_json_nested_too_deeply_is_a_400(client: Any) -> None:
    for depth in (1000, 100_000):  # past what the parser follows
        body = b'{"username": ' + b"[" * depth + b"]" * depth + b', "password": "x"}'
        response = await client.post("/api/auth/login", data=body, headers={"Content-Type": "application/json"})
        assert await error_of(response) == (400, "validation_error")


async def test_unexpected_crash_is_500_without_details(node: Node) -> None:
    app = create_app(node)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    response = await app.test_client().get("/boom")
    assert await error_of(response) == (500, "internal_error")
    assert "secret" not in (await response.get_data(as_text=True))


async def test_security_headers(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"].startswith("application/json")


async def test_health_and_readiness(client: Any) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert (await ready.get_json())["checks"]["database"] == "ok"


async def test_openapi_document(client: Any) -> None:
    response = await client.get("/openapi.json")
    document = await response.get_json()
    assert document["openapi"].startswith("3.1")
    assert "/api/auth/login" in document["paths"] and "/api/users" in document["paths"]


@pytest.fixture
async def node_without_database(tmp_path: Path, settings: Settings) -> Any:
    # Nothing listens on port 1: every connection attempt is refused at once.
    unreachable = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    async with open_node(unreachable, migrate=False) as node:
        yield node


async def test_database_outage_is_503(node_without_database: Node, settings: Settings) -> None:
    client = create_app(node_without_database).test_client()
    ready = await client.get("/readyz")
    assert await error_of(ready) == (503, "unavailable")
    assert (await ready.get_json())["error"]["details"]["checks"]["database"] == "unavailable"
    assert (await client.get("/healthz")).status_code == 200
    token = node_without_database.tokens.mint(1)
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert await error_of(me) == (503, "unavailable")
    login = await client.post("/api/auth/login", json={"username": "a", "password": "b"})
    assert await error_of(login) == (503, "unavailable")
