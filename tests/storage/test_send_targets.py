"""The webhooks and bots a batch of sends may go to, read in one statement (SQLite runs its own text),
and on PostgreSQL in one round trip with the batch's locks."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from roomcast.errors import NotFound
from roomcast.services import messaging, send_store
from roomcast.storage.bots import RoomBot
from roomcast.storage.commit_status import transaction_id
from roomcast.storage.driver_rows import pg_execute_together
from roomcast.storage.models import Bot, Membership, Room, User, Webhook, WebhookDelivery
from roomcast.storage.rooms import LockedForSends, lock_for_sends
from roomcast.storage.send_reads import read_for_sends
from roomcast.storage.send_targets import webhooks_and_room_bots
from roomcast.storage.users import UserSnapshot
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


async def test_a_batch_reads_its_locks_and_targets_together_as_each_read_alone(node: Any) -> None:
    """`read_for_sends` (on PostgreSQL one round trip) gives what the reads give one after another."""
    ids = await node.database.write(_world)
    a, b, c, elsewhere = ids["a"], ids["b"], ids["c"], ids["elsewhere"]
    helper, foreign = ids["helper"], ids["foreign"]
    pairs = {(a, helper), (b, helper), (c, helper), (elsewhere, foreign), (a, foreign)}
    keys = {(a, helper, "x")}
    bot_rooms = {"t": {a, b, c, elsewhere}, "u": {elsewhere, a}}

    def apart(session: Session) -> tuple[Any, Any]:
        return lock_for_sends(session, pairs, keys), {
            tenant: webhooks_and_room_bots(session, tenant, rooms) for tenant, rooms in bot_rooms.items()}

    locked, targets = await node.database.write(lambda session: read_for_sends(session, pairs, keys, bot_rooms))
    assert (locked, targets) == await node.database.write(apart)
    assert set(locked.rooms) == {a, b, c, elsewhere} and locked.members == {(a, helper), (b, helper),
                                                                             (elsewhere, foreign)}
    assert [hook.url for hook in targets["u"][0]] == ["http://theirs"]
    assert targets["u"][1] == {elsewhere: [RoomBot(foreign, "foreign", "http://foreign", "s", "all", "group")],
                               a: []}  # tenant t's room: none of its bots for tenant u
    assert await node.database.write(lambda session: read_for_sends(session, set(), set(), {})) == (
        LockedForSends({}, set(), set()), {})


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_the_transaction_id_comes_along_with_a_batch_s_reads(node: Any) -> None:
    """What settles a COMMIT that goes unanswered (commit_status.py) costs no round trip of its own."""

    def read_then_ask(session: Session) -> tuple[object, int, int]:
        read_for_sends(session, set(), set(), {})
        remembered = session.info.get("roomcast_txid")  # taken along: transaction_id asks nothing more
        return remembered, transaction_id(session), int(session.execute(text("SELECT txid_current()")).scalar_one())

    remembered, taken, current = await node.database.write(read_then_ask)
    assert remembered == taken == current


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_statements_run_together_in_one_transaction_and_fail_as_sqlalchemys(node: Any) -> None:
    def together(session: Session) -> tuple[Any, ...]:
        results = pg_execute_together(session, [("SELECT %(n)b::int + 1", {"n": 1}),
                                                ("SELECT txid_current_if_assigned() IS NULL", {}),
                                                ("SELECT 3 WHERE false", {})])
        # The first statement took the transaction's BEGIN along: it is open (nothing written yet).
        status = session.connection().connection.driver_connection.info.transaction_status
        return (*results, status.name)

    assert await node.database.write(together) == ([(2,)], [(True,)], [], "INTRANS")
    with pytest.raises(sa_exc.ProgrammingError):
        await node.database.write(lambda session: pg_execute_together(
            session, [("SELECT 1", {}), ("SELECT no_such_column FROM rooms", {})]))
    with pytest.raises(sa_exc.DataError):
        await node.database.write(lambda session: pg_execute_together(session, [("SELECT 1 / 0", {})]))
    assert (await node.database.write(together))[0] == [(2,)]  # the connection is fine after a failure


async def test_a_room_read_for_another_tenants_sender_keeps_its_own_bots(node: Any) -> None:
    """A batch reads bots per sending tenant. A sender of tenant u refused in tenant t's room
    (no such room, for u), before or after t's sender in the batch: t's message still wakes the
    room's bot."""
    ids = await node.database.write(_world)

    def people(session: Session) -> list[UserSnapshot]:
        humans = [User(tenant="u", username="stranger", display_name="s", role="member"),
                  User(tenant="t", username="member", display_name="m", role="member")]
        session.add_all(humans)
        session.flush()
        session.add(Membership(room_id=ids["a"], user_id=humans[1].id, room_role="member"))
        return [UserSnapshot.of(human) for human in humans]

    stranger, member = await node.database.write(people)
    for entries in ([(member, messaging.draft_message(node, member, ids["a"], "hello")),
                     (stranger, messaging.draft_message(node, stranger, ids["a"], "knock"))],
                    [(stranger, messaging.draft_message(node, stranger, ids["a"], "knock")),
                     (member, messaging.draft_message(node, member, ids["a"], "hello again"))]):
        outcomes = await node.database.write(
            lambda session, entries=entries: send_store.store_drafts(node, session, entries))
        assert [type(outcome) for outcome in outcomes if isinstance(outcome, Exception)] == [NotFound]
    targets = await node.database.read(lambda session: sorted(session.scalars(
        select(WebhookDelivery.target).where(WebhookDelivery.room_id == ids["a"])).all()))
    assert targets == sorted([f"bot:{ids['helper']}", f"api:{ids['http://on']}"] * 2)
