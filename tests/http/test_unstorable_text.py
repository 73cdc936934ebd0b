"""Text no database can store as sent (a NUL: PostgreSQL's text refuses it) is a 400 naming the field,
on every route that stores text, never a 500 on one database and stored on the other."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat_helpers import body_of
from tests.helpers import error_of

NUL = "a\u0000b"
HOOK_URL = "https://hooks.example.test/roomcast"


async def refused(response: Any, field: str) -> None:
    assert await error_of(response) == (400, "validation_error")
    assert field in (await response.get_data(as_text=True))


async def test_a_user_s_display_name(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    await refused(await client.post("/api/users", headers=admin.headers, json={
        "username": "nul", "password": "long enough", "display_name": NUL}), "display_name")
    created = await client.post("/api/users", headers=admin.headers, json={
        "username": "ok", "password": "long enough", "display_name": "Zoë 🦊"})
    assert (await body_of(created, 201))["display_name"] == "Zoë 🦊"


async def test_a_bot_s_display_name_and_secret(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    bot = {"username": "helper", "url": HOOK_URL, "secret": "s3cret", "trigger": "direct"}
    await refused(await client.post("/api/bots", headers=admin.headers, json={**bot, "display_name": NUL}),
                  "display_name")
    await refused(await client.post("/api/bots", headers=admin.headers, json={**bot, "secret": NUL}), "secret")
    created = await body_of(await client.post("/api/bots", headers=admin.headers, json=bot), 201)
    await refused(await client.patch(f"/api/bots/{created['bot']['id']}", headers=admin.headers,
                                     json={"secret": NUL}), "secret")


async def test_a_webhook_s_secret(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    hook = {"url": HOOK_URL, "secret": "s3cret", "events": "*"}
    await refused(await client.post("/api/webhooks", headers=admin.headers, json={**hook, "secret": NUL}), "secret")
    created = await body_of(await client.post("/api/webhooks", headers=admin.headers, json=hook), 201)
    await refused(await client.patch(f"/api/webhooks/{created['id']}", headers=admin.headers,
                                     json={"secret": NUL}), "secret")


@pytest.mark.parametrize("q", ["a%00b", "%00"])
async def test_an_admin_user_search(client: Any, users: Any, q: str) -> None:
    admin = await users.create("admin")
    await refused(await client.get(f"/api/admin/users?q={q}", headers=admin.headers), "q")


@pytest.mark.parametrize("method", ["put", "delete"])
async def test_a_room_s_external_ref(client: Any, users: Any, method: str) -> None:
    admin = await users.create("admin")
    body = {"json": {"kind": "group", "name": "n", "members": []}} if method == "put" else {}
    response = await getattr(client, method)("/api/rooms/by-ref/a%00b", headers=admin.headers, **body)
    await refused(response, "external_ref")
