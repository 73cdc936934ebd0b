"""PROTOCOL §2 over REST: login, tokens, /api/me, users, contacts, tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import update

from roomcast.node import Node
from roomcast.storage.models import User
from tests.helpers import JWT_SECRET, error_of

# --------------------------------------------------------------------------- login


async def test_login_returns_a_working_bearer_token(client: Any, users: Any) -> None:
    await users.create("student", username="sam", password="correct horse")
    response = await client.post("/api/auth/login", json={"username": "sam", "password": "correct horse"})
    assert response.status_code == 200
    body = await response.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 86400
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (await me.get_json())["username"] == "sam"


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "sam", "password": "wrong password"},
        {"username": "nobody", "password": "correct horse"},
        {"username": "sam", "password": "correct horse", "tenant": "elsewhere"},
    ],
    ids=["wrong-password", "unknown-user", "other-tenant"],
)
async def test_login_with_wrong_credentials_is_401(client: Any, users: Any, credentials: dict) -> None:
    await users.create("student", username="sam", password="correct horse")
    response = await client.post("/api/auth/login", json=credentials)
    assert await error_of(response) == (401, "unauthorized")


async def test_login_picks_the_tenant(client: Any, users: Any) -> None:
    await users.create("member", username="kim", password="password-a", tenant="acme")
    await users.create("member", username="kim", password="password-b")
    response = await client.post("/api/auth/login",
                                 json={"username": "kim", "password": "password-a", "tenant": "acme"})
    token = (await response.get_json())["access_token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.get_json())["tenant"] == "acme"


async def test_users_without_password_cannot_log_in(client: Any, users: Any) -> None:
    await users.create("bot", username="helper")
    response = await client.post("/api/auth/login", json={"username": "helper", "password": "anything"})
    assert await error_of(response) == (401, "unauthorized")


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "sam"}, {"username": 5, "password": "x"}, {"username": "sam", "password": ["x"]},
     {"username": "s" * 65, "password": "x"}, {"username": "", "password": "x"}, {"username": "a b", "password": "x"},
     [], "text", None],
    ids=["empty", "no-password", "int-username", "list-password", "overlong", "blank", "space", "array", "string",
         "null"],
)
async def test_login_validation(client: Any, body: Any) -> None:
    response = await client.post("/api/auth/login", json=body)
    assert await error_of(response) == (400, "validation_error")


async def test_login_with_malformed_json(client: Any) -> None:
    response = await client.post("/api/auth/login", data=b'{"username": "sam",',
                                 headers={"Content-Type": "application/json"})
    assert await error_of(response) == (400, "malformed_json")


# --------------------------------------------------------------------------- tokens


def forged(claims: dict, secret: str = JWT_SECRET) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


async def test_me(client: Any, users: Any) -> None:
    alice = await users.create("teacher", username="alice", display_name="Alice A.")
    response = await client.get("/api/me", headers=alice.headers)
    assert response.status_code == 200
    assert await response.get_json() == {
        "id": alice.id, "username": "alice", "display_name": "Alice A.", "role": "teacher",
        "tenant": "default", "online": False,
    }


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": ""}, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "unauthorized"),
        ({"Authorization": "Bearer"}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "unauthorized"),
        (forged({"sub": "1", "exp": datetime.now(UTC) - timedelta(minutes=1)}), "token_expired"),
        (forged({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, "wrong-secret-" * 4), "unauthorized"),
        (forged({"sub": "1"}), "unauthorized"),
        (forged({"sub": "999999", "exp": datetime.now(UTC) + timedelta(hours=1)}), "unauthorized"),
        # Signed with the right secret, but the `iat` is no instant a datetime holds.
        (forged({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1), "iat": -1e300}), "unauthorized"),
        (forged({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1), "iat": -10**12}), "unauthorized"),
    ],
    ids=["none", "empty", "basic", "bearer-alone", "garbage", "expired", "forged", "no-exp", "unknown-user",
         "iat-overflowing", "iat-before-year-1"],
)
async def test_bad_tokens_get_401(client: Any, users: Any, headers: dict, code: str) -> None:
    await users.create("member")  # user 1 exists
    response = await client.get("/api/me", headers=headers)
    assert await error_of(response) == (401, code)


async def test_a_disabled_user_is_refused(client: Any, users: Any, node: Node) -> None:
    dana = await users.create("member")
    await node.database.write(lambda s: s.execute(update(User).where(User.id == dana.id).values(is_active=False)))
    assert await error_of(await client.get("/api/me", headers=dana.headers)) == (401, "unauthorized")


async def test_revoked_tokens_are_refused(client: Any, users: Any, node: Node) -> None:
    erin = await users.create("member")
    later = datetime.now(UTC) + timedelta(minutes=1)
    await node.database.write(
        lambda s: s.execute(update(User).where(User.id == erin.id).values(tokens_valid_after=later))
    )
    assert await error_of(await client.get("/api/me", headers=erin.headers)) == (401, "unauthorized")


async def test_a_token_without_iat_is_refused_once_tokens_were_revoked(client: Any, users: Any, node: Node) -> None:
    """Without `iat` a token's age is unknown: accepted until the user's tokens are first revoked."""
    frank = await users.create("member")
    claims = {"sub": str(frank.id), "exp": datetime.now(UTC) + timedelta(hours=1)}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}
    assert (await client.get("/api/me", headers=headers)).status_code == 200  # backends may leave iat out
    earlier = datetime.now(UTC) - timedelta(days=1)  # even a revocation long past applies to it
    await node.database.write(
        lambda s: s.execute(update(User).where(User.id == frank.id).values(tokens_valid_after=earlier))
    )
    # Changed in the database directly, not through the admin tools: cached users see it after
    # user_cache_ttl_s; forgetting the user here stands for that wait.
    node.user_cache.invalidate(frank.id)
    assert await error_of(await client.get("/api/me", headers=headers)) == (401, "unauthorized")
    fresh = {**claims, "iat": datetime.now(UTC)}
    fresh_headers = {"Authorization": f"Bearer {jwt.encode(fresh, JWT_SECRET, algorithm='HS256')}"}
    assert (await client.get("/api/me", headers=fresh_headers)).status_code == 200


# --------------------------------------------------------------------------- users


async def test_admin_creates_a_user(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    response = await client.post("/api/users", headers=admin.headers, json={
        "username": "stu", "password": "long enough", "display_name": "Stu Dent", "role": "student",
    })
    assert response.status_code == 201
    created = await response.get_json()
    assert created | {"id": 0} == {"id": 0, "username": "stu", "display_name": "Stu Dent", "role": "student",
                                   "tenant": "default", "online": False}
    login = await client.post("/api/auth/login", json={"username": "stu", "password": "long enough"})
    assert login.status_code == 200


async def test_service_creates_users_with_defaults(client: Any, users: Any) -> None:
    service = await users.create("service")
    response = await client.post("/api/users", headers=service.headers, json={"username": "newbie"})
    assert response.status_code == 201
    assert (await response.get_json())["role"] == "member"
    assert (await response.get_json())["display_name"] == "newbie"


@pytest.mark.parametrize("role", ["member", "teacher", "student", "bot"])
async def test_only_admin_or_service_create_users(client: Any, users: Any, role: str) -> None:
    caller = await users.create(role)
    response = await client.post("/api/users", headers=caller.headers, json={"username": "x"})
    assert await error_of(response) == (403, "forbidden")


async def test_service_cannot_create_an_admin(client: Any, users: Any) -> None:
    service = await users.create("service")
    response = await client.post("/api/users", headers=service.headers, json={"username": "boss", "role": "admin"})
    assert await error_of(response) == (403, "forbidden")


async def test_users_are_created_in_the_callers_tenant_only(client: Any, users: Any) -> None:
    admin = await users.create("admin", tenant="acme")
    same = await client.post("/api/users", headers=admin.headers, json={"username": "a1", "tenant": "acme"})
    assert (await same.get_json())["tenant"] == "acme"
    other = await client.post("/api/users", headers=admin.headers, json={"username": "a2", "tenant": "globex"})
    assert await error_of(other) == (403, "forbidden")


async def test_duplicate_username_is_409_but_other_tenants_may_reuse_it(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    await users.create("member", username="taken", tenant="acme")
    first = await client.post("/api/users", headers=admin.headers, json={"username": "taken"})
    assert first.status_code == 201
    again = await client.post("/api/users", headers=admin.headers, json={"username": "taken"})
    assert await error_of(again) == (409, "conflict")


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "x", "role": "wizard"}, {"username": "x", "password": "short"}, {"username": 12},
     {"username": "x", "display_name": "d" * 129}, {"username": "x", "role": None}, {"username": "x", "tenant": "a b"},
     {"username": "u" * 65}, {"username": "\u202eecila"}, {"username": "al\u200bice"}, {"username": "a\u00a0b"},
     {"username": "\ue000x"}],
    ids=["empty", "bad-role", "short-password", "int-username", "long-display", "null-role", "bad-tenant", "overlong",
         "rtl-override", "zero-width-space", "no-break-space", "private-use"],
)
async def test_create_user_validation(client: Any, users: Any, body: dict) -> None:
    admin = await users.create("admin")
    response = await client.post("/api/users", headers=admin.headers, json=body)
    assert await error_of(response) == (400, "validation_error")


async def test_a_new_username_may_be_any_visible_unicode(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    for name in ("zoë", "李小龙", "ümit.o'neil", "🦊"):
        created = await client.post("/api/users", headers=admin.headers, json={"username": name})
        assert (await created.get_json())["username"] == name and created.status_code == 201, name


async def test_create_user_needs_a_token(client: Any) -> None:
    response = await client.post("/api/users", json={"username": "x"})
    assert await error_of(response) == (401, "unauthorized")


async def test_get_user_same_tenant(client: Any, users: Any) -> None:
    alice = await users.create("member")
    bob = await users.create("student", username="bob")
    response = await client.get(f"/api/users/{bob.id}", headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json())["username"] == "bob"


async def test_other_tenants_users_do_not_exist(client: Any, users: Any) -> None:
    alice = await users.create("admin")
    stranger = await users.create("member", tenant="acme")
    response = await client.get(f"/api/users/{stranger.id}", headers=alice.headers)
    assert await error_of(response) == (404, "not_found")
    absent = await client.get("/api/users/987654", headers=alice.headers)
    assert await error_of(absent) == (404, "not_found")
    assert (await response.get_json()) == (await absent.get_json())  # nothing tells them apart


@pytest.mark.parametrize("path", ["/api/users/abc", "/api/users/-1", "/api/users/1.5"])
async def test_non_integer_ids_are_404(client: Any, users: Any, path: str) -> None:
    alice = await users.create("admin")
    assert await error_of(await client.get(path, headers=alice.headers)) == (404, "not_found")


# --------------------------------------------------------------------------- contacts


async def contact_names(client: Any, caller: Any, **query: Any) -> list[str]:
    response = await client.get("/api/contacts", headers=caller.headers, query_string=query)
    assert response.status_code == 200
    return [user["username"] for user in (await response.get_json())["items"]]


async def test_contacts_follow_the_default_policy(client: Any, users: Any) -> None:
    for role in ("admin", "teacher", "tutor", "member", "bot", "student", "parent", "service"):
        await users.create(role, username=f"the-{role}")
    await users.create("teacher", username="foreign-teacher", tenant="acme")
    student = await users.create("student", username="me-student")
    assert sorted(await contact_names(client, student)) == [
        "the-admin", "the-bot", "the-member", "the-teacher", "the-tutor"]
    teacher = await users.create("teacher", username="me-teacher")
    assert sorted(await contact_names(client, teacher)) == sorted([
        "the-admin", "the-teacher", "the-tutor", "the-member", "the-bot", "the-student", "the-parent", "me-student"])


async def test_contacts_respect_a_configured_policy(client: Any, users: Any, node: Node) -> None:
    from roomcast.identity.contact_policy import ContactPolicy

    node.contact_policy = ContactPolicy({"student": ["teacher"]})
    await users.create("teacher", username="t")
    await users.create("tutor", username="u")
    student = await users.create("student")
    assert await contact_names(client, student) == ["t"]


async def test_contacts_paginate(client: Any, users: Any) -> None:
    for n in range(5):
        await users.create("member", username=f"m{n}")
    caller = await users.create("admin")
    first = await (await client.get("/api/contacts", headers=caller.headers, query_string={"limit": 2})).get_json()
    assert [u["username"] for u in first["items"]] == ["m0", "m1"] and first["next_cursor"]
    names = [u["username"] for u in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await (await client.get("/api/contacts", headers=caller.headers,
                                       query_string={"limit": 2, "cursor": cursor})).get_json()
        names += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
    assert names == ["m0", "m1", "m2", "m3", "m4"]


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 501}, {"limit": "many"}, {"cursor": "bogus!"}])
async def test_contacts_validation(client: Any, users: Any, query: dict) -> None:
    caller = await users.create("admin")
    response = await client.get("/api/contacts", headers=caller.headers, query_string=query)
    assert await error_of(response) == (400, "validation_error")


# --------------------------------------------------------------------------- threads


async def test_no_query_runs_on_the_event_loop_thread(client: Any, users: Any, query_guard: Any) -> None:
    """Every statement of a realistic round of requests ran in a worker thread."""
    admin = await users.create("admin", password="password1")
    await client.post("/api/auth/login", json={"username": admin.username, "password": "password1"})
    await client.get("/api/me", headers=admin.headers)
    await client.post("/api/users", headers=admin.headers, json={"username": "z1"})
    await client.get("/api/contacts", headers=admin.headers)
    await client.get("/readyz")
    assert query_guard.statements >= 5
    assert query_guard.offences == []
