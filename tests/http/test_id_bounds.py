"""Every integer a REST call takes is bounded to the database's id range (1..2^63-1).

Out of range is a 404 in a path (no such thing) and a 400 `validation_error` in a query or
a body — never a 500 from the database; on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.http.pagination import encode_cursor, encode_keyset
from tests.chat_helpers import body_of, expect_error, make_group, send

MAX = 2**63 - 1
OUT_OF_RANGE = ["99999999999999999999999", str(2**63), "0", "-1"]

# Paths with a placeholder for each id: {room}, {message}, {user} are real ones of the test.
PATHS = [
    ("get", "/api/users/{id}"),
    ("get", "/api/rooms/{id}"),
    ("patch", "/api/rooms/{id}"),
    ("post", "/api/rooms/{id}/members"),
    ("delete", "/api/rooms/{id}/members/{user}"),
    ("delete", "/api/rooms/{room}/members/{id}"),
    ("get", "/api/rooms/{id}/messages"),
    ("post", "/api/rooms/{id}/messages"),
    ("patch", "/api/rooms/{id}/messages/{message}"),
    ("patch", "/api/rooms/{room}/messages/{id}"),
    ("delete", "/api/rooms/{id}/messages/{message}"),
    ("delete", "/api/rooms/{room}/messages/{id}"),
    ("post", "/api/rooms/{id}/read"),
    ("get", "/api/rooms/{id}/presence"),
]
BODIES = {"patch": {"name": "n", "body": "b"}, "post": {"user_id": 1, "body": "b", "seq": 0}}


@pytest.fixture
async def world(client: Any, users: Any) -> dict[str, Any]:
    admin = await users.create("admin")
    room = await make_group(client, admin)
    message = await send(client, admin, room["id"])
    return {"admin": admin, "room": room["id"], "message": message["id"]}


async def expect_404_for_each(client: Any, world: dict[str, Any], method: str, path: str,
                              ids: list[str]) -> None:
    """Each of `ids` in the path's id place names nothing: 404 not_found."""
    for value in ids:
        url = path.format(id=value, room=world["room"], message=world["message"], user=world["admin"].id)
        response = await getattr(client, method)(url, headers=world["admin"].headers, json=BODIES.get(method))
        await expect_error(response, 404, "not_found")


@pytest.mark.parametrize("method, path", PATHS)
async def test_path_ids_out_of_range_are_404(client: Any, world: dict[str, Any], method: str, path: str) -> None:
    await expect_404_for_each(client, world, method, path, [*OUT_OF_RANGE, str(MAX)])


@pytest.mark.parametrize("method, path", PATHS)
async def test_path_ids_of_thousands_of_digits_are_404(client: Any, world: dict[str, Any], method: str,
                                                        path: str) -> None:
    # Past 4300 digits int() refuses the text (a ValueError, once a 500); any id that long names nothing.
    await expect_404_for_each(client, world, method, path, ["9" * 5000, "1" * 4301, "0" * 5000 + str(MAX)])


@pytest.mark.parametrize("method, path", PATHS)
async def test_path_ids_in_other_digits_than_ascii_are_404(client: Any, world: dict[str, Any], method: str,
                                                            path: str) -> None:
    # int() reads "\u0661" (Arabic-Indic one) and "\uff11" (fullwidth one) as 1: they named the first room.
    await expect_404_for_each(client, world, method, path, ["\u0661", "\uff11", "1\u0660", "\U0001d7cf"])


@pytest.mark.parametrize("query", [
    *(f"{name}={value}" for name in ("limit", "before", "after") for value in ("99999999999999999999999", 2**63)),
    "before=-1", "after=-1", "limit=0",
])
async def test_history_query_out_of_range_is_400(client: Any, world: dict[str, Any], query: str) -> None:
    response = await client.get(f"/api/rooms/{world['room']}/messages?{query}", headers=world["admin"].headers)
    await expect_error(response, 400, "validation_error")


async def test_history_at_the_top_of_the_range_is_fine(client: Any, world: dict[str, Any]) -> None:
    for query in (f"before={MAX}", f"after={MAX}"):
        response = await client.get(f"/api/rooms/{world['room']}/messages?{query}", headers=world["admin"].headers)
        await body_of(response, 200)


@pytest.mark.parametrize("path, cursor", [
    ("/api/contacts", encode_cursor(10**23)),
    ("/api/contacts", encode_cursor(2**63)),
    ("/api/rooms", encode_keyset(10**23, 1)),
    ("/api/rooms", encode_keyset(1, 2**63)),
    ("/api/rooms", encode_keyset(MAX, 1)),  # a time no datetime can hold
])
async def test_cursors_out_of_range_are_400(client: Any, world: dict[str, Any], path: str, cursor: str) -> None:
    response = await client.get(f"{path}?cursor={cursor}", headers=world["admin"].headers)
    await expect_error(response, 400, "validation_error")


@pytest.mark.parametrize("path", ["/api/contacts", "/api/rooms"])
async def test_limits_out_of_range_are_400(client: Any, world: dict[str, Any], path: str) -> None:
    for value in ("99999999999999999999999", str(2**63), "0"):
        response = await client.get(f"{path}?limit={value}", headers=world["admin"].headers)
        await expect_error(response, 400, "validation_error")


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/rooms", lambda v: {"kind": "group", "name": "g", "members": [v]}),
    ("post", "/api/rooms", lambda v: {"kind": "direct", "members": [v]}),
    ("post", "/api/rooms/{room}/members", lambda v: {"user_id": v}),
    ("put", "/api/rooms/by-ref/ref-1", lambda v: {"kind": "group", "name": "g", "members": [{"user_id": v}]}),
    ("post", "/api/rooms/{room}/messages", lambda v: {"body": "b", "reply_to": v}),
    ("post", "/api/rooms/{room}/messages", lambda v: {"body": "b", "attachments": [v]}),
    ("post", "/api/rooms/{room}/read", lambda v: {"seq": v}),
])
async def test_body_ints_out_of_range_are_400(client: Any, world: dict[str, Any], method: str, path: str,
                                              body: Any) -> None:
    url = path.format(room=world["room"])
    for value in (10**23, 2**63, -1):
        response = await getattr(client, method)(url, headers=world["admin"].headers, json=body(value))
        await expect_error(response, 400, "validation_error")
    # The top of the range is a valid id of nothing: a business answer, not a crash.
    response = await getattr(client, method)(url, headers=world["admin"].headers, json=body(MAX))
    assert response.status_code < 500, await response.get_json()


async def test_a_token_for_an_id_out_of_range_is_401(client: Any, node: Any) -> None:
    import jwt

    from tests.helpers import JWT_SECRET
    for subject in (str(10**23), str(2**63), "0"):
        token = jwt.encode({"sub": subject, "exp": 2**40}, JWT_SECRET, algorithm="HS256")
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        await expect_error(response, 401, "unauthorized")


@pytest.mark.parametrize("path, text", [("/api/contacts", "p\u00b2"), ("/api/rooms", "k\u00b2.1")])
async def test_cursors_with_unicode_digits_are_400(client: Any, world: dict[str, Any], path: str, text: str) -> None:
    import base64
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    response = await client.get(f"{path}?cursor={cursor}", headers=world["admin"].headers)
    await expect_error(response, 400, "validation_error")
