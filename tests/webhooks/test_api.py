"""The webhook admin API: validation, authorization, tenants, settings-file targets, paging (PROTOCOL §6)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from roomcast.node import Node
from tests.chat_helpers import body_of, expect_error, make_group, send
from tests.helpers import eventually
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import Receiver, Reply

HOOK = {"url": "https://example.test/hook", "secret": "s", "events": ["message.created"]}


async def create(client: Any, admin: Any, **fields: Any) -> dict[str, Any]:
    return await body_of(await client.post("/api/webhooks", headers=admin.headers, json={**HOOK, **fields}), 201)


async def test_create_list_get_patch_delete(client: Any, users: Any, receiver: Receiver) -> None:
    admin = await users.create("admin")
    hook = await create(client, admin)
    assert hook == {"id": hook["id"], "url": HOOK["url"], "events": ["message.created"], "active": True,
                    "source": "api", "created_at": hook["created_at"], "updated_at": hook["updated_at"]}
    assert "secret" not in hook
    everything = await create(client, admin, events="*", active=False)
    assert everything["events"] == ["*"] and not everything["active"]

    listed = await body_of(await client.get("/api/webhooks", headers=admin.headers), 200)
    assert listed["next_cursor"] is None
    assert [item["id"] for item in listed["items"]] == ["config:0", hook["id"], everything["id"]]
    config = listed["items"][0]
    assert (config["source"], config["url"], config["events"]) == ("settings", receiver.url, ["*"])
    assert await body_of(await client.get(f"/api/webhooks/{hook['id']}", headers=admin.headers), 200) == hook
    assert await body_of(await client.get("/api/webhooks/config:0", headers=admin.headers), 200) == config

    changed = await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers,
                                               json={"events": ["room.created", "member.added"], "active": False,
                                                     "url": "http://127.0.0.1:9/x", "secret": "new"}), 200)
    assert (changed["events"], changed["active"], changed["url"]) == (["member.added", "room.created"], False,
                                                                       "http://127.0.0.1:9/x")
    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=admin.headers)).status_code == 204
    await expect_error(await client.get(f"/api/webhooks/{hook['id']}", headers=admin.headers), 404, "not_found")


@pytest.mark.parametrize("fields, field", [
    ({"url": "ftp://example.test/x"}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "http:///nohost"}, "url"),
    ({"url": "http://a..example.test/"}, "url"),
    ({"url": "http://.example.test/"}, "url"),
    ({"url": "http://" + "a" * 64 + ".test/"}, "url"),
    ({"url": "http://a\u200b.test/"}, "url"),
    ({"url": "http://\u3002.test/"}, "url"),
    ({"url": "http://exa mple.test/"}, "url"),
    ({"url": "https://x.test/" + "a" * 2100}, "url"),
    ({"url": "https://x.test:99999/"}, "url"),
    ({"url": "https://x.test:-1/"}, "url"),
    ({"url": "http://127.0.0.1:0/hook"}, "url"),
    ({"url": "https://x.test:8o/"}, "url"),
    ({"url": "https://x.test/\x7f"}, "url"),
    ({"secret": ""}, "secret"),
    ({"secret": "x" * 257}, "secret"),
    ({"events": ["message.created", "message.exploded"]}, "events"),
    ({"events": []}, "events"),
    ({"events": "all"}, "events"),
    ({"events": [1]}, "events"),
    ({"active": "yes"}, "active"),
    ({"url": 5}, "url"),
])
async def test_bad_targets_are_400(client: Any, users: Any, fields: dict[str, Any], field: str) -> None:
    admin = await users.create("admin")
    error = await expect_error(await client.post("/api/webhooks", headers=admin.headers, json={**HOOK, **fields}),
                               400, "validation_error")
    assert field in str(error.get("details")), error
    hook = await create(client, admin)
    await expect_error(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers, json=fields),
                       400, "validation_error")


async def test_malformed_and_missing_bodies_are_400(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    headers = {**admin.headers, "Content-Type": "application/json"}
    await expect_error(await client.post("/api/webhooks", headers=headers, data=b"{nope"), 400, "malformed_json")
    await expect_error(await client.post("/api/webhooks", headers=admin.headers, json={"url": HOOK["url"]}),
                       400, "validation_error")
    await expect_error(await client.post("/api/webhooks", headers=admin.headers, json=[1, 2]), 400,
                       "validation_error")


@pytest.mark.parametrize("role", ["member", "service", "teacher", "bot"])
async def test_only_admins(client: Any, users: Any, role: str) -> None:
    admin, other = await users.create("admin"), await users.create(role)
    hook = await create(client, admin)
    for method, path in [("get", "/api/webhooks"), ("post", "/api/webhooks"), ("get", f"/api/webhooks/{hook['id']}"),
                         ("patch", f"/api/webhooks/{hook['id']}"), ("delete", f"/api/webhooks/{hook['id']}"),
                         ("get", f"/api/webhooks/{hook['id']}/deliveries"),
                         ("post", f"/api/webhooks/{hook['id']}/deliveries/1/retry")]:
        response = await getattr(client, method)(path, headers=other.headers, json=HOOK)
        await expect_error(response, 403, "forbidden")
    await expect_error(await client.get("/api/webhooks"), 401, "unauthorized")


async def test_another_tenants_targets_and_deliveries_do_not_exist(node: Node, client: Any, users: Any,
                                                                   receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin, outsider = await users.create("admin"), await users.create("admin", tenant="other")
    hook = await create(client, admin, url=receiver.url, events="*")
    room = await make_group(client, admin)
    await send(client, admin, room["id"])
    await eventually(lambda: len(receiver.requests) == 4)  # two events, to config:0 and to the API target
    mine = await body_of(await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin.headers), 200)
    assert len(mine["items"]) == 2
    for method, path in [("get", f"/api/webhooks/{hook['id']}"), ("patch", f"/api/webhooks/{hook['id']}"),
                         ("delete", f"/api/webhooks/{hook['id']}"), ("get", f"/api/webhooks/{hook['id']}/deliveries"),
                         ("post", f"/api/webhooks/{hook['id']}/deliveries/{mine['items'][0]['id']}/retry")]:
        response = await getattr(client, method)(path, headers=outsider.headers, json={"active": False})
        await expect_error(response, 404, "not_found")
    listed = await body_of(await client.get("/api/webhooks", headers=outsider.headers), 200)
    assert [item["id"] for item in listed["items"]] == ["config:0"]
    # config:0 is every tenant's, but each sees its own deliveries only.
    theirs = await body_of(await client.get("/api/webhooks/config:0/deliveries", headers=outsider.headers), 200)
    assert theirs["items"] == []
    config_delivery = (await body_of(await client.get("/api/webhooks/config:0/deliveries", headers=admin.headers),
                                     200))["items"][0]
    await expect_error(await client.post(f"/api/webhooks/config:0/deliveries/{config_delivery['id']}/retry",
                                         headers=outsider.headers), 404, "not_found")
    # A delivery of another target is not this target's.
    await expect_error(await client.post(f"/api/webhooks/{hook['id']}/deliveries/{config_delivery['id']}/retry",
                                         headers=admin.headers), 404, "not_found")


async def test_settings_file_targets_are_read_only(client: Any, users: Any) -> None:
    admin = await users.create("admin")
    await expect_error(await client.patch("/api/webhooks/config:0", headers=admin.headers, json={"active": False}),
                       403, "forbidden")
    await expect_error(await client.delete("/api/webhooks/config:0", headers=admin.headers), 403, "forbidden")


@pytest.mark.parametrize("ident", ["config:1", "config:-1", "config:x", "0", "-3", "9223372036854775808",
                                   "99999", "abc", "config:٣"])
async def test_unknown_ids_are_404(client: Any, users: Any, ident: str) -> None:
    admin = await users.create("admin")
    await expect_error(await client.get(f"/api/webhooks/{ident}", headers=admin.headers), 404, "not_found")
    await expect_error(await client.get(f"/api/webhooks/{ident}/deliveries", headers=admin.headers), 404, "not_found")
    await expect_error(await client.post(f"/api/webhooks/{ident}/deliveries/1/retry", headers=admin.headers),
                       404, "not_found")


async def test_deliveries_are_paged_newest_first(node: Node, client: Any, users: Any, receiver: Receiver,
                                                 nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin = await users.create("admin")
    room = await make_group(client, admin)
    for i in range(6):
        await send(client, admin, room["id"], f"m{i}")
    await eventually(lambda: len(receiver.requests) == 7)
    seen: list[int] = []
    cursor = ""
    while True:
        page = await body_of(await client.get(f"/api/webhooks/config:0/deliveries?limit=3&cursor={cursor}",
                                              headers=admin.headers), 200)
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 7
    dead = await body_of(await client.get("/api/webhooks/config:0/deliveries?status=dead", headers=admin.headers),
                         200)
    assert dead["items"] == []
    for query in ["limit=0", "limit=201", "limit=x", "cursor=%%%", "cursor=abc", "status=lost"]:
        await expect_error(await client.get(f"/api/webhooks/config:0/deliveries?{query}", headers=admin.headers),
                           400, "validation_error")
    await expect_error(await client.post("/api/webhooks/config:0/deliveries/99999/retry", headers=admin.headers),
                       404, "not_found")
    await expect_error(await client.post("/api/webhooks/config:0/deliveries/9223372036854775808/retry",
                                         headers=admin.headers), 404, "not_found")


async def test_api_targets_get_their_events_only_and_wait_while_paused(node: Node, client: Any, users: Any,
                                                                       receiver: Receiver,
                                                                       nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin = await users.create("admin")
    hook = await create(client, admin, url=receiver.url + "?api", secret="api-secret", events=["message.created"])
    room = await make_group(client, admin)  # room.created: config:0 only
    await send(client, admin, room["id"], "one")
    await eventually(lambda: len(receiver.requests) == 3)
    api_requests = [r for r in receiver.requests if r.signed_with("api-secret")]
    assert [r.json["event"] for r in api_requests] == ["message.created"]
    assert len([r for r in receiver.requests if r.signed_with(SECRET)]) == 2

    await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers, json={"active": False}),
                  200)
    await send(client, admin, room["id"], "two")  # not queued for a paused target
    await eventually(lambda: len(receiver.requests) == 4)
    await trio.sleep(0.3)
    assert len(receiver.requests) == 4
    listed = await body_of(await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin.headers), 200)
    assert [item["status"] for item in listed["items"]] == ["delivered"]

    # Queued while active, then paused: held (not sent, not dead) until it is active again.
    refuse = True
    receiver.reply = lambda request: Reply(503) if refuse and request.signed_with("api-secret") else Reply()
    await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers, json={"active": True}),
                  200)
    await send(client, admin, room["id"], "three")

    def api_attempts() -> int:
        return len([r for r in receiver.requests
                    if r.signed_with("api-secret") and r.json["message"]["body"] == "three"])

    await eventually(lambda: api_attempts() >= 1)
    await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers, json={"active": False}),
                  200)
    await trio.sleep(0.5)  # an attempt under way when it was paused ends (refused)
    held = api_attempts()
    refuse = False
    await trio.sleep(0.5)  # unpaused, it would be retried within webhook_retry_max_s (0.2 s)
    assert api_attempts() == held
    [pending] = [d for d in (await body_of(await client.get(f"/api/webhooks/{hook['id']}/deliveries",
                                                            headers=admin.headers), 200))["items"]
                 if d["status"] == "pending"]
    assert pending["last_status_code"] == 503
    await body_of(await client.patch(f"/api/webhooks/{hook['id']}", headers=admin.headers, json={"active": True}),
                  200)
    await eventually(lambda: api_attempts() == held + 1)

    async def delivered() -> bool:
        items = (await body_of(await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin.headers),
                               200))["items"]
        return {d["status"] for d in items} == {"delivered"}

    await eventually(delivered)


WEBHOOK_ROUTES = {
    ("post", "/api/webhooks"): {"201", "400", "403", "401", "413", "503"},
    ("get", "/api/webhooks"): {"200", "403", "401", "503"},
    ("get", "/api/webhooks/{webhook}"): {"200", "403", "404", "401", "503"},
    ("patch", "/api/webhooks/{webhook}"): {"200", "400", "403", "404", "401", "413", "503"},
    ("delete", "/api/webhooks/{webhook}"): {"204", "403", "404", "401", "503"},
    ("get", "/api/webhooks/{webhook}/deliveries"): {"200", "400", "403", "404", "401", "503"},
    ("post", "/api/webhooks/{webhook}/deliveries/{delivery_id}/retry"): {"202", "403", "404", "401", "503"},
}


async def test_openapi_documents_the_webhook_routes(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    for (method, path), statuses in WEBHOOK_ROUTES.items():
        assert path in spec["paths"], [p for p in spec["paths"] if "webhooks" in p]
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
        assert operation.get("summary"), (method, path)
    create = spec["paths"]["/api/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["title"] == "WebhookIn"
    delivery = spec["components"]["schemas"]["DeliveryOut"]
    assert {"id", "event_id", "event", "status", "attempts", "last_status_code", "last_error",
            "next_attempt_at"} <= set(delivery["required"])
