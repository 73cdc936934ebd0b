"""A seeded, randomized run of /ws and REST against a live server, checking the delivery guarantees.

Three users in two group rooms, one or two connections each. Each connection is driven by its
own task through random steps, all at once: sends over /ws (with or without a `client_id`,
some repeating one), sends and edits over REST, `read`, `typing`, subscribes with and without
`since`, unsubscribes, pings, and now and then a close and a reconnect (resubscribing with
`since` = the last seq seen, and resending what was not answered by its `client_id`). Every
frame a connection sent and every event it received is logged in the order its client saw
them, then checked against docs/protocol.md:

- on each connection, a send that created its message has its `ack` before that message's
  `message` event, and a connection's sends are answered in the order sent;
- within a subscription (from `subscribed` to `unsubscribed` or the close) a room's stored events
  come in seq order without gaps or duplicates, starting right after `since`, or after the
  reply's `last_seq` without `since`; a user's `read` events come in pointer order;
- nothing of a room comes after its `unsubscribed` until the client subscribes again, and no
  stored event comes before `subscribed` on a connection that was not subscribed;
- no `error`, no connection closed by the server; once the tasks stop, every connection catches
  up with each room it follows;
- every acked message is in the room's history exactly once, a repeated `client_id` always
  answers with the original, and nothing is in the history that was not sent.

The committer's answer lags its commit by a few ms now and then, so that other transactions in
a room get to publish a committed send before its sender is answered (the case the ack order is
about); without it a run would hardly ever meet that window.

The seeds fix each task's choices, not their interleaving (the scheduler and the sockets decide
that), so a run explores a different order every time; a failure names the seed and shows the
stretch of the log around each problem. ROOMCAST_TEST_DELIVERY_SEEDS=N runs seeds 0 to N-1.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

from tests.chat_helpers import body_of, make_group
from tests.ws_client import WsClient, ws_connect

SEEDS = list(range(int(os.environ.get("ROOMCAST_TEST_DELIVERY_SEEDS", "2"))))
STORED = {"message", "message_edited", "message_deleted", "room_updated"}
ANSWERS = {"welcome", "subscribed", "unsubscribed", "ack", "pong", "error"}  # carry no room event
SAFETY_S = 30.0  # generous: only a hang should ever reach it

# Steps and how often each is drawn.
STEPS = {
    "ws_send": 30, "rest_send": 6, "edit": 6, "read": 6, "typing": 6, "subscribe_since": 5,
    "subscribe_live": 3, "unsubscribe": 4, "ping": 3, "pause": 6, "retopic": 1, "reconnect": 2,
}
BODY_TAILS = ["", " 🙂", "\nsecond line", "\ttabbed", " ünïcödé"]


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"typing_burst": 10**6, "typing_rate_per_s": 10.0**6}  # no rate_limited errors to expect


@dataclass
class Send:
    """One `send` frame (or REST send) and what became of it."""

    user_id: int
    room: int
    body: str
    client_id: str | None
    fresh: bool  # the first use of its client_id (or none): it creates its message
    message_id: int | None = None


@dataclass
class Link:
    """One connection: its log of ("sent" | "recv", frame) in the order the client saw them."""

    label: str
    ws: WsClient
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sends: dict[str, Send] = field(default_factory=dict)  # by ref
    unanswered: dict[str, Send] = field(default_factory=dict)
    waiting: dict[str, trio.Event] = field(default_factory=dict)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    closing: bool = False
    closed_by_server: str | None = None


class World:
    """What every task shares: the rooms, what was sent and acked, and the problems found meanwhile."""

    def __init__(self, client: Any, url: str, rooms: dict[int, Any]) -> None:
        self.client = client
        self.url = url
        self.rooms = rooms  # room id -> its owner
        self.client_ids: dict[tuple[int, int, str], str] = {}  # (user, room, client_id) -> its body
        self.acked_ids: dict[tuple[int, int, str], int] = {}  # (user, room, client_id) -> message id
        self.bodies: dict[int, set[str]] = {}  # acked message id -> the bodies it may have now
        self.rooms_of: dict[int, int] = {}  # acked message id -> its room
        self.own: dict[int, list[int]] = {}  # user -> its acked message ids
        self.unacked_bodies: set[str] = set()  # sends whose answer never came (their link closed)
        self.problems: list[str] = []

    def acked(self, send: Send, message: dict[str, Any], where: str) -> None:
        mid = message["id"]
        send.message_id = mid
        if message["room_id"] != send.room or message["sender"]["id"] != send.user_id:
            self.problems.append(f"{where}: ack of a send to room {send.room} is {message}")
        if send.client_id is not None:
            key = (send.user_id, send.room, send.client_id)
            known = self.acked_ids.setdefault(key, mid)
            if known != mid:
                self.problems.append(f"{where}: client_id {send.client_id!r} answered with message {mid}, "
                                     f"earlier with {known}")
        if send.fresh and message["body"] != send.body:
            self.problems.append(f"{where}: acked body {message['body']!r}, sent {send.body!r}")
        if mid not in self.bodies:
            self.bodies[mid] = {message["body"]}
            self.rooms_of[mid] = send.room
            self.own.setdefault(send.user_id, []).append(mid)


class Driver:
    """One client slot of a user: a connection at a time, driven through random steps."""

    def __init__(self, world: World, user: Any, slot: int, seed: int) -> None:
        self.world = world
        self.user = user
        self.name = f"u{user.id}.{slot}"
        self.rng = random.Random(f"{seed}:{self.name}")
        self.links: list[Link] = []
        self.link: Link | None = None
        self.following: set[int] = set()  # rooms subscribed, as the client sees it
        self.last_seen: dict[int, int] = {}  # room -> the highest seq the client has
        self.count = 0

    def next_id(self) -> int:
        self.count += 1
        return self.count

    # ------------------------------------------------------------------ the connection

    async def run(self, steps: int, stepped: trio.Event, settle: trio.Event, targets: dict[int, int]) -> None:
        """Connect, take `steps` random steps (reconnecting when drawn), then settle and close."""
        remaining = steps
        resend: list[Send] = []
        done = False
        while not done:
            try:
                async with ws_connect(self.world.url, self.user.token) as ws, trio.open_nursery() as nursery:
                    link = self.link = Link(f"{self.name}#{len(self.links)}", ws)
                    self.links.append(link)
                    link.log.append(("recv", ws.welcome))
                    nursery.start_soon(self.read_events, link)
                    await self.resume(resend)
                    while remaining > 0:
                        remaining -= 1
                        step = self.rng.choices(list(STEPS), weights=list(STEPS.values()))[0]
                        if step == "reconnect":
                            break
                        await getattr(self, step)()
                    else:
                        done = True
                        await self.settle(link, stepped, settle, targets)
                    # Reconnecting: what was not answered is resent by its client_id (`resume`); the
                    # rest may or may not have been stored.
                    resend = [send for send in link.unanswered.values() if send.client_id is not None]
                    self.world.unacked_bodies.update(send.body for send in link.unanswered.values())
                    await self.close(link)
            except* LocalProtocolError:
                # trio-websocket answers a server ping that crosses the client's close with a pong
                # wsproto refuses to send then (python-trio/trio-websocket#184): harmless once closing.
                if self.link is None or not self.link.closing:
                    raise

    async def settle(self, link: Link, stepped: trio.Event, settle: trio.Event, targets: dict[int, int]) -> None:
        """All steps taken: every send answered, then caught up with every room followed."""
        with trio.fail_after(SAFETY_S):
            while link.unanswered and link.closed_by_server is None:
                await trio.sleep(0.01)
        stepped.set()
        await settle.wait()  # the rooms' last seqs are in `targets` now
        with trio.fail_after(SAFETY_S):
            while (link.closed_by_server is None
                   and any(self.last_seen.get(room, 0) < targets[room] for room in self.following)):
                await trio.sleep(0.01)

    async def close(self, link: Link) -> None:
        link.closing = True
        await link.ws.ws.aclose()

    async def resume(self, resend: list[Send]) -> None:
        """After a reconnect: follow the same rooms from the last seq seen, and resend by client_id."""
        for room in sorted(self.following):
            await self.subscribe(room, self.last_seen.get(room, 0))
        for send in resend:
            again = Send(self.user.id, send.room, send.body, send.client_id, fresh=False)
            await self.send_frame({"type": "send", "room": send.room, "body": send.body,
                                   "client_id": send.client_id}, again)

    async def read_events(self, link: Link) -> None:
        """Log every event as it comes, and keep what the client tracks (seqs seen, answers)."""
        try:
            while True:
                frame = await link.ws.ws.get_message()
                for line in frame.split("\n"):
                    event = json.loads(line)
                    link.log.append(("recv", event))
                    self.take(link, event)
        except ConnectionClosed as exc:
            if not link.closing:
                link.closed_by_server = f"{exc.reason.code} {exc.reason.reason}"
                self.world.problems.append(f"{link.label}: closed by the server: {link.closed_by_server}")

    def take(self, link: Link, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind in STORED:
            self.last_seen[event["room"]] = max(self.last_seen.get(event["room"], 0), event["seq"])
        ref = event.get("ref")
        if ref is None:
            return
        if kind == "ack" and ref in link.unanswered:
            self.world.acked(link.unanswered.pop(ref), event["message"], f"{link.label} {ref}")
        elif kind == "error":
            link.unanswered.pop(ref, None)
        link.replies[ref] = event
        waiting = link.waiting.pop(ref, None)
        if waiting is not None:
            waiting.set()

    async def send(self, frame: dict[str, Any]) -> None:
        link = self.link
        assert link is not None
        link.log.append(("sent", frame))
        try:
            await link.ws.send(frame)
        except ConnectionClosed:  # the reader has the close code: say so rather than fail on a frame
            await trio.sleep(0.1)
            raise AssertionError(f"{link.label}: closed by the server ({link.closed_by_server})") from None

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame and wait for the answer carrying its ref."""
        assert self.link is not None
        link = self.link
        ref = f"q{self.next_id()}"
        link.waiting[ref] = answered = trio.Event()
        await self.send({**frame, "ref": ref})
        with trio.fail_after(SAFETY_S):
            await answered.wait()
        return link.replies.pop(ref)

    async def send_frame(self, frame: dict[str, Any], send: Send) -> None:
        assert self.link is not None
        ref = f"s{self.next_id()}"
        self.link.sends[ref] = self.link.unanswered[ref] = send
        await self.send({**frame, "ref": ref})

    # ------------------------------------------------------------------ the steps

    def draft(self, room: int, *, repeat_in_flight: bool) -> Send:
        """A new send: no client_id, a fresh one, or one of this user's earlier ones in the room.

        Only a client_id already acked (or sent earlier on this very connection, whose sends
        commit in order) is repeated: then which send created the message is known.
        """
        world, user = self.world, self.user
        earlier = [cid for (uid, rid, cid) in world.client_ids if uid == user.id and rid == room
                   and ((uid, rid, cid) in world.acked_ids
                        or (repeat_in_flight and self.link is not None
                            and any(s.client_id == cid and s.room == room for s in self.link.sends.values())))]
        roll = self.rng.random()
        if roll < 0.15 and earlier:
            cid = self.rng.choice(sorted(earlier))
            return Send(user.id, room, world.client_ids[(user.id, room, cid)], cid, fresh=False)
        n = self.next_id()
        body = f"{self.name}:{n}{self.rng.choice(BODY_TAILS)}"
        cid = f"{self.name}-{n}" if roll < 0.6 else None
        if cid is not None:
            world.client_ids[(user.id, room, cid)] = body
        return Send(user.id, room, body, cid, fresh=True)

    async def ws_send(self) -> None:
        room = self.rng.choice(sorted(self.world.rooms))
        send = self.draft(room, repeat_in_flight=True)
        frame: dict[str, Any] = {"type": "send", "room": room, "body": send.body}
        if send.client_id is not None:
            frame["client_id"] = send.client_id
        await self.send_frame(frame, send)

    async def rest_send(self) -> None:
        room = self.rng.choice(sorted(self.world.rooms))
        send = self.draft(room, repeat_in_flight=False)
        payload: dict[str, Any] = {"body": send.body}
        if send.client_id is not None:
            payload["client_id"] = send.client_id
        response = await self.world.client.post(f"/api/rooms/{room}/messages", headers=self.user.headers,
                                                json=payload)
        message = await body_of(response, 201 if send.fresh else 200)
        self.world.acked(send, message, f"{self.name} REST")

    async def edit(self) -> None:
        own = self.world.own.get(self.user.id)
        if not own:
            return
        mid = self.rng.choice(own)
        body = f"{self.name}:edit{self.next_id()}"
        self.world.bodies[mid].add(body)
        response = await self.world.client.patch(f"/api/rooms/{self.world.rooms_of[mid]}/messages/{mid}",
                                                 headers=self.user.headers, json={"body": body})
        await body_of(response, 200)

    async def retopic(self) -> None:
        rooms = sorted(room for room, owner in self.world.rooms.items() if owner.id == self.user.id)
        if rooms:
            room = self.rng.choice(rooms)
            response = await self.world.client.patch(f"/api/rooms/{room}", headers=self.user.headers,
                                                     json={"topic": f"topic {self.next_id()}"})
            await body_of(response, 200)

    async def read(self) -> None:
        seen = sorted(room for room, seq in self.last_seen.items() if seq > 0)
        if seen:
            room = self.rng.choice(seen)
            await self.send({"type": "read", "room": room, "seq": self.rng.randint(1, self.last_seen[room])})

    async def typing(self) -> None:
        room = self.rng.choice(sorted(self.world.rooms))
        await self.send({"type": "typing", "room": room, "state": self.rng.random() < 0.7})

    async def subscribe(self, room: int | None = None, since: int | None = None) -> None:
        room = room if room is not None else self.rng.choice(sorted(self.world.rooms))
        frame: dict[str, Any] = {"type": "subscribe", "room": room}
        if since is not None:
            frame["since"] = since
        reply = await self.request(frame)
        if reply["type"] != "subscribed":
            return  # an error: the checks report it
        self.following.add(room)
        if since is None:  # nothing up to last_seq comes on this subscription: the client has what it needs
            self.last_seen[room] = max(self.last_seen.get(room, 0), reply["last_seq"])

    async def subscribe_since(self) -> None:
        room = self.rng.choice(sorted(self.world.rooms))
        seen = self.last_seen.get(room, 0)
        # Mostly from where the client stands; sometimes further back, to replay what it had.
        since = seen if self.rng.random() < 0.7 else self.rng.randint(max(0, seen - 20), seen)
        await self.subscribe(room, since)

    async def subscribe_live(self) -> None:
        await self.subscribe()

    async def unsubscribe(self) -> None:
        room = self.rng.choice(sorted(self.following or self.world.rooms))
        reply = await self.request({"type": "unsubscribe", "room": room})
        if reply["type"] == "unsubscribed":
            self.following.discard(room)

    async def ping(self) -> None:
        await self.request({"type": "ping"})

    async def pause(self) -> None:
        await trio.sleep(self.rng.uniform(0, 0.03))


# --------------------------------------------------------------------------- the checks


def around(link: Link, index: int, width: int = 12) -> str:
    """The stretch of a link's log around an entry, for a failure message."""
    lines = []
    for i in range(max(0, index - width), min(len(link.log), index + width + 1)):
        direction, frame = link.log[i]
        mark = ">>" if i == index else "  "
        lines.append(f"{mark} {i:5} {direction} {json.dumps(frame, ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def check_link(link: Link, rooms: set[int], problems: list[str]) -> None:
    """Replay one connection's log through the rules of docs/protocol.md."""

    def problem(index: int, what: str) -> None:
        problems.append(f"{link.label} at {index}: {what}\n{around(link, index)}")

    requests: dict[str, dict[str, Any]] = {}
    next_seq: dict[int, int] = {}  # room -> the seq due next within its subscription
    quiet = set(rooms)  # rooms not followed: unsubscribed (answered), or never subscribed, and not asked for since
    reads: dict[tuple[int, int], int] = {}  # (room, user) -> the last read seq of the subscription
    sent_at: dict[str, tuple[int, str]] = {}  # send ref -> (index, room)
    answered: list[str] = []  # send refs, in the order answered
    acks: dict[str, tuple[int, int]] = {}  # send ref -> (index, message id)
    message_at: dict[int, int] = {}  # message id -> index of its first `message` event
    unsubscribed_at: dict[int, list[int]] = {}
    for index, (direction, frame) in enumerate(link.log):
        kind = frame["type"]
        room = frame.get("room")
        if direction == "sent":
            if kind in ("subscribe", "unsubscribe"):
                requests[frame["ref"]] = frame
                quiet.discard(room)  # presence may come before `subscribed`
            elif kind == "send":
                sent_at[frame["ref"]] = (index, room)
            continue
        if kind == "error":
            problem(index, "an error")
            if frame.get("ref") in sent_at:
                answered.append(frame["ref"])
        elif kind == "subscribed":
            asked = requests.pop(frame["ref"])
            since = asked.get("since")
            next_seq[room] = (since if since is not None else frame["last_seq"]) + 1
            reads = {key: seq for key, seq in reads.items() if key[0] != room}
        elif kind == "unsubscribed":
            requests.pop(frame["ref"])
            next_seq.pop(room, None)
            quiet.add(room)
            unsubscribed_at.setdefault(room, []).append(index)
        elif kind == "ack":
            answered.append(frame["ref"])
            acks[frame["ref"]] = (index, frame["message"]["id"])
        elif kind in ANSWERS or not isinstance(room, int):
            continue
        elif room in quiet:
            problem(index, f"a {kind} event of room {room} after its unsubscribed")
        elif kind in STORED:
            due = next_seq.get(room)
            if due is None:
                problem(index, f"a stored event of room {room} before its subscribed")
            elif frame["seq"] != due:
                problem(index, f"seq {frame['seq']} of room {room} where {due} was due")
            next_seq[room] = max(due or 0, frame["seq"] + 1)
            if kind == "message":
                message = frame["message"]
                if (message["room_id"], message["seq"]) != (room, frame["seq"]):
                    problem(index, "a message event whose message is of another room or seq")
                message_at.setdefault(message["id"], index)
        elif kind == "read":
            key = (room, frame["user"]["id"])
            if frame["seq"] <= reads.get(key, 0):
                problem(index, f"a read event at {frame['seq']} after one at {reads[key]}")
            reads[key] = frame["seq"]
    # Sends are answered in the order sent.
    answered_refs = set(answered)
    in_order = [ref for ref in sent_at if ref in answered_refs]
    if answered != in_order:
        problem(len(link.log) - 1, f"sends answered in the order {answered}, sent as {in_order}")
    # A send that created its message is acked before that message's event on this connection.
    for ref, (ack_index, mid) in acks.items():
        send_index, room = sent_at[ref]
        event_index = message_at.get(mid)
        if not link.sends[ref].fresh or event_index is None or event_index > ack_index:
            continue
        if any(send_index < i < ack_index for i in unsubscribed_at.get(room, [])):
            continue  # the room was left (and maybe followed again) meanwhile
        problem(event_index, f"the message event of {mid} came before its ack (at {ack_index}) to {ref}")


async def room_history(client: Any, user: Any, room: int) -> list[dict[str, Any]]:
    """Every message of the room, oldest first, a page at a time."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await client.get(f"/api/rooms/{room}/messages?limit=200&after={after}", headers=user.headers)
        page = await body_of(response, 200)
        items.extend(page["items"])
        if not page["has_more"]:
            return items
        after = page["items"][-1]["seq"]


async def check_history(world: World, problems: list[str]) -> None:
    """Each acked message is stored exactly once, and nothing was stored that no one sent."""
    for room, owner in world.rooms.items():
        items = await room_history(world.client, owner, room)
        by_id: dict[int, list[dict[str, Any]]] = {}
        for item in items:
            by_id.setdefault(item["id"], []).append(item)
        repeated = [mid for mid, found in by_id.items() if len(found) > 1]
        if repeated:
            problems.append(f"room {room}: messages listed more than once: {repeated}")
        keys = [(item["sender"]["id"], item["client_id"]) for item in items if item["client_id"] is not None]
        if len(keys) != len(set(keys)):
            problems.append(f"room {room}: a client_id stored twice: {sorted(keys)}")
        for mid, mid_room in world.rooms_of.items():
            if mid_room == room and mid not in by_id:
                problems.append(f"room {room}: acked message {mid} is not in the history")
        for item in items:
            bodies = world.bodies.get(item["id"])
            if bodies is None and item["body"] not in world.unacked_bodies:
                problems.append(f"room {room}: message {item['id']} was never acked nor sent unanswered: {item}")
            elif bodies is not None and item["body"] not in bodies:
                problems.append(f"room {room}: message {item['id']} has body {item['body']!r}, not one of {bodies}")


# --------------------------------------------------------------------------- the test


def answer_late_at_times(node: Any, monkeypatch: pytest.MonkeyPatch, rng: random.Random) -> None:
    """Now and then the committer's answer lags a few ms behind its commit.

    That is the window in which another transaction in the room has the relay read the
    committed rows back and publish them before the senders are answered (tests/ws/test_ack_order.py
    makes it deterministic); without the lag the run would hardly ever hit it.
    """
    real_write = node.database.write

    async def write(work: Any, *args: Any) -> Any:
        result = await real_write(work, *args)
        if work.__qualname__.startswith("SendCommitter.") and rng.random() < 0.7:
            await trio.sleep(rng.uniform(0, 0.01))
        return result

    monkeypatch.setattr(node.database, "write", write)



@pytest.mark.parametrize("seed", SEEDS)
async def test_delivery_guarantees_hold_under_random_concurrent_traffic(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = random.Random(seed)
    answer_late_at_times(node, monkeypatch, random.Random(f"{seed}:committer"))
    people = [await users.create("member") for _ in range(3)]
    first = await make_group(client, people[0], people[1:], name="first")
    second = await make_group(client, people[1], [people[0], people[2]], name="second")
    world = World(client, live_server, {first["id"]: people[0], second["id"]: people[1]})
    drivers = [Driver(world, person, slot, seed) for person in people for slot in range(rng.randint(1, 2))]
    steps = [rng.randint(60, 120) for _ in drivers]
    stepped = [trio.Event() for _ in drivers]
    settle = trio.Event()
    targets: dict[int, int] = {}
    with trio.fail_after(4 * SAFETY_S):
        async with trio.open_nursery() as nursery:
            for driver, count, done in zip(drivers, steps, stepped, strict=True):
                nursery.start_soon(driver.run, count, done, settle, targets)
            for done in stepped:
                await done.wait()
            # Every task has stopped and its sends are answered: each room's last seq is final now.
            for room, owner in world.rooms.items():
                response = await client.get(f"/api/rooms/{room}", headers=owner.headers)
                targets[room] = (await body_of(response, 200))["last_seq"]
            settle.set()
    problems = list(world.problems)
    for driver in drivers:
        for link in driver.links:
            check_link(link, set(world.rooms), problems)
    await check_history(world, problems)
    assert not problems, f"seed {seed}: {len(problems)} problems\n\n" + "\n\n".join(problems[:5])
