"""Webhook delivery end to end: a real receiver on loopback, on SQLite and PostgreSQL (PROTOCOL §6)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from roomcast.http.app import create_app
from roomcast.node import Node, open_node
from roomcast.services.webhook_delivery import WebhookDelivery, ensure_webhook_delivery
from tests.chat_helpers import body_of, make_group, send
from tests.helpers import eventually
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import Receiver, Reply

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def deliveries(client: Any, admin: Any, target: str = "config:0", **query: Any) -> list[dict[str, Any]]:
    text = "&".join(f"{key}={value}" for key, value in query.items())
    page = await body_of(await client.get(f"/api/webhooks/{target}/deliveries?{text}", headers=admin.headers), 200)
    return page["items"]


async def _statuses(client: Any, admin: Any) -> list[str]:
    """The status of each delivery to the configured target."""
    return [item["status"] for item in await deliveries(client, admin)]


async def test_every_event_type_arrives_signed_with_its_documented_body(node: Node, client: Any, users: Any,
                                                                        receiver: Receiver,
                                                                        nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin, ann, bob = await users.create("admin"), await users.create("member"), await users.create("member")
    room = await make_group(client, admin, [ann], name="g")
    await body_of(await client.post(f"/api/rooms/{room['id']}/members", headers=admin.headers,
                                    json={"user_id": bob.id}), 201)
    await body_of(await client.patch(f"/api/rooms/{room['id']}", headers=admin.headers, json={"name": "g2"}), 200)
    message = await send(client, ann, room["id"], "hi ✓")
    await body_of(await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=ann.headers,
                                     json={"body": "hi again"}), 200)
    assert (await client.delete(f"/api/rooms/{room['id']}/messages/{message['id']}",
                                headers=ann.headers)).status_code == 204
    assert (await client.delete(f"/api/rooms/{room['id']}/members/{bob.id}", headers=admin.headers)).status_code == 204
    provisioned = await body_of(await client.put("/api/rooms/by-ref/course:1", headers=admin.headers,
                                                 json={"kind": "group", "name": "c",
                                                       "members": [{"user_id": ann.id}]}), 201)
    assert (await client.delete("/api/rooms/by-ref/course:1", headers=admin.headers)).status_code == 204

    order = ["room.created", "member.added", "room.updated", "message.created", "message.edited", "message.deleted",
             "member.removed", "room.created", "room.deleted"]
    await eventually(lambda: len(receiver.requests) >= len(order))
    await trio.sleep(0.2)
    assert len(receiver.requests) == len(order)  # nothing twice
    for request in receiver.requests:
        assert request.signed_with(SECRET)
        body = request.json
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-roomcast-event"] == body["event"]
        assert request.headers["x-roomcast-delivery"].isdigit()
        assert body["tenant"] == "default" and TIMESTAMP.match(body["delivered_at"])
        assert list(body)[:4] == ["id", "event", "tenant", "room"] and list(body)[-1] == "delivered_at"
    by_room = {room["id"]: [], provisioned["id"]: []}  # type: dict[int, list[dict[str, Any]]]
    for body in receiver.bodies():
        by_room[body["room"]].append(body)
    first = by_room[room["id"]]
    assert [body["event"] for body in first + by_room[provisioned["id"]]] == order
    assert len({body["id"] for body in receiver.bodies()}) == len(order)

    created, added, updated, sent, edited, deleted, removed = first
    assert "seq" not in created and created["kind"] == "group" and created["name"] == "g"
    assert created["members"] == sorted([{"id": admin.id, "room_role": "owner"}, {"id": ann.id, "room_role": "member"}],
                                        key=lambda m: m["id"])
    assert (added["user"], added["room_role"], added["seq"]) == (bob.id, "member", 1)
    assert updated["changes"] == {"name": "g2"} and updated["seq"] == 2
    assert sent["seq"] == 3 and sent["message"]["body"] == "hi ✓" and sent["message"]["id"] == message["id"]
    assert sent["message"]["sender"]["id"] == ann.id
    assert edited["seq"] == 4 and edited["message"]["body"] == "hi again" and edited["message"]["edited_at"]
    assert deleted["seq"] == 5 and deleted["message_id"] == message["id"] and "message" not in deleted
    assert (removed["user"], removed["seq"]) == (bob.id, 6)
    gone = by_room[provisioned["id"]][1]
    assert gone["external_ref"] == "course:1" and "seq" not in gone

    listed = await deliveries(client, admin, limit=200)
    assert {d["status"] for d in listed} == {"delivered"} and len(listed) == len(order)
    assert {d["event_id"] for d in listed} == {body["id"] for body in receiver.bodies()}


async def test_a_receiver_that_is_down_gets_every_event_in_order_once_it_is_back(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    receiver.stop()
    ann = await users.create("admin")
    room = await make_group(client, ann)
    sent = [await send(client, ann, room["id"], f"m{i}") for i in range(5)]  # every send 201 while it is down

    async def failed_once() -> bool:
        items = await deliveries(client, ann)
        return any(d["attempts"] >= 2 and d["last_error"] for d in items)

    await eventually(failed_once)
    items = await deliveries(client, ann)
    assert {d["status"] for d in items} == {"pending"} and not receiver.requests
    head = min(items, key=lambda d: d["id"])
    assert head["last_status_code"] is None and "Connect" in head["last_error"]
    assert all(d["attempts"] == 0 for d in items if d["id"] != head["id"])  # the rest wait their turn

    await receiver.start(nursery)
    await eventually(lambda: len(receiver.bodies("message.created")) == 5)
    bodies = receiver.bodies("message.created")
    assert [b["message"]["id"] for b in bodies] == [m["id"] for m in sent]

    async def all_delivered() -> bool:
        return {d["status"] for d in await deliveries(client, ann)} == {"delivered"}

    await eventually(all_delivered)
    queued = {d["event_id"] for d in await deliveries(client, ann) if d["event"] == "message.created"}
    assert queued == {b["id"] for b in bodies}  # the id queued is the id received


async def test_a_slow_receiver_never_holds_up_a_send(node: Node, client: Any, users: Any, receiver: Receiver,
                                                     nursery: trio.Nursery) -> None:
    release = trio.Event()
    first = True

    def reply(_: Any) -> Reply:
        nonlocal first
        if first:
            first = False
            return Reply(wait=release.wait)  # sleeps far past webhook_timeout_s
        return Reply()

    receiver.reply = reply
    await receiver.start(nursery)
    ann = await users.create("admin")
    room = await make_group(client, ann)
    await eventually(lambda: len(receiver.requests) == 1)  # room.created: hanging
    for i in range(10):
        await send(client, ann, room["id"], f"m{i}")  # 201 each, while the receiver hangs
    await eventually(lambda: len(receiver.bodies("message.created")) == 10)
    created = receiver.bodies("room.created")
    assert len(created) == 2 and created[0]["id"] == created[1]["id"]  # timed out, retried, same id
    assert receiver.requests[1].headers["x-roomcast-attempt"] == "2"
    release.set()


async def test_a_failing_target_retries_with_the_same_id_and_honours_retry_after(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    answers = [Reply(500), Reply(503), Reply(429, {"Retry-After": "1"}), Reply(200)]
    receiver.reply = lambda _: answers.pop(0) if answers else Reply()
    await receiver.start(nursery)
    ann = await users.create("admin")
    await make_group(client, ann)
    await eventually(lambda: len(receiver.requests) == 4)
    assert len({r.json["id"] for r in receiver.requests}) == 1
    assert [r.headers["x-roomcast-attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    assert receiver.requests[3].at - receiver.requests[2].at >= 0.95  # Retry-After: 1
    assert all(r.signed_with(SECRET) for r in receiver.requests)  # each attempt's body is signed afresh

    async def settled() -> bool:
        return (await deliveries(client, ann))[0]["status"] != "pending"

    await eventually(settled)
    [delivery] = await deliveries(client, ann)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 4, 200)
    # /metrics counts every attempt: three failures, one delivery.
    scrape = await (await client.get("/metrics")).get_data(as_text=True)
    exported = {sample.name: sample.value for family in text_string_to_metric_families(scrape)
                for sample in family.samples}
    assert (exported["roomcast_webhook_deliveries_total"], exported["roomcast_webhook_failures_total"]) == (1, 3)


@pytest.mark.parametrize("retry_after", [b"\xb2", "²".encode(), b"soon"])
async def test_a_2xx_with_an_unreadable_retry_after_is_delivered_once(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery, retry_after: bytes) -> None:
    # Found by randomized fuzzing: "²" passed str.isdigit, float() refused it, and the 200 counted as a
    # network error: the event was sent again (and went dead once the attempts ran out).
    receiver.reply = lambda _: Reply(200, {"Retry-After": retry_after})  # type: ignore[dict-item]
    await receiver.start(nursery)
    ann = await users.create("admin")
    await make_group(client, ann)

    async def settled() -> bool:
        return (await deliveries(client, ann))[0]["status"] != "pending"

    await eventually(settled)
    [delivery] = await deliveries(client, ann)
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("delivered", 1, None)
    await trio.sleep(0.3)  # past several retry delays: nothing more is sent
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("webhook_settings", [{"webhook_max_attempts": 3}])
async def test_dead_after_max_attempts_or_at_once_on_a_refusal_and_replayed_on_request(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    receiver.reply = lambda request: Reply(400 if request.json["event"] == "message.created" else 500, body=b"nope")
    await receiver.start(nursery)
    ann = await users.create("admin")
    room = await make_group(client, ann)
    await send(client, ann, room["id"], "refused")

    async def all_dead() -> bool:
        return [d["status"] for d in await deliveries(client, ann)] == ["dead", "dead"]

    await eventually(all_dead)
    refused, created = await deliveries(client, ann)
    assert (created["event"], created["attempts"], created["last_status_code"]) == ("room.created", 3, 500)
    assert created["last_error"] == "HTTP 500: nope" and created["next_attempt_at"] is None
    assert (refused["event"], refused["attempts"], refused["last_status_code"]) == ("message.created", 1, 400)
    assert len(receiver.requests) == 4

    receiver.reply = lambda _: Reply(204)
    response = await client.post(f"/api/webhooks/config:0/deliveries/{created['id']}/retry", headers=ann.headers)
    replay = await body_of(response, 202)
    assert (replay["status"], replay["attempts"]) == ("pending", 0)
    await eventually(lambda: len(receiver.requests) == 5)
    assert receiver.requests[-1].json["id"] == created["event_id"]

    async def delivered() -> bool:
        return (await deliveries(client, ann))[1]["status"] == "delivered"

    await eventually(delivered)


async def test_events_of_a_room_go_in_order_and_a_stuck_room_holds_up_no_other(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    ann = await users.create("admin")
    slow, fast = await make_group(client, ann, name="slow"), await make_group(client, ann, name="fast")

    def reply(request: Any) -> Reply:
        body = request.json
        fast_done = any(b.get("message", {}).get("body") == "f4" for b in receiver.bodies("message.created"))
        if body.get("message", {}).get("body") == "s0" and not fast_done:
            return Reply(502)  # the slow room's first message fails until the fast room is all through
        return Reply()

    receiver.reply = reply
    await receiver.start(nursery)
    for i in range(5):
        await send(client, ann, slow["id"], f"s{i}")
        await send(client, ann, fast["id"], f"f{i}")
    await eventually(lambda: {"s4", "f4"} <= {b["message"]["body"] for b in receiver.bodies("message.created")})
    bodies = receiver.bodies("message.created")
    slow_bodies = [b["message"]["body"] for b in bodies if b["room"] == slow["id"]]
    fast_bodies = [b["message"]["body"] for b in bodies if b["room"] == fast["id"]]
    assert slow_bodies[0] == "s0" and slow_bodies[-5:] == ["s0", "s1", "s2", "s3", "s4"]  # s0 retried, then in order
    assert set(slow_bodies[:-5]) == {"s0"}
    assert fast_bodies == [f"f{i}" for i in range(5)]


async def test_a_node_killed_mid_attempt_loses_nothing(node: Node, client: Any, users: Any, receiver: Receiver,
                                                       nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another node claims the delivery, its receiver hangs, the node dies: after the lease, this node delivers."""
    release = trio.Event()
    receiver.reply = lambda _: Reply(wait=release.wait) if len(receiver.requests) == 1 else Reply()
    await receiver.start(nursery)
    ann = await users.create("admin")
    # The kill must come before the other node's attempt times out: a timeout far above what a busy
    # machine takes between the receiver's first request and the kill, and the shortest lease past it.
    other_settings = node.settings.model_copy(update={"webhook_timeout_s": 8.0, "webhook_lease_s": 8.5})
    with monkeypatch.context() as killed:
        # Killed, not stopped: it gets no chance to give its leases back.
        killed.setattr(WebhookDelivery, "_release_held", lambda self: trio.lowlevel.checkpoint())
        with trio.CancelScope() as doomed:
            async with open_node(other_settings, migrate=False) as other:
                await make_group(create_app(other).test_client(), ann)  # queued and claimed by the other node
                await eventually(lambda: len(receiver.requests) == 1)
                doomed.cancel()  # the node dies mid-attempt, its lease held
    [held] = await deliveries(client, ann)
    assert held["status"] == "pending" and held["attempts"] == 0
    ensure_webhook_delivery(node)
    await eventually(lambda: len(receiver.requests) == 2, timeout=60)
    assert receiver.requests[0].json["id"] == receiver.requests[1].json["id"]
    release.set()


async def test_a_node_that_stops_mid_attempt_gives_its_lease_back(node: Node, client: Any, users: Any,
                                                                  receiver: Receiver, nursery: trio.Nursery) -> None:
    release = trio.Event()
    receiver.reply = lambda _: Reply(wait=release.wait) if len(receiver.requests) == 1 else Reply()
    await receiver.start(nursery)
    ann = await users.create("admin")
    other_settings = node.settings.model_copy(update={"webhook_timeout_s": 60.0, "webhook_lease_s": 120.0})
    async with open_node(other_settings, migrate=False) as other:
        await make_group(create_app(other).test_client(), ann)
        await eventually(lambda: len(receiver.requests) == 1)
    ensure_webhook_delivery(node)  # long before the other node's lease would run out
    await eventually(lambda: len(receiver.requests) == 2, timeout=30)
    assert receiver.requests[0].json["id"] == receiver.requests[1].json["id"]
    release.set()


@pytest.mark.parametrize("db_backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_two_nodes_sharing_postgresql_deliver_each_event_exactly_once(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    ann = await users.create("admin")
    async with open_node(node.settings, migrate=False) as other:
        actors = [ensure_webhook_delivery(node), ensure_webhook_delivery(other)]
        other_client = create_app(other).test_client()
        rooms = [await make_group(client, ann, name=f"r{i}") for i in range(3)]

        async def sender(web: Any, room: dict[str, Any], tag: str) -> None:
            for i in range(15):
                await send(web, ann, room["id"], f"{tag}{i}")

        async with trio.open_nursery() as senders:
            for index, room in enumerate(rooms):
                senders.start_soon(sender, client, room, f"a{index}-")
                senders.start_soon(sender, other_client, room, f"b{index}-")
        total = 3 + 3 * 30
        await eventually(lambda: len(receiver.requests) >= total, timeout=60)
        await trio.sleep(0.5)  # anything delivered twice would have arrived by now
        ids = [body["id"] for body in receiver.bodies()]
        assert len(ids) == total == len(set(ids))
        for room in rooms:
            seqs = [body["seq"] for body in receiver.bodies("message.created") if body["room"] == room["id"]]
            assert seqs == list(range(1, 31))  # per room, in order
        counts = [actor.describe()["delivered"] for actor in actors]
        assert sum(counts) == total


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_database_outage_is_waited_out(node: Node, client: Any, users: Any, receiver: Receiver,
                                               nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes down while an attempt is under way: its outcome and the next claims wait, nothing crashes."""
    from tests.actors.faults import DatabaseOutage

    outage = DatabaseOutage(node.database, monkeypatch)
    answer = trio.Event()
    receiver.reply = lambda _: Reply(wait=answer.wait) if len(receiver.requests) == 1 else Reply()
    await receiver.start(nursery)
    ann = await users.create("admin")
    room = await make_group(client, ann)
    await eventually(lambda: len(receiver.requests) == 1)
    outage.down = True
    answer.set()  # delivered, but the outcome cannot be stored now
    await eventually(lambda: outage.failed_calls >= 6)
    actor = ensure_webhook_delivery(node)
    assert actor.restarts == 0 and actor.describe()["in_flight"] == 1
    outage.down = False
    await send(client, ann, room["id"], "after")
    await eventually(lambda: len(receiver.bodies("message.created")) == 1)
    items = await deliveries(client, ann)
    assert [d["status"] for d in items] in (["delivered", "delivered"], ["pending", "delivered"])
    assert len(receiver.bodies("room.created")) == 1  # stored once it could be: not sent again
    assert actor.restarts == 0


# Attempts held open until answered: a loaded machine must not time them out and retry them meanwhile.
@pytest.mark.parametrize("webhook_settings", [{"webhook_timeout_s": 30.0, "webhook_lease_s": 60.0}])
async def test_a_restart_with_attempts_in_flight_leaves_their_target_free(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor crashes while its target's every slot holds an attempt: the next run delivers them again."""
    crash, crashed = trio.Event(), []
    real_wake_on_mail = WebhookDelivery._wake_on_mail

    async def wake_on_mail(self: WebhookDelivery, ctx: Any) -> None:
        if not crashed:  # the first run only
            await crash.wait()
            crashed.append(True)
            raise RuntimeError("the webhooks actor crashes, for the test")
        await real_wake_on_mail(self, ctx)

    monkeypatch.setattr(WebhookDelivery, "_wake_on_mail", wake_on_mail)
    answer = trio.Event()
    receiver.reply = lambda _: Reply(wait=answer.wait)
    await receiver.start(nursery)
    ann = await users.create("admin")
    cap = node.settings.webhook_target_concurrency
    for n in range(cap):  # one `room.created` per room: each room's first, so all go at once
        await make_group(client, ann, name=f"r{n}")
    await eventually(lambda: len(receiver.requests) == cap)  # every slot of the target is taken
    actor = ensure_webhook_delivery(node)
    crash.set()
    await eventually(lambda: actor.restarts == 1)
    answer.set()
    await eventually(lambda: len(receiver.requests) >= 2 * cap)  # each sent again by the new run
    await eventually(lambda: _statuses(client, ann), until=["delivered"] * cap)
    assert len({body["id"] for body in receiver.bodies("room.created")}) == cap



async def test_a_provisioning_that_changes_roles_and_members_at_once_tells_the_roles_too(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    """A PUT that promotes ann and adds bob used to send only `member.added` (bob): a receiver never
    learned that ann became owner. It now also sends `room.updated` with the whole member list."""
    await receiver.start(nursery)
    service, ann, bob = await users.create("service"), await users.create("member"), await users.create("member")
    put = {"kind": "group", "name": "c", "members": [{"user_id": ann.id}]}
    room = await body_of(await client.put("/api/rooms/by-ref/course:1", headers=service.headers, json=put), 201)
    put["members"] = [{"user_id": ann.id, "room_role": "owner"}, {"user_id": bob.id}]
    await body_of(await client.put("/api/rooms/by-ref/course:1", headers=service.headers, json=put), 200)

    await eventually(lambda: len(receiver.requests) >= 3)
    await trio.sleep(0.2)
    created, *change = receiver.bodies()
    assert created["event"] == "room.created" and created["room"] == room["id"]
    by_event = {body["event"]: body for body in change}
    assert sorted(by_event) == ["member.added", "room.updated"] and len(change) == 2
    assert (by_event["member.added"]["user"], by_event["member.added"]["room_role"]) == (bob.id, "member")
    updated = by_event["room.updated"]
    assert updated["seq"] == by_event["member.added"]["seq"]
    assert [(m["id"], m["room_role"]) for m in updated["changes"]["members"]] == [(ann.id, "owner"), (bob.id, "member")]
    assert updated["changes"]["added"] == [bob.id]
