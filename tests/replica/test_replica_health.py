"""A replica that is down or too far behind is left alone, the primary serves, and /readyz and /metrics say so."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from roomcast.node import Node
from tests.chat_helpers import body_of, history, make_group, send
from tests.helpers import eventually
from tests.replica.conftest import REPLICA_PORT, Pair
from tests.replica.test_read_replica import bodies, replica_of, writes_replayed

REPLICA_SERVER = f"postgresql+psycopg://postgres@127.0.0.1:{REPLICA_PORT}"
# The replica's server and database, but a schema without roomcast's tables: a replica unlike its primary.
UNLIKE_ITS_PRIMARY = f"{REPLICA_SERVER}/test?options=-csearch_path%3Dno_roomcast_here"


async def readiness(client: Any) -> dict[str, Any]:
    return await body_of(await client.get("/readyz"), 200)


async def metric(client: Any, line_start: str) -> float:
    text = await (await client.get("/metrics")).get_data(as_text=True)
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    assert len(values) == 1, (line_start, values)
    return values[0]


async def test_a_replica_that_goes_down_is_skipped_and_the_node_stays_ready(
        node: Node, client: Any, users: Any, pair: Pair) -> None:
    replica = replica_of(node)
    alice, bob = await users.create(), await users.create()
    room = await make_group(client, alice, [bob])
    await send(client, alice, room["id"], "hello")
    await writes_replayed(node, alice.id)
    assert (await readiness(client))["checks"] == {"database": "ok", "streams": "ok", "database_read": "ok"}
    assert await metric(client, 'roomcast_dependency_up{dependency="database_read"}') == 1

    await pair.script("stop-replica")
    try:
        served, unavailable = replica.served, replica.fallbacks["unavailable"]
        # The read that finds the replica gone is answered by the primary, and so are the next ones.
        assert bodies(await history(client, bob, room["id"])) == ["hello"]
        assert bodies(await history(client, bob, room["id"])) == ["hello"]
        assert replica.served == served and replica.fallbacks["unavailable"] == unavailable + 2
        ready = await readiness(client)
        assert ready["status"] == "ready"
        assert ready["checks"] == {"database": "ok", "streams": "ok", "database_read": "unavailable"}
        assert await metric(client, 'roomcast_dependency_up{dependency="database_read"}') == 0
        assert await metric(client, "roomcast_db_replica_in_use ") == 0
        assert await metric(client, 'roomcast_db_replica_fallbacks_total{reason="unavailable"}') >= 2
    finally:
        await pair.script("start")
    # Back: the prober finds it, and it serves again.
    await eventually(lambda: replica.state == "ok", timeout=30)
    served = replica.served
    assert bodies(await history(client, bob, room["id"])) == ["hello"]
    assert replica.served == served + 1
    assert (await readiness(client))["checks"]["database_read"] == "ok"


@pytest.mark.parametrize("replica_settings", [{"database_read_max_lag_s": 0.5}])
async def test_a_replica_past_the_lag_bound_is_skipped_until_it_catches_up(
        node: Node, client: Any, users: Any, pair: Pair) -> None:
    replica = replica_of(node)
    alice, bob = await users.create(), await users.create()
    room = await make_group(client, alice, [bob])
    await writes_replayed(node, alice.id)
    await pair.pause()
    await send(client, alice, room["id"], "while replay is paused")
    # The primary has WAL the replica has not replayed; past 0.5 s of that, the replica is left alone.
    await eventually(lambda: replica.state == "lagging")
    lagging = replica.fallbacks["lagging"]
    assert bodies(await history(client, bob, room["id"])) == ["while replay is paused"]
    assert replica.fallbacks["lagging"] == lagging + 1
    ready = await readiness(client)
    assert (ready["status"], ready["checks"]["database_read"]) == ("ready", "lagging")
    assert await metric(client, "roomcast_db_replica_lag_seconds ") > 0.5
    assert await metric(client, "roomcast_db_replica_in_use ") == 0

    await pair.resume()
    await eventually(lambda: replica.state == "ok", timeout=30)
    await writes_replayed(node, alice.id)
    served = replica.served
    assert bodies(await history(client, bob, room["id"])) == ["while replay is paused"]
    assert replica.served == served + 1


@pytest.mark.parametrize("replica_settings", [{"database_read_url": f"{REPLICA_SERVER}/nosuch"}])
async def test_a_replica_the_node_cannot_use_is_reported_not_fatal(node: Node, client: Any, users: Any) -> None:
    """A misconfigured replica (its database does not exist) is down as far as the node is concerned."""
    replica = replica_of(node)
    alice = await users.create()
    room = await make_group(client, alice)
    await send(client, alice, room["id"], "hello")
    await eventually(lambda: replica.availability.is_down)
    assert bodies(await history(client, alice, room["id"])) == ["hello"]
    ready = await readiness(client)
    assert (ready["status"], ready["checks"]["database_read"]) == ("ready", "unavailable")
    await trio.sleep(0.2)  # several probes fail meanwhile: the prober goes on, the node stays up
    prober = node.actors.root.child("read_replica")
    assert prober is not None and (prober.state.value, prober.restarts) == ("running", 0)


@pytest.mark.parametrize("replica_settings", [{"database_read_url": UNLIKE_ITS_PRIMARY}])
async def test_a_read_the_replica_fails_is_answered_by_the_primary(node: Node, client: Any, users: Any) -> None:
    replica = replica_of(node)
    alice = await users.create()
    room = await make_group(client, alice)
    await send(client, alice, room["id"], "hello")
    await writes_replayed(node, alice.id)  # the probe needs no table: the replica is in use
    errors = replica.fallbacks["error"]
    assert bodies(await history(client, alice, room["id"])) == ["hello"]
    assert bodies(await history(client, alice, room["id"])) == ["hello"]
    assert replica.fallbacks["error"] == errors + 2
    assert replica.state == "ok"
