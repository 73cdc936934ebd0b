"""Bots (PROTOCOL §6): the admin API, triggers, replies posted once, no loops; a real receiver as the bot."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from roomcast.node import Node
from tests.chat_helpers import body_of, expect_error, history, make_direct, make_group, send
from tests.helpers import eventually
from tests.webhooks.conftest import FAST
from tests.webhooks.receiver import Received, Receiver, Reply
from tests.ws_client import ws_connect

BOT_SECRET = "bot-secret"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST)  # no settings-file target: the receivers get what bots get, nothing else


def echo(request: Received) -> Reply:
    message = request.json["message"]
    return Reply(body=json.dumps({"reply": {"body": f"echo: {message['body']}",
                                            "reply_to": message["id"]}}).encode(),
                 headers={"content-type": "application/json"})


async def make_bot(client: Any, admin: Any, receiver: Receiver, trigger: str, username: str = "helper",
                   **extra: Any) -> dict[str, Any]:
    return await body_of(await client.post("/api/bots", headers=admin.headers, json={
        "username": username, "url": receiver.url, "secret": BOT_SECRET, "trigger": trigger, **extra}), 201)


class AsBot:
    """The bot's user, with its token, as the chat helpers want a user."""

    def __init__(self, created: dict[str, Any]) -> None:
        self.id = created["user"]["id"]
        self.token = created["token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}


async def bot_messages(client: Any, user: Any, room_id: int, bot_id: int) -> list[dict[str, Any]]:
    return [m for m in (await history(client, user, room_id))["items"] if m["sender"]["id"] == bot_id]


async def deliveries(client: Any, admin: Any, bot_id: int) -> list[dict[str, Any]]:
    page = await body_of(await client.get(f"/api/bots/{bot_id}/deliveries", headers=admin.headers), 200)
    return page["items"]


# --------------------------------------------------------------------------- the admin API


async def test_the_bot_api(node: Node, client: Any, users: Any, receiver: Receiver) -> None:
    admin = await users.create("admin")
    created = await make_bot(client, admin, receiver, "direct", display_name="Helper")
    user = created["user"]
    assert (user["username"], user["display_name"], user["role"], user["tenant"]) == ("helper", "Helper", "bot",
                                                                                    "default")
    bot = created["bot"]
    assert bot["id"] == user["id"] and bot["url"] == receiver.url and bot["trigger"] == "direct" and bot["active"]
    assert "secret" not in bot
    me = await body_of(await client.get("/api/me", headers=AsBot(created).headers), 200)
    assert me["id"] == user["id"] and me["role"] == "bot"

    listed = await body_of(await client.get("/api/bots", headers=admin.headers), 200)
    assert [b["id"] for b in listed["items"]] == [bot["id"]] and listed["next_cursor"] is None
    assert await body_of(await client.get(f"/api/bots/{bot['id']}", headers=admin.headers), 200) == bot
    patched = await body_of(await client.patch(f"/api/bots/{bot['id']}", headers=admin.headers,
                                               json={"trigger": "mention", "active": False,
                                                     "url": "https://example.org/bot", "secret": "new"}), 200)
    assert (patched["trigger"], patched["active"], patched["url"]) == ("mention", False, "https://example.org/bot")

    await expect_error(await client.post("/api/bots", headers=admin.headers, json={
        "username": "helper", "url": receiver.url, "secret": "s", "trigger": "all"}), 409, "conflict")
    for bad in ({"url": "ftp://x", "secret": "s", "trigger": "all"},
                {"url": "https://example.org:70000/bot", "secret": "s", "trigger": "all"},
                {"url": receiver.url, "secret": "s", "trigger": "sometimes"},
                {"url": receiver.url, "trigger": "all"},
                {"url": receiver.url, "secret": "", "trigger": "all"},
                {"url": receiver.url, "secret": "s" * 257, "trigger": "all"},
                {"url": receiver.url, "secret": 5, "trigger": "all"}):
        await expect_error(await client.post("/api/bots", headers=admin.headers, json={"username": "b2", **bad}),
                           400, "validation_error")
    await expect_error(await client.post("/api/bots", headers=admin.headers, json={
        "username": "\u202etob", "url": receiver.url, "secret": "s", "trigger": "all"}), 400, "validation_error")
    await expect_error(await client.patch(f"/api/bots/{bot['id']}", headers=admin.headers,
                                          json={"trigger": "never"}), 400, "validation_error")
    await expect_error(await client.patch(f"/api/bots/{bot['id']}", headers=admin.headers,
                                          json={"url": "javascript:alert(1)"}), 400, "validation_error")

    member = await users.create("member")
    await expect_error(await client.get("/api/bots", headers=member.headers), 403, "forbidden")
    await expect_error(await client.post("/api/bots", headers=member.headers, json={
        "username": "b3", "url": receiver.url, "secret": "s", "trigger": "all"}), 403, "forbidden")
    other = await users.create("admin", tenant="other")
    assert (await body_of(await client.get("/api/bots", headers=other.headers), 200))["items"] == []
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"active": True}} if method == "patch" else {}
        await expect_error(await getattr(client, method)(f"/api/bots/{bot['id']}", headers=other.headers, **kwargs),
                           404, "not_found")
    await expect_error(await client.get(f"/api/bots/{bot['id']}/deliveries", headers=other.headers), 404,
                       "not_found")
    await expect_error(await client.post(f"/api/bots/{bot['id']}/token", headers=other.headers), 404, "not_found")
    for missing in (member.id, 2**63, 0):
        assert (await client.get(f"/api/bots/{missing}", headers=admin.headers)).status_code == 404
    assert (await client.get("/api/bots", headers={"Authorization": "Bearer nope"})).status_code == 401

    assert (await client.delete(f"/api/bots/{bot['id']}", headers=admin.headers)).status_code == 204
    await expect_error(await client.get(f"/api/bots/{bot['id']}", headers=admin.headers), 404, "not_found")
    await expect_error(await client.get("/api/me", headers=AsBot(created).headers), 401, "unauthorized")
    assert (await body_of(await client.get("/api/bots", headers=admin.headers), 200))["items"] == []


async def test_a_new_token_revokes_the_old_one(node: Node, client: Any, users: Any, receiver: Receiver) -> None:
    admin = await users.create("admin")
    created = await make_bot(client, admin, receiver, "direct")
    rotated = await body_of(await client.post(f"/api/bots/{created['user']['id']}/token", headers=admin.headers), 200)
    await expect_error(await client.get("/api/me", headers=AsBot(created).headers), 401, "unauthorized")
    assert (await body_of(await client.get("/api/me", headers=AsBot(rotated).headers), 200))["role"] == "bot"


# --------------------------------------------------------------------------- triggers and replies


async def test_a_bot_answers_in_a_direct_chat(node: Node, client: Any, users: Any, receiver: Receiver,
                                              nursery: trio.Nursery) -> None:
    receiver.reply = echo
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("student")
    bot = AsBot(await make_bot(client, admin, receiver, "direct"))
    room = await make_direct(client, ann, bot)
    sent = await send(client, ann, room["id"], "hi there")
    await eventually(lambda: len(receiver.requests) == 1)
    request = receiver.requests[0]
    assert request.signed_with(BOT_SECRET) and request.headers["x-roomcast-event"] == "message.created"
    body = request.json
    assert body["event"] == "message.created" and body["room"] == room["id"] and body["message"]["id"] == sent["id"]

    async def replied() -> list[dict[str, Any]]:
        return await bot_messages(client, ann, room["id"], bot.id)

    await eventually(replied)
    reply = (await replied())[0]
    assert reply["body"] == "echo: hi there" and reply["reply_to"] == sent["id"] and reply["client_id"] == body["id"]
    await trio.sleep(0.3)
    assert len(receiver.requests) == 1  # its own reply did not reach it
    (delivery,) = await deliveries(client, admin, bot.id)
    assert delivery["status"] == "delivered" and delivery["last_error"] is None and delivery["event_id"] == body["id"]

    group = await make_group(client, ann, [bot])  # trigger direct: a group is not a direct chat
    await send(client, ann, group["id"], "anyone?")
    await trio.sleep(0.3)
    assert len(receiver.requests) == 1


async def test_in_a_group_a_mention_bot_answers_only_when_mentioned_and_bots_never_trigger_bots(
        node: Node, client: Any, users: Any, nursery: trio.Nursery) -> None:
    mention_hook, all_hook = Receiver(), Receiver()
    try:
        mention_hook.reply = echo
        all_hook.reply = lambda r: Reply(body=json.dumps({"reply": {"body": "@helper seen"}}).encode())
        await mention_hook.start(nursery)
        await all_hook.start(nursery)
        admin, ann = await users.create("admin"), await users.create("member")
        helper = AsBot(await make_bot(client, admin, mention_hook, "mention", username="helper"))
        watcher = AsBot(await make_bot(client, admin, all_hook, "all", username="watcher"))
        outsider = AsBot(await make_bot(client, admin, all_hook, "all", username="outsider"))  # in no room
        room = await make_group(client, ann, [helper, watcher])
        await send(client, ann, room["id"], "no mention here, nor of @helpers or mail@helper")
        mentioned = await send(client, ann, room["id"], "@HELPER what time is it?")

        async def replies() -> int:
            items = (await history(client, ann, room["id"]))["items"]
            return sum(m["sender"]["id"] in (helper.id, watcher.id) for m in items)

        await eventually(lambda: len(all_hook.requests) == 2 and len(mention_hook.requests) == 1)
        await eventually(replies, until=3)  # helper once, watcher once per message of ann's
        await trio.sleep(0.5)  # a loop would have gone round by now
        assert [r.json["message"]["id"] for r in mention_hook.requests] == [mentioned["id"]]
        assert len(all_hook.requests) == 2  # ann's two messages; none of the bots' replies
        assert all(r.json["room"] == room["id"] for r in all_hook.requests)
        assert await replies() == 3
        assert outsider.id not in {m["sender"]["id"] for m in (await history(client, ann, room["id"]))["items"]}
    finally:
        mention_hook.stop()
        all_hook.stop()


async def test_a_retried_delivery_posts_one_reply(node: Node, client: Any, users: Any, receiver: Receiver,
                                                  nursery: trio.Nursery) -> None:
    receiver.reply = echo
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "all"))
    room = await make_group(client, ann, [bot])
    await send(client, ann, room["id"], "once")
    await eventually(lambda: bot_messages(client, ann, room["id"], bot.id))
    (delivery,) = await deliveries(client, admin, bot.id)
    for _ in range(2):
        retried = await body_of(await client.post(f"/api/bots/{bot.id}/deliveries/{delivery['id']}/retry",
                                                  headers=admin.headers), 202)
        assert retried["status"] == "pending"

        async def delivered_again(count: int = len(receiver.requests) + 1) -> bool:
            return len(receiver.requests) >= count and (await deliveries(client, admin, bot.id))[0]["status"] \
                == "delivered"

        await eventually(delivered_again)
    assert len({r.json["id"] for r in receiver.requests}) == 1 and len(receiver.requests) == 3
    assert [m["body"] for m in await bot_messages(client, ann, room["id"], bot.id)] == ["echo: once"]
    await expect_error(await client.post(f"/api/bots/{bot.id}/deliveries/999999/retry", headers=admin.headers),
                       404, "not_found")


@pytest.mark.parametrize("answer, noted", [
    (b"not json", "reply ignored: the answer is not JSON"),
    (b"[1, 2]", "reply ignored: the answer must be a JSON object"),
    (b'{"reply": "hi"}', "reply ignored: reply must be an object"),
    (b'{"reply": {"body": 5}}', "reply ignored: reply.body must be a string"),
    (b'{"reply": {"body": "x", "reply_to": 99999999999999999999999}}', "reply ignored: reply.reply_to"),
    (b'{"reply": {"body": "x", "reply_to": 123456}}', "reply not posted: validation_error"),
    (b'{"reply": {"body": "   "}}', "reply not posted: empty_body"),
    (json.dumps({"reply": {"body": "x" * 5000}}).encode(), "reply not posted: validation_error"),
    (b"\xff\xfe", "reply ignored: the answer is not JSON"),
    (b"[" * 100_000, "reply ignored: the answer is longer than"),
])
async def test_a_malformed_reply_is_noted_on_the_delivery_and_nothing_breaks(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery, answer: bytes,
        noted: str) -> None:
    receiver.reply = lambda r: Reply(body=answer if r.json["message"]["body"] == "bad" else b"")
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "all"))
    room = await make_group(client, ann, [bot])
    await send(client, ann, room["id"], "bad")

    async def settled() -> list[dict[str, Any]]:
        return [d for d in await deliveries(client, admin, bot.id) if d["status"] != "pending"]

    await eventually(settled)
    (delivery,) = await settled()
    assert delivery["status"] == "delivered" and delivery["last_error"].startswith(noted), delivery
    assert await bot_messages(client, ann, room["id"], bot.id) == []
    receiver.reply = echo  # the bot mends its ways: the next message is answered
    await send(client, ann, room["id"], "good")
    await eventually(lambda: bot_messages(client, ann, room["id"], bot.id))


async def test_an_inactive_or_deleted_bot_is_sent_nothing(node: Node, client: Any, users: Any, receiver: Receiver,
                                                          nursery: trio.Nursery) -> None:
    receiver.reply = echo
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "all"))
    room = await make_group(client, ann, [bot])
    await body_of(await client.patch(f"/api/bots/{bot.id}", headers=admin.headers, json={"active": False}), 200)
    await send(client, ann, room["id"], "while paused")
    await body_of(await client.patch(f"/api/bots/{bot.id}", headers=admin.headers, json={"active": True}), 200)
    await send(client, ann, room["id"], "back")
    await eventually(lambda: len(receiver.requests) == 1)
    assert receiver.requests[0].json["message"]["body"] == "back"
    assert (await client.delete(f"/api/bots/{bot.id}", headers=admin.headers)).status_code == 204
    await send(client, ann, room["id"], "after delete")
    await trio.sleep(0.3)
    assert len(receiver.requests) == 1


async def test_a_delivery_pending_when_its_bot_is_paused_ends_dead_saying_so(
        client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    """It was dead with "the target no longer exists", though the bot was there, only paused."""
    receiver.reply = lambda request: Reply(status=500)
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "all"))
    room = await make_group(client, ann, [bot])
    await send(client, ann, room["id"], "are you there?")
    await eventually(lambda: len(receiver.requests) >= 1)  # failed once: pending, to be tried again
    await body_of(await client.patch(f"/api/bots/{bot.id}", headers=admin.headers, json={"active": False}), 200)

    async def dead() -> list[dict[str, Any]]:
        return [d for d in await deliveries(client, admin, bot.id) if d["status"] == "dead"]

    await eventually(dead)
    assert [d["last_error"] for d in await dead()] == ["the bot is disabled"]


async def test_a_bot_token_works_over_rest_and_ws(node: Node, client: Any, users: Any, receiver: Receiver,
                                                  live_server: str) -> None:
    admin, ann = await users.create("admin"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "direct"))
    room = await make_group(client, ann, [bot])
    sent = await send(client, bot, room["id"], "posted over REST")
    assert sent["sender"]["id"] == bot.id
    async with ws_connect(live_server, bot.token) as ws:
        assert ws.welcome["user"]["id"] == bot.id and ws.welcome["user"]["role"] == "bot"
        await ws.subscribe(room["id"])
        ack = await ws.request({"type": "send", "room": room["id"], "body": "posted over /ws", "ref": "r1"})
        assert ack["type"] == "ack" and ack["message"]["sender"]["id"] == bot.id
    assert [m["body"] for m in await bot_messages(client, ann, room["id"], bot.id)] == ["posted over REST",
                                                                                       "posted over /ws"]


async def test_rotating_or_deleting_a_bot_closes_its_sessions_with_1008(client: Any, users: Any, receiver: Receiver,
                                                                        live_server: str) -> None:
    admin = await users.create("admin")
    created = await make_bot(client, admin, receiver, "direct")
    bot = AsBot(created)
    async with ws_connect(live_server, bot.token) as ws:
        rotated = AsBot(await body_of(await client.post(f"/api/bots/{bot.id}/token", headers=admin.headers), 200))
        with pytest.raises(ConnectionClosed) as caught, trio.fail_after(10):
            while True:
                await ws.event(timeout=10)
        assert caught.value.reason.code == 1008
    async with ws_connect(live_server, rotated.token) as ws:
        assert (await ws.request({"type": "ping"}))["type"] == "pong"
        assert (await client.delete(f"/api/bots/{bot.id}", headers=admin.headers)).status_code == 204
        with pytest.raises(ConnectionClosed) as caught, trio.fail_after(10):
            while True:
                await ws.event(timeout=10)
        assert caught.value.reason.code == 1008
    await expect_error(await client.get("/api/me", headers=rotated.headers), 401, "unauthorized")
    user = await body_of(await client.get(f"/api/users/{bot.id}", headers=admin.headers), 200)
    assert user["role"] == "bot"  # the user stays (its messages name it), disabled


@pytest.mark.parametrize("settings_overrides", [{**FAST, "send_burst": 1, "send_rate_per_s": 0.5}])
async def test_a_reply_over_the_bots_send_rate_is_posted_later_once(node: Node, client: Any, users: Any,
                                                                    receiver: Receiver, nursery: trio.Nursery) -> None:
    receiver.reply = echo
    await receiver.start(nursery)
    admin, ann, bob = await users.create("admin"), await users.create("member"), await users.create("member")
    bot = AsBot(await make_bot(client, admin, receiver, "all"))
    room = await make_group(client, ann, [bot, bob])
    await send(client, ann, room["id"], "from ann")
    await send(client, bob, room["id"], "from bob")

    async def replies() -> list[str]:
        return sorted(m["body"] for m in await bot_messages(client, ann, room["id"], bot.id))

    await eventually(replies, until=["echo: from ann", "echo: from bob"])
    await trio.sleep(0.3)
    assert await replies() == ["echo: from ann", "echo: from bob"]
    items = await deliveries(client, admin, bot.id)
    assert [d["status"] for d in items] == ["delivered", "delivered"]
    assert sum(d["attempts"] for d in items) >= 3  # the second reply waited for the bot's rate
