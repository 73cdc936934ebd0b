"""Connection churn: thousands of clients that connect (and maybe subscribe) and then drop their TCP
connection, twenty at a time, while a room is busy and the heartbeat runs fast. The node must stay
up and keep nothing of them: no session, subscription, presence entry, task or file descriptor."""

from __future__ import annotations

import itertools
import os
from functools import partial
from typing import Any

import pytest
import trio

from tests.chat_helpers import make_group, send
from tests.faults.churn_client import connect_and_drop
from tests.helpers import eventually
from tests.ws.conftest import db_backend, settings_overrides, stack  # both stacks, as the /ws tests
from tests.ws_client import ws_connect

__all__ = ["db_backend", "settings_overrides", "stack"]

CYCLES = 1200
AT_ONCE = 20


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # A fast heartbeat visits a slice of the sessions every 40 ms: it meets sessions in every stage
    # of their end, as a room's fan-out does. Not faster: the listener shares this process, and a
    # client is dropped after two silent intervals, so a busy machine must not make it look silent.
    return {"heartbeat_s": 1.0}


def sockets_on(port: int) -> int:
    """This process's open sockets to or from `port` (database and Redis pools may grow; these must not)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                count += fields[9] in ours and port in (local, remote)
    return count


def task_count() -> int:
    """Every task of this Trio run but the Redis client's connection pool (bounded by its own setting)."""

    def walk(task: trio.lowlevel.Task) -> int:
        own = 0 if task.name.startswith("coredis.") else 1
        return own + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_connection_churn_leaves_the_node_up_and_nothing_behind(live_server: str, client: Any, users: Any,
                                                                      node: Any) -> None:
    owner, member = await users.create("member"), await users.create("member")
    room = (await make_group(client, owner, [member]))["id"]
    # The node's long-lived actors that a first send starts (the committer) are not churn's to leave behind.
    await send(client, owner, room, "before the churn")
    async with ws_connect(live_server, owner.token) as listener:
        await listener.subscribe(room)
        await listener.request({"type": "ping"})
        await eventually(lambda: len(node.rooms.get(room).subscriptions) == 1)
        port = int(live_server.rsplit(":", 1)[1])
        sockets, tasks = sockets_on(port), task_count()

        # Each cycle drops its connection at another stage: during the handshake, right after the
        # welcome, with a subscribe in flight, or once subscribed.
        stages: list[dict[str, Any]] = [
            {"wait_for": None},
            {},
            {"room": room},
            {"room": room, "wait_for": b'"welcome"'},
        ]
        plan = itertools.cycle(stages)
        sent = 0
        bodies: list[str] = []

        async def read_messages() -> None:
            # The listener reads as a client does: a reader that stopped would be closed as too slow
            # once the presence events of the churning joins filled its queue.
            while True:
                event = await listener.event(timeout=120)
                if event["type"] == "message":
                    bodies.append(event["message"]["body"])

        with trio.fail_after(120):  # a bound against a hang, not a measurement
            async with trio.open_nursery() as reading:
                reading.start_soon(read_messages)
                for _ in range(CYCLES // AT_ONCE):
                    async with trio.open_nursery() as nursery:
                        for _ in range(AT_ONCE):
                            nursery.start_soon(partial(connect_and_drop, live_server, member.token, **next(plan)))
                        # The room stays busy, so its fan-out meets sessions that are ending.
                        await listener.send({"type": "send", "room": room, "body": f"m{sent}"})
                        sent += 1
                # The node is alive and still serves its one real client, in order and complete.
                await eventually(lambda: len(bodies) >= sent, timeout=60)
                reading.cancel_scope.cancel()
            assert bodies == [f"m{n}" for n in range(sent)]

        actor = node.rooms.get(room)
        await eventually(lambda: len(actor.subscriptions) == 1, timeout=30)
        await eventually(lambda: node.notices.sessions_of(member.id) == 0, timeout=30)
        await eventually(lambda: node.presence.online_in(room), until=[owner.id], timeout=30)
        await eventually(lambda: node.presence.online_users([member.id]), until=set(), timeout=30)
        await eventually(lambda: sockets_on(port) <= sockets, timeout=30)
        await eventually(lambda: task_count() <= tasks, timeout=30)
        assert (await listener.request({"type": "ping"}))["type"] == "pong"
