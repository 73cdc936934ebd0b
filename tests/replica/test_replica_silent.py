"""A replica behind a dead network path: the prober gives up on it, and reads never wait for it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from roomcast.node import Node
from tests.chat_helpers import body_of, history, make_group, send
from tests.helpers import eventually
from tests.replica.test_read_replica import bodies, replica_of


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never says a word: the kernel completes the handshake
    (listen backlog), nothing ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def replica_settings(silent_port: int) -> dict[str, Any]:
    return {"database_read_url": f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/test"}


async def test_a_replica_that_never_answers_is_down_and_reads_go_to_the_primary(
        node: Node, client: Any, users: Any) -> None:
    replica = replica_of(node)
    await eventually(lambda: replica.availability.is_down)  # within the probe's own time limit
    alice = await users.create()
    room = await make_group(client, alice)
    await send(client, alice, room["id"], "hello")
    unavailable = replica.fallbacks["unavailable"]
    assert bodies(await history(client, alice, room["id"])) == ["hello"]
    assert replica.fallbacks["unavailable"] == unavailable + 1 and replica.served == 0
    ready = await body_of(await client.get("/readyz"), 200)
    assert ready["checks"]["database_read"] == "unavailable"
