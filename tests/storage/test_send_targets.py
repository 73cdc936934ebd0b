"""The webhooks and bots a batch of sends may go to, read in one statement (SQLite runs its own text)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from roomcast.storage.bots import RoomBot
from roomcast.storage.models import Bot, Membership, Room, User, Webhook
from roomcast.storage.send_targets import webhooks_and_room_bots
from roomcast.storage.webhooks import ActiveWebhook


def _world(session: Session) -> dict[str, int]:
    """Tenant "t": rooms a, b, c; an active bot in a and b, a paused bot and a disabled bot's user in a,
    an active and a paused webhook. Tenant "u": a bot and a webhook of its own in its room."""
    ids: dict[str, int] = {}

    def user(name: str, tenant: str = "t", active: bool = True) -> int:
        row = User(tenant=tenant, username=name, display_name=name, role="bot", is_active=active)
        session.add(row)
        session.flush()
        ids[name] = row.id
        return row.id

    def room(name: str, tenant: str = "t", kind: str = "group") -> int:
        row = Room(tenant=tenant, kind=kind, name=name)
        session.add(row)
        session.flush()
        ids[name] = row.id
        return row.id

    a, b, elsewhere = room("a"), room("b", kind="direct"), room("elsewhere", tenant="u")
    room("c")  # no bot in it
    for name, rooms, active, user_active, tenant in [("helper", [a, b], True, True, "t"),
                                                     ("paused", [a], False, True, "t"),
                                                     ("disabled", [a], True, False, "t"),
                                                     ("foreign", [elsewhere], True, True, "u")]:
        bot_id = user(name, tenant, user_active)
        session.add(Bot(user_id=bot_id, tenant=tenant, url=f"http://{name}", secret="s", trigger="all",
                        active=active))
        session.add_all(Membership(room_id=room_id, user_id=bot_id, room_role="member") for room_id in rooms)
    for url, tenant, active in [("http://on", "t", True), ("http://off", "t", False), ("http://theirs", "u", True)]:
        hook = Webhook(tenant=tenant, url=url, secret="s", events='["*"]', active=active)
        session.add(hook)
        session.flush()
        ids[url] = hook.id
    session.flush()
    return ids


async def test_a_batch_reads_the_tenants_active_webhooks_and_each_rooms_active_bots(node: Any) -> None:
    ids = await node.database.write(_world)
    a, b, c, elsewhere = ids["a"], ids["b"], ids["c"], ids["elsewhere"]
    helper = ids["helper"]

    hooks, bots = await node.database.read(webhooks_and_room_bots, "t", [c, b, a, elsewhere])
    assert hooks == [ActiveWebhook(ids["http://on"], "http://on", "s", '["*"]')]
    assert bots == {a: [RoomBot(helper, "helper", "http://helper", "s", "all", "group")],
                    b: [RoomBot(helper, "helper", "http://helper", "s", "all", "direct")],
                    c: [], elsewhere: []}  # another tenant's room: none of its bots

    hooks, bots = await node.database.read(webhooks_and_room_bots, "t", [c], False)
    assert hooks == [] and bots == {c: []}
    hooks, bots = await node.database.read(webhooks_and_room_bots, "t", [])
    assert [hook.url for hook in hooks] == ["http://on"] and bots == {}
