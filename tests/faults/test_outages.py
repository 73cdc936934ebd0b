"""Outages of PostgreSQL and Redis under steady /ws traffic, on a live node (DESIGN.md §11).

The node reaches both through a TcpProxy; cutting one resets every connection to it and
every new one, for a few seconds, while a sender keeps sending over a real socket and a
subscriber listens on another. The node must stay up and say what is wrong (/readyz 503
naming the dependency, `unavailable` errors, 1013 for new connections), then recover by
itself, with every acknowledged message delivered exactly once.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from roomcast.actors.actor import ActorState
from roomcast.node import Node
from tests.actors.lifecycle import Lifecycle
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.ws_client import WsClient, ws_connect, ws_url

from .outage_fixtures import database_url, db_backend, pg_proxy, redis_proxy, settings_overrides
from .proxy import TcpProxy

__all__ = ["database_url", "db_backend", "pg_proxy", "redis_proxy", "settings_overrides"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

OUTAGE_S = 3.0
SEND_EVERY_S = 0.05


@dataclass
class Outage:
    """What one outage looked like from the clients' side: the figures the report gives."""

    dependency: str
    down_s: float = 0.0
    acked: dict[str, int] = field(default_factory=dict)  # client_id -> seq
    sent: set[str] = field(default_factory=set)
    sent_during: int = 0
    acked_during: int = 0
    errors_during: list[str] = field(default_factory=list)  # error codes answered while cut
    other_errors: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # message events the subscriber got
    resubscribes: int = 0
    ready_s: float | None = None  # from restore to /readyz 200
    caught_up_s: float | None = None  # from restore to every acknowledged message delivered

    def figures(self) -> dict[str, Any]:
        got = [event["message"]["client_id"] for event in self.received]
        return {
            "dependency": self.dependency,
            "down_s": round(self.down_s, 2),
            "sent_during": self.sent_during,
            "acked_during": self.acked_during,
            "unavailable_during": self.errors_during.count("unavailable"),
            "lost": len(set(self.acked) - set(got)),
            "duplicated": len(got) - len(set(got)),
            "ready_after_s": _rounded(self.ready_s),
            "caught_up_after_s": _rounded(self.caught_up_s),
            "subscriber_reconnects": self.resubscribes,
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


async def sender(ws: WsClient, room: int, outage: Outage, proxy: TcpProxy, stop: trio.Event) -> None:
    """One send every SEND_EVERY_S, each waited for (ack or error) before the next."""
    for number in itertools.count(1):
        if stop.is_set():
            return
        client_id = f"{outage.dependency}-{number}"
        cut_at_send, cuts = proxy.is_cut, proxy.cuts
        outage.sent.add(client_id)
        reply = await ws.request({"type": "send", "room": room, "body": client_id, "client_id": client_id})
        # A send that met the outage at any point between its frame and its answer counts as during it.
        during = cut_at_send or proxy.is_cut or proxy.cuts != cuts
        outage.sent_during += during
        if reply["type"] == "ack":
            outage.acked[client_id] = reply["message"]["seq"]
            outage.acked_during += during
        elif during:
            outage.errors_during.append(reply["code"])
        else:
            outage.other_errors.append(reply)
        await trio.sleep(SEND_EVERY_S)


async def subscriber(base: str, token: str, room: int, outage: Outage, subscribed: trio.Event) -> None:
    """Follows the room; if its connection ends, reconnects and resubscribes with `since`."""
    since: int | None = None
    while True:
        try:
            async with ws_connect(base, token) as ws:
                await ws.subscribe(room, since)
                subscribed.set()
                while True:
                    event = await ws.event(timeout=3600)
                    if event["type"] == "message":
                        outage.received.append(event)
                        since = event["seq"]
        except (ConnectionClosed, HandshakeError, AssertionError):
            outage.resubscribes += 1
            await trio.sleep(0.2)


async def closed_on_connect(base: str, token: str) -> tuple[int | None, str | None]:
    """Open a /ws and read until the server closes it: its close code and reason."""
    async with open_websocket_url(ws_url(base, token)) as ws:
        with trio.fail_after(10):
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code, exc.reason.reason
    return None, None


async def readiness(client: Any) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    body = await response.get_json()
    checks = body["checks"] if response.status_code == 200 else body["error"]["details"]["checks"]
    return response.status_code, checks


@pytest.mark.parametrize("dependency", ["database", "streams"])
async def test_an_outage_is_waited_out_and_loses_no_acknowledged_message(
        dependency: str, node: Node, live_server: str, client: Any, users: Any, pg_proxy: TcpProxy,
        redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle(caplog)
    proxy = pg_proxy if dependency == "database" else redis_proxy
    other = "streams" if dependency == "database" else "database"
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    outage = Outage(dependency)

    def delivered() -> set[str]:
        return {event["message"]["client_id"] for event in outage.received}
    stop, subscribed = trio.Event(), trio.Event()

    async with trio.open_nursery() as nursery, ws_connect(live_server, alice.token) as ws, \
            ws_connect(live_server, alice.token) as probe:
        nursery.start_soon(subscriber, live_server, bob.token, room, outage, subscribed)
        await subscribed.wait()
        nursery.start_soon(sender, ws, room, outage, proxy, stop)
        await trio.sleep(0.5)  # steady traffic first

        proxy.cut()
        went_down = trio.current_time()
        await eventually(lambda: readiness(client), until=(503, {dependency: "unavailable", other: "ok"}))
        code, reason = await closed_on_connect(live_server, alice.token)
        assert code == 1013 and reason is not None and dependency in reason, (code, reason)
        # Other frames that need the dependency: an error frame each, the connection kept.
        frames: list[dict[str, Any]] = [{"type": "subscribe", "room": room},
                                        {"type": "typing", "room": room, "state": True}]
        if dependency == "database":  # a send made while it is cut cannot commit
            frames.append({"type": "send", "room": room, "body": "cut", "client_id": "probe-cut"})
        for frame in frames:
            reply = await probe.request(frame)
            assert reply["type"] == "error" and reply["code"] == "unavailable", (frame, reply)
        await trio.sleep(max(0.0, OUTAGE_S - (trio.current_time() - went_down)))

        proxy.restore()
        restored = trio.current_time()
        outage.down_s = restored - went_down
        acked_before = set(outage.acked)
        await eventually(lambda: readiness(client), until=(200, {"database": "ok", "streams": "ok"}))
        outage.ready_s = trio.current_time() - restored
        await eventually(lambda: acked_before <= delivered(), timeout=20)
        outage.caught_up_s = trio.current_time() - restored
        await trio.sleep(0.5)  # steady traffic after
        stop.set()
        await eventually(lambda: set(outage.acked) <= delivered(), timeout=20)
        await trio.sleep(0.5)  # room for a late duplicate to show
        nursery.cancel_scope.cancel()

    figures = outage.figures()
    logging.getLogger("roomcast.tests").warning("outage figures: %s", figures)
    print(f"\noutage figures: {figures}")
    # The node stayed up and its tree never gave up on anything.
    assert node.actors.root.actor.state is ActorState.RUNNING
    assert not lifecycle.lines("actor.gave_up")
    assert not lifecycle.lines("actor.crashed")
    # Every acknowledged message arrived exactly once, in seq order; nothing arrived that was not sent.
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
    seqs = [event["seq"] for event in outage.received]
    assert seqs == sorted(set(seqs))
    assert {event["message"]["client_id"] for event in outage.received} <= outage.sent
    assert not outage.other_errors, outage.other_errors
    if dependency == "database":
        # A send that cannot commit is answered `unavailable`, never with a dropped connection (the probe's
        # send above). One whose COMMIT went unanswered as the cut came is settled once the database is back:
        # the sender may have waited the whole outage on it, and got its `ack`.
        assert set(outage.errors_during) <= {"unavailable"}, outage.errors_during
        assert outage.errors_during or outage.acked_during == outage.sent_during, figures
    else:
        # The database was there: sends were committed and acknowledged during the outage, delivered after it.
        assert outage.acked_during > 0 and not outage.errors_during
    # The outage and the recovery were each logged once, however many actors retried.
    assert len(lifecycle.lines("dependency.unavailable", dependency=dependency)) == 1
    assert len(lifecycle.lines("dependency.recovered", dependency=dependency)) == 1
