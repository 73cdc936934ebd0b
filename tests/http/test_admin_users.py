"""The admin's user tools over REST: list and search, disable, enable, revoke tokens, reset a password."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jwt
import pytest

from roomcast.identity.tokens import TokenCodec
from tests.helpers import JWT_SECRET, error_of


async def login(client: Any, username: str, password: str, tenant: str | None = None) -> Any:
    body = {"username": username, "password": password} | ({"tenant": tenant} if tenant else {})
    return await client.post("/api/auth/login", json=body)


async def token_works(client: Any, token: str) -> bool:
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401)
    return response.status_code == 200


async def test_list_search_filter_and_paginate(client: Any, users: Any) -> None:
    admin = await users.create("admin", username="root")
    await users.create("member", username="alice", display_name="Alice Liddell")
    await users.create("teacher", username="malice", display_name="Dr Malice")
    await users.create("student", username="bob", display_name="Bobby ALIce")
    await users.create("member", username="alice", tenant="other")  # another tenant: never listed

    everyone = await (await client.get("/api/admin/users", headers=admin.headers)).get_json()
    assert [u["username"] for u in everyone["items"]] == ["root", "alice", "malice", "bob"]
    assert everyone["next_cursor"] is None
    first = everyone["items"][1]
    assert set(first) == {"id", "username", "display_name", "role", "tenant", "online", "is_active", "created_at",
                          "tokens_valid_after"}
    assert first["is_active"] is True and first["tokens_valid_after"] is None and first["created_at"].endswith("Z")

    found = await (await client.get("/api/admin/users?q=ALI", headers=admin.headers)).get_json()
    assert [u["username"] for u in found["items"]] == ["alice", "malice", "bob"]  # username or display name, any case
    teachers = await (await client.get("/api/admin/users?q=ali&role=teacher", headers=admin.headers)).get_json()
    assert [u["username"] for u in teachers["items"]] == ["malice"]
    literal = await (await client.get("/api/admin/users?q=%25", headers=admin.headers)).get_json()
    assert literal["items"] == []  # % and _ are literal characters, not patterns

    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(f"/api/admin/users{query}", headers=admin.headers)).get_json()
        seen += [u["username"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["root", "alice", "malice", "bob"] and pages == 2


async def test_active_filter_shows_disabled_users(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice")
    await users.create("member", username="bob")
    await client.post(f"/api/admin/users/{alice.id}/disable", headers=admin.headers)
    disabled = await (await client.get("/api/admin/users?active=false", headers=admin.headers)).get_json()
    assert [(u["username"], u["is_active"]) for u in disabled["items"]] == [("alice", False)]
    active = await (await client.get("/api/admin/users?active=true", headers=admin.headers)).get_json()
    assert "alice" not in [u["username"] for u in active["items"]]


@pytest.mark.parametrize("q", ["émile", "ÉMILE", "Émile", "öl", "σοφ", "ΣΟΦ"])
async def test_the_search_folds_the_case_of_every_alphabet_on_either_database(client: Any, users: Any,
                                                                              q: str) -> None:
    admin = await users.create("admin")
    await users.create("member", username="emile", display_name="Émile Ölund")
    await users.create("member", username="sofia", display_name="Σοφία")
    found = await (await client.get("/api/admin/users", query_string={"q": q}, headers=admin.headers)).get_json()
    assert len(found["items"]) == 1, found


@pytest.mark.parametrize("name, q", [("ΟΔΟΣ", "ΟΔΟΣ"), ("ΟΔΟΣ", "οδοσ"), ("ΟΔΟΣ", "Σ"), ("ΣΑΣ", "ΑΣ"),
                                     ("İsmail", "İs"), ("İsmail", "İSMAİL"), ("100%_sure\\", "0%_SURE\\")])
async def test_a_name_is_found_by_any_part_of_itself_on_either_database(client: Any, users: Any, name: str,
                                                                        q: str) -> None:
    """The needle folds as the names do: a final 'Σ' or an 'İ' folded otherwise missed the name
    it was part of; LIKE's wildcards in it stay plain characters."""
    admin = await users.create("admin")
    await users.create("member", username="someone", display_name=name)
    await users.create("member", username="other", display_name="100 sure")
    found = await (await client.get("/api/admin/users", query_string={"q": q}, headers=admin.headers)).get_json()
    assert [user["display_name"] for user in found["items"]] == [name], found


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "cursor=nonsense", "role=king",
                                  "active=maybe", "q=" + "x" * 129, "cursor=" + "A" * 33])
async def test_bad_list_queries_are_400(client: Any, users: Any, query: str) -> None:
    admin = await users.create("admin")
    assert await error_of(await client.get(f"/api/admin/users?{query}", headers=admin.headers)) == (
        400, "validation_error")


ROUTES = [("get", ""), ("post", "/disable"), ("post", "/enable"), ("post", "/revoke-tokens"),
          ("post", "/password")]


@pytest.mark.parametrize("role", ["member", "service", "teacher", "bot"])
async def test_only_admins_may_use_them(client: Any, users: Any, role: str) -> None:
    caller = await users.create(role)
    target = await users.create("member")
    assert await error_of(await client.get("/api/admin/users", headers=caller.headers)) == (403, "forbidden")
    for method, suffix in ROUTES:
        response = await getattr(client, method)(f"/api/admin/users/{target.id}{suffix}", headers=caller.headers,
                                                 json={"password": "a new password"} if method == "post" else None)
        assert await error_of(response) == (403, "forbidden"), suffix
    assert await token_works(client, target.token)


async def test_no_token_is_401(client: Any, users: Any) -> None:
    target = await users.create("member")
    assert await error_of(await client.get("/api/admin/users")) == (401, "unauthorized")
    assert await error_of(await client.post(f"/api/admin/users/{target.id}/disable")) == (401, "unauthorized")


@pytest.mark.parametrize("target_id", ["other-tenant", "absent", 0, 2**63, "abc"])
async def test_other_tenants_and_unknown_users_are_404(client: Any, users: Any, target_id: Any) -> None:
    admin = await users.create("admin")
    stranger = await users.create("member", tenant="other")
    user_id = {"other-tenant": stranger.id, "absent": 987654}.get(target_id, target_id)
    for method, suffix in ROUTES:
        response = await getattr(client, method)(f"/api/admin/users/{user_id}{suffix}", headers=admin.headers,
                                                 json={"password": "a new password"} if method == "post" else None)
        assert await error_of(response) == (404, "not_found"), suffix
    assert await token_works(client, stranger.token)  # nothing happened to the other tenant's user


async def test_disable_refuses_login_and_tokens_and_enable_needs_a_new_login(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice", password="correct horse")
    disabled = await client.post(f"/api/admin/users/{alice.id}/disable", headers=admin.headers)
    assert disabled.status_code == 200
    body = await disabled.get_json()
    assert body["is_active"] is False and body["tokens_valid_after"] is not None
    assert not await token_works(client, alice.token)
    assert await error_of(await login(client, "alice", "correct horse")) == (401, "unauthorized")

    enabled = await client.post(f"/api/admin/users/{alice.id}/enable", headers=admin.headers)
    assert (await enabled.get_json())["is_active"] is True
    assert not await token_works(client, alice.token)  # the disable revoked it for good
    fresh = await login(client, "alice", "correct horse")
    assert fresh.status_code == 200 and await token_works(client, (await fresh.get_json())["access_token"])


async def test_an_admin_cannot_disable_itself(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    assert await error_of(await client.post(f"/api/admin/users/{admin.id}/disable", headers=admin.headers)) == (
        400, "validation_error")
    assert await token_works(client, admin.token)


async def test_revoke_refuses_earlier_tokens_even_from_the_same_second(client: Any, users: Any, node: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice", password="correct horse")
    same_second = node.tokens.mint(alice.id)  # minted a moment before the revocation
    revoked = await client.post(f"/api/admin/users/{alice.id}/revoke-tokens", headers=admin.headers)
    assert revoked.status_code == 200 and (await revoked.get_json())["is_active"] is True
    assert not await token_works(client, alice.token)
    assert not await token_works(client, same_second)
    # A login right after the revocation (the same second, likely) gets a token that works.
    fresh = await login(client, "alice", "correct horse")
    assert await token_works(client, (await fresh.get_json())["access_token"])
    assert await token_works(client, node.tokens.mint(alice.id))


async def test_whole_second_iat_from_another_backend_is_refused_in_the_revocation_second(
        client: Any, users: Any) -> None:
    """A backend minting `iat` in whole seconds: its tokens of the revocation's second are refused
    (they may be from before it). The next second's work: the comparison is `iat < tokens_valid_after`."""
    admin = await users.create("admin")
    alice = await users.create("member")
    revoked = await (await client.post(f"/api/admin/users/{alice.id}/revoke-tokens", headers=admin.headers)).get_json()
    moment = datetime.fromisoformat(revoked["tokens_valid_after"].replace("Z", "+00:00")).timestamp()

    def token(iat: int) -> str:
        return jwt.encode({"sub": str(alice.id), "iat": iat, "exp": iat + 3600}, JWT_SECRET, algorithm="HS256")

    assert not await token_works(client, token(int(moment)))
    assert not await token_works(client, token(int(moment) - 1))


async def test_reset_password(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice", password="old password")
    response = await client.post(f"/api/admin/users/{alice.id}/password", headers=admin.headers,
                                 json={"password": "new password"})
    assert response.status_code == 200
    assert await error_of(await login(client, "alice", "old password")) == (401, "unauthorized")
    assert (await login(client, "alice", "new password")).status_code == 200
    assert not await token_works(client, alice.token)  # revoked by default


async def test_reset_password_may_keep_the_tokens(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice", password="old password")
    await client.post(f"/api/admin/users/{alice.id}/password", headers=admin.headers,
                      json={"password": "new password", "revoke_tokens": False})
    assert await token_works(client, alice.token)
    assert (await login(client, "alice", "new password")).status_code == 200


@pytest.mark.parametrize("body", [{}, {"password": "short"}, {"password": "x" * 1025}, {"password": 12345678},
                                  {"password": "long enough", "revoke_tokens": "yes"}, [], "text"])
async def test_bad_password_bodies_are_400(client: Any, users: Any, body: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member", username="alice", password="old password")
    response = await client.post(f"/api/admin/users/{alice.id}/password", headers=admin.headers, json=body)
    assert (await error_of(response))[0] == 400
    assert (await login(client, "alice", "old password")).status_code == 200


async def test_malformed_json_is_400(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    alice = await users.create("member")
    response = await client.post(f"/api/admin/users/{alice.id}/password", data=b"{not json",
                                 headers={**admin.headers, "Content-Type": "application/json"})
    assert await error_of(response) == (400, "malformed_json")


def test_minted_tokens_carry_iat_in_milliseconds() -> None:
    codec = TokenCodec("HS256", JWT_SECRET, JWT_SECRET, 60)
    claims = jwt.decode(codec.mint(7), JWT_SECRET, algorithms=["HS256"])
    assert isinstance(claims["iat"], float) and round(claims["iat"] * 1000) == claims["iat"] * 1000


async def test_openapi_documents_the_admin_user_routes(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    expected = {
        ("get", "/api/admin/users"): {"200", "400", "401", "403", "503"},
        ("get", "/api/admin/users/{user_id}"): {"200", "401", "403", "404", "503"},
        ("post", "/api/admin/users/{user_id}/disable"): {"200", "400", "401", "403", "404", "503"},
        ("post", "/api/admin/users/{user_id}/enable"): {"200", "401", "403", "404", "503"},
        ("post", "/api/admin/users/{user_id}/revoke-tokens"): {"200", "401", "403", "404", "503"},
        ("post", "/api/admin/users/{user_id}/password"): {"200", "400", "401", "403", "404", "413", "503"},
        ("post", "/api/auth/login"): {"200", "400", "401", "413", "429", "503"},
    }
    for (method, path), statuses in expected.items():
        assert set(spec["paths"][path][method]["responses"]) == statuses, (method, path)
    listing = spec["paths"]["/api/admin/users"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"q", "role", "active", "limit", "cursor"}
    body = spec["paths"]["/api/admin/users/{user_id}/password"]["post"]["requestBody"]
    assert body["required"] is True
