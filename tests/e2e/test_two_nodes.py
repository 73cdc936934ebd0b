"""Two server processes sharing PostgreSQL and Redis (one server, or a cluster) serve one room; a node dies
and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.helpers import JWT_SECRET
from tests.redis_fixtures import redis_key_prefix, redis_url
from tests.ws_client import ws_connect

__all__ = ["redis_key_prefix", "redis_url"]  # on one Redis and on a cluster, keys deleted afterwards

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 200

pytestmark = pytest.mark.postgres


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


@contextmanager
def server_process(tmp_path: Path, name: str, database_url: str, redis_url: str, prefix: str,
                   **settings: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
        "ROOMCAST_NO_BOOTSTRAP": "1",
        "ROOMCAST_DATA_DIR": str(tmp_path / name),
        "ROOMCAST_DATABASE_URL": database_url,
        "ROOMCAST_REDIS_URL": redis_url,
        "ROOMCAST_REDIS_KEY_PREFIX": prefix,
        "ROOMCAST_JWT_SECRET": JWT_SECRET,
        "ROOMCAST_SEND_BURST": "100000",
        "ROOMCAST_LOG_FORMAT": "text",
        "ROOMCAST_LOG_LEVEL": "warning",
    } | {f"ROOMCAST_{name.upper()}": value for name, value in settings.items()}
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=(tmp_path / f"{name}.log").open("w"), text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        pytest.fail(f"node {name} did not start: {line!r}")
    try:
        yield process, line.removeprefix("listening on ").strip()
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)


@pytest.fixture
async def two_nodes(tmp_path: Path, database_url: str, redis_url: str,
                    redis_key_prefix: str) -> AsyncIterator[tuple[tuple[Any, str], tuple[Any, str]]]:
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix) as a, \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix) as b:
        yield a, b


async def test_a_room_served_by_two_nodes_survives_one_dying(two_nodes: Any, users: Any) -> None:
    (process_a, url_a), (_, url_b) = two_nodes
    alice = await users.create("member")
    bob = await users.create("member")
    async with httpx.AsyncClient(base_url=url_b, timeout=30) as http:
        created = await http.post("/api/rooms", headers=alice.headers,
                                  json={"kind": "group", "name": "two nodes", "members": [bob.id]})
        room = created.json()["id"]

    received: list[dict] = []
    half_way = trio.Event()
    listening = trio.Event()

    async def send_through_b() -> None:
        await listening.wait()  # a subscription without `since` starts at the room's present
        async with ws_connect(url_b, bob.token) as sender:
            for n in range(TOTAL):
                await sender.request({"type": "send", "room": room, "body": f"m{n}"})

    async def listen(url: str, since: int | None) -> None:
        async with ws_connect(url, alice.token) as ws:
            await ws.subscribe(room, since=since)
            listening.set()
            while len(received) < TOTAL:
                event = await ws.until("message", timeout=60)
                received.append(event)
                if len(received) == TOTAL // 4:
                    half_way.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_through_b)

        first_life = trio.CancelScope()

        async def first_life_on_a() -> None:
            with first_life:
                try:
                    await listen(url_a, None)
                except ConnectionClosed:
                    await trio.sleep_forever()  # node A was killed under us; wait to be dropped

        nursery.start_soon(first_life_on_a)
        await half_way.wait()
        process_a.send_signal(signal.SIGKILL)  # no goodbye, no 1012: the node just dies
        await trio.to_thread.run_sync(process_a.wait)
        first_life.cancel()  # the client gives up on the dead connection before resuming
        # Whatever the client had seen before the crash, it resumes on B from there.
        with trio.fail_after(120):
            while len(received) < TOTAL:
                try:
                    await listen(url_b, received[-1]["seq"] if received else 0)
                except ConnectionClosed:
                    continue

    bodies = [event["message"]["body"] for event in received]
    assert bodies == [f"m{n}" for n in range(TOTAL)]  # in order, none lost, none twice
    seqs = [event["seq"] for event in received]
    assert seqs == list(range(seqs[0], seqs[0] + TOTAL))


async def test_users_of_a_node_that_died_leave_presence(tmp_path: Path, database_url: str, redis_url: str,
                                                        redis_key_prefix: str, users: Any) -> None:
    alice = await users.create("member")
    bob = await users.create("member")
    ttl = {"presence_ttl_s": "1.5"}
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix, **ttl) as (_, url_a), \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix, **ttl) as (process_b, url_b):
        async with httpx.AsyncClient(base_url=url_a, timeout=30) as http:
            created = await http.post("/api/rooms", headers=alice.headers,
                                      json={"kind": "group", "name": "presence", "members": [bob.id]})
            room = created.json()["id"]
        async with ws_connect(url_a, alice.token) as watcher, ws_connect(url_b, bob.token) as doomed:
            await watcher.subscribe(room)
            await doomed.subscribe(room)
            await watcher.until("presence", lambda e: e["user"]["id"] == bob.id and e["status"] == "joined")
            process_b.send_signal(signal.SIGKILL)  # no goodbye: bob's entries are never removed by B
            await trio.to_thread.run_sync(process_b.wait)
            # A bound, not a measurement: the entry expires 1.5 s after B's last refresh and A's
            # next refresh (every 0.5 s) takes it out.
            left = await watcher.until("presence", lambda e: e["user"]["id"] == bob.id, timeout=30)
            assert left["status"] == "left" and left["online_count"] == 1
            assert [user["id"] for user in left["online"]] == [alice.id]


async def closed_with(ws: Any, timeout: float = 10) -> tuple[int, str, float]:
    """(code, reason, seconds taken) of the server's close of `ws`."""
    started = trio.current_time()
    with pytest.raises(ConnectionClosed) as caught, trio.fail_after(timeout):
        while True:
            await ws.event(timeout=timeout)
    return caught.value.reason.code, caught.value.reason.reason, trio.current_time() - started


async def test_revoke_and_disable_close_the_users_sessions_on_every_node(
        tmp_path: Path, database_url: str, redis_url: str, redis_key_prefix: str, users: Any) -> None:
    admin = await users.create("admin")
    alice, bob = await users.create("member", username="alice"), await users.create("member")
    quiet = {"heartbeat_s": "600"}  # the periodic audit never runs: only the immediate path can close them
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix, **quiet) as (_, url_a), \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix, **quiet) as (_, url_b):
        async with httpx.AsyncClient(base_url=url_a, timeout=30) as http, \
                ws_connect(url_a, alice.token) as on_a, ws_connect(url_b, alice.token) as on_b, \
                ws_connect(url_b, bob.token) as bystander:
            revoked = await http.post(f"/api/admin/users/{alice.id}/revoke-tokens", headers=admin.headers)
            assert revoked.status_code == 200
            for ws in (on_a, on_b):
                code, reason, took = await closed_with(ws)
                assert code == 1008 and "revoked" in reason
                assert took < 1.0, f"closed after {took:.2f} s"
            assert (await bystander.request({"type": "ping"}))["type"] == "pong"

        # The command line reaches the serving nodes through Redis too.
        fresh = users.node.tokens.mint(alice.id)
        async with ws_connect(url_a, fresh) as on_a, ws_connect(url_b, fresh) as on_b:
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
                "ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_DATA_DIR": str(tmp_path / "cli"),
                "ROOMCAST_DATABASE_URL": database_url, "ROOMCAST_REDIS_URL": redis_url,
                "ROOMCAST_REDIS_KEY_PREFIX": redis_key_prefix, "ROOMCAST_JWT_SECRET": JWT_SECRET,
                "ROOMCAST_LOG_LEVEL": "warning"}
            done = await trio.run_process([sys.executable, str(ROOT / "run.py"), "users", "disable", "alice"],
                                          env=env, capture_stdout=True, capture_stderr=True, check=False)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["is_active"] is False
            for ws in (on_a, on_b):
                code, reason, _ = await closed_with(ws, timeout=30)
                assert code == 1008 and "disabled" in reason


async def test_send_budget_and_login_throttle_are_shared_by_the_nodes(
        tmp_path: Path, database_url: str, redis_url: str, redis_key_prefix: str, users: Any) -> None:
    alice = await users.create("member", username="alice", password="correct horse")
    bob = await users.create("member")
    tight = {"send_burst": "3", "send_rate_per_s": "0.001", "login_failures_per_username": "3/hour"}
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix, **tight) as (_, url_a), \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix, **tight) as (_, url_b):
        async with httpx.AsyncClient(base_url=url_a, timeout=30) as on_a, \
                httpx.AsyncClient(base_url=url_b, timeout=30) as on_b:
            room = (await on_a.post("/api/rooms", headers=alice.headers,
                                    json={"kind": "group", "name": "budget", "members": [bob.id]})).json()["id"]

            async def send(http: httpx.AsyncClient, body: str) -> httpx.Response:
                return await http.post(f"/api/rooms/{room}/messages", headers=alice.headers, json={"body": body})

            assert [(await send(http, f"m{n}")).status_code for n, http in enumerate((on_a, on_b, on_a))] == [201] * 3
            for http in (on_b, on_a):  # the budget of 3 is spent, whichever node is asked
                refused = await send(http, "one too many")
                assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
                assert int(refused.headers["Retry-After"]) >= 1
            bobs = await on_b.post(f"/api/rooms/{room}/messages", headers=bob.headers, json={"body": "his own"})
            assert bobs.status_code == 201  # a budget per user
            # Over websockets too: the same budget.
            async with ws_connect(url_b, alice.token) as ws:
                reply = await ws.request({"type": "send", "room": room, "body": "ws"})
                assert reply["type"] == "error" and reply["code"] == "rate_limited"

            wrong = {"username": "alice", "password": "wrong"}
            statuses = [(await http.post("/api/auth/login", json=wrong)).status_code for http in (on_a, on_b, on_a)]
            assert statuses == [401, 401, 401]
            for http in (on_b, on_a):
                throttled = await http.post("/api/auth/login", json={"username": "alice", "password": "correct horse"})
                assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
