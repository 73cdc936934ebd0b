"""GET /api/config (the limits a client checks before sending) and the SDK at /sdk/roomcast.js."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.http.routes.client import CSP


@pytest.fixture
def db_backend() -> str:
    return "sqlite"  # settings and static files: one database is plenty


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"attachment_max_bytes": 12345, "attachment_types": ["image/png", "text/plain"], "max_body_chars": 321}


async def test_a_user_reads_the_limits_the_server_enforces(client: Any, users: Any) -> None:
    for role in ("member", "student", "admin"):
        caller = await users.create(role)
        response = await client.get("/api/config", headers=caller.headers)
        assert response.status_code == 200
        assert await response.get_json() == {"max_body_chars": 321, "attachment_max_bytes": 12345,
                                             "attachment_types": ["image/png", "text/plain"]}


async def test_without_a_valid_token_it_is_401(client: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic eDp5"}):
        response = await client.get("/api/config", headers=headers)
        assert response.status_code == 401
        assert (await response.get_json())["error"]["code"] in ("unauthorized", "token_expired")


async def test_other_methods_are_405(client: Any, users: Any) -> None:
    caller = await users.create("admin")
    response = await client.post("/api/config", headers=caller.headers, json={"attachment_max_bytes": 1})
    assert response.status_code == 405
    assert (await client.get("/api/config", headers=caller.headers)).status_code == 200


async def test_it_is_in_the_openapi_document(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    operation = spec["paths"]["/api/config"]["get"]
    assert "200" in operation["responses"] and "401" in operation["responses"]


async def test_the_sdk_and_its_declarations_are_served_for_any_origin(client: Any) -> None:
    module = await client.get("/sdk/roomcast.js")
    assert module.status_code == 200
    assert module.headers["Content-Type"].startswith("text/javascript")
    assert module.headers["Content-Security-Policy"] == CSP
    assert module.headers["Access-Control-Allow-Origin"] == "*"
    assert "export class RoomcastClient" in (await module.get_data()).decode()
    types = await client.get("/sdk/roomcast.d.ts")
    assert types.status_code == 200
    assert types.headers["Content-Type"].startswith("text/plain")
    assert "export declare class RoomcastClient" in (await types.get_data()).decode()
    for path in ("/sdk/missing.js", "/sdk/..%2Fclient%2Fapp.js", "/sdk/"):
        assert (await client.get(path)).status_code == 404, path
