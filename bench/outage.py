#!/usr/bin/env python3
"""Outage figures: a real roomcast server whose PostgreSQL and Redis are cut for a few seconds each.

The server runs in its own process, reaching PostgreSQL and Redis through the fault
tests' TcpProxy (tests/faults/proxy.py), which runs here. A sender sends steadily over
/ws and a subscriber follows the room (reconnecting with `since` if it must); each
dependency in turn is cut (every connection reset, new ones too) for --down-s seconds.
Printed per outage: seconds down, messages sent / acknowledged / answered `unavailable`
during it, acknowledged messages lost or delivered twice, seconds from the restore to
/readyz 200 and to the subscriber having every acknowledged message, the close code a
new /ws got during the outage, and whether the server process survived.

    python bench/outage.py                 # PostgreSQL + Redis, each cut for 5 s
    python bench/outage.py --down-s 3 --only database

It uses the shared PostgreSQL (a throwaway schema) and Redis (a throwaway key prefix).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402
from roomcast.storage.models import Membership, Room, User  # noqa: E402
from tests.faults.proxy import TcpProxy  # noqa: E402

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
SECRET = secrets.token_urlsafe(32)
SEND_EVERY_S = 0.02


def prepare(url: str) -> tuple[list[int], int]:
    """Two users (sender, subscriber) and one room with both, straight in the database."""
    engine = create_database_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(User), [{"tenant": "default", "username": f"u{n}", "display_name": f"User {n}",
                                           "role": "member", "is_active": True} for n in range(2)])
        user_ids = [row[0] for row in connection.execute(text("SELECT id FROM users ORDER BY id"))]
        connection.execute(insert(Room), [{"tenant": "default", "kind": "group", "name": "outage", "topic": "",
                                           "is_active": True, "last_seq": 0}])
        room_id = connection.execute(text("SELECT id FROM rooms")).scalar_one()
        connection.execute(insert(Membership), [{"room_id": room_id, "user_id": uid, "room_role": "member",
                                                 "last_read_seq": 0} for uid in user_ids])
    engine.dispose()
    return user_ids, room_id


async def http_status(base: str, path: str) -> int:
    """The status code of a GET, or 0 if the server does not answer."""
    host, _, port = base.removeprefix("http://").partition(":")
    try:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                head = await stream.receive_some(4096)
        return int(head.split(b" ", 2)[1])
    except (OSError, trio.TooSlowError, ValueError, IndexError):
        return 0


class Traffic:
    """A sender and a subscriber on one room; what each saw, by client_id."""

    def __init__(self, ws_base: str, tokens: list[str], room: int) -> None:
        self.ws_base, self.tokens, self.room = ws_base, tokens, room
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.answers: list[tuple[str, bool, str]] = []  # (client_id, sent while cut, ack | error code)
        self.received: list[str] = []
        self.reconnects = 0
        self.cut = False
        self.stopping = False
        self.subscribed = trio.Event()

    def url(self, token: str) -> str:
        return f"{self.ws_base}/ws?token={token}"

    async def send_steadily(self) -> None:
        refs = itertools.count(1)
        async with open_websocket_url(self.url(self.tokens[0])) as ws:
            await ws.get_message()  # welcome
            while not self.stopping:
                number = next(refs)
                client_id, during = f"m{number}", self.cut
                self.sent.add(client_id)
                await ws.send_message(json.dumps({"type": "send", "room": self.room, "body": client_id,
                                                  "client_id": client_id, "ref": client_id}))
                answer = None
                while answer is None:
                    for line in (await ws.get_message()).split("\n"):
                        event = json.loads(line)
                        if event.get("ref") == client_id:
                            answer = event
                outcome = "ack" if answer["type"] == "ack" else answer.get("code", "?")
                if outcome == "ack":
                    self.acked.add(client_id)
                self.answers.append((client_id, during, outcome))
                await trio.sleep(SEND_EVERY_S)

    async def follow(self) -> None:
        since: int | None = None
        while True:
            try:
                async with open_websocket_url(self.url(self.tokens[1])) as ws:
                    frame: dict[str, Any] = {"type": "subscribe", "room": self.room, "ref": "s"}
                    if since is not None:
                        frame["since"] = since
                    await ws.send_message(json.dumps(frame))
                    while True:
                        for line in (await ws.get_message()).split("\n"):
                            event = json.loads(line)
                            if event["type"] == "subscribed":
                                self.subscribed.set()
                            elif event["type"] == "message":
                                self.received.append(event["message"]["client_id"])
                                since = event["seq"]
            except (ConnectionClosed, HandshakeError, OSError):
                self.reconnects += 1
                await trio.sleep(0.2)


async def close_code_of_a_new_ws(url: str) -> int | None:
    try:
        async with open_websocket_url(url) as ws:
            with trio.fail_after(10):
                while True:
                    await ws.get_message()
    except ConnectionClosed as exc:
        return exc.reason.code
    except (HandshakeError, OSError, trio.TooSlowError):
        return None


async def one_outage(name: str, proxy: TcpProxy, traffic: Traffic, base: str, down_s: float,
                     process: subprocess.Popen[str]) -> dict[str, Any]:
    answered_before = len(traffic.answers)
    proxy.cut()
    traffic.cut = True
    went_down = trio.current_time()
    await trio.sleep(min(1.0, down_s / 2))
    ready_during = await http_status(base, "/readyz")
    new_ws = await close_code_of_a_new_ws(traffic.url(traffic.tokens[0]))
    await trio.sleep(max(0.0, down_s - (trio.current_time() - went_down)))
    proxy.restore()
    traffic.cut = False
    restored = trio.current_time()
    ready_after = None
    with trio.move_on_after(60):
        while await http_status(base, "/readyz") != 200:
            await trio.sleep(0.05)
        ready_after = trio.current_time() - restored
    caught_up = None
    acked = set(traffic.acked)
    with trio.move_on_after(60):
        while not acked <= set(traffic.received):
            await trio.sleep(0.05)
        caught_up = trio.current_time() - restored
    during = [outcome for _, cut, outcome in traffic.answers[answered_before:] if cut]
    return {
        "dependency": name,
        "down_s": round(restored - went_down, 2),
        "sent_during": len(during),
        "acked_during": during.count("ack"),
        "unavailable_during": during.count("unavailable"),
        "other_errors_during": len(during) - during.count("ack") - during.count("unavailable"),
        "readyz_during": ready_during,
        "new_ws_close_code_during": new_ws,
        "ready_after_s": round(ready_after, 2) if ready_after is not None else None,
        "caught_up_after_s": round(caught_up, 2) if caught_up is not None else None,
        "server_alive": process.poll() is None,
    }


async def run(url: str, tokens: list[str], room: int, down_s: float, only: str | None, log_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        pg, redis = TcpProxy(*POSTGRES), TcpProxy(*REDIS)
        await nursery.start(pg.run)
        await nursery.start(redis.run)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
            "ROOMCAST_NO_BOOTSTRAP": "1",
            "ROOMCAST_DATABASE_URL": pg.url_for(url),
            "ROOMCAST_REDIS_URL": redis.url_for(f"redis://{REDIS[0]}:{REDIS[1]}/0"),
            "ROOMCAST_REDIS_KEY_PREFIX": f"rc-bench:{secrets.token_hex(4)}:",
            "ROOMCAST_JWT_SECRET": SECRET,
            "ROOMCAST_LOG_LEVEL": "info",
            "ROOMCAST_SEND_RATE_PER_S": "1000000",
            "ROOMCAST_SEND_BURST": "1000000",
            "ROOMCAST_TYPING_RATE_PER_S": "1000000",
        }
        process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], env=env,
                                   stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True)
        assert process.stdout is not None
        line = await trio.to_thread.run_sync(process.stdout.readline)
        if not line.startswith("listening on "):
            process.kill()
            raise SystemExit(f"server did not start: {line!r}; see {log_path}")
        base = line.removeprefix("listening on ").strip()
        try:
            traffic = Traffic(base.replace("http://", "ws://"), tokens, room)
            async with trio.open_nursery() as clients:
                clients.start_soon(traffic.follow)
                await traffic.subscribed.wait()
                clients.start_soon(traffic.send_steadily)
                for name, proxy in (("database", pg), ("streams", redis)):
                    if only not in (None, name):
                        continue
                    await trio.sleep(2)  # steady traffic before
                    figures = await one_outage(name, proxy, traffic, base, down_s, process)
                    print(json.dumps(figures), flush=True)
                traffic.stopping = True  # then give the subscriber time to get every acknowledged message
                with trio.move_on_after(30):
                    while not traffic.acked <= set(traffic.received):
                        await trio.sleep(0.05)
                await trio.sleep(0.5)  # room for a late duplicate to show
                clients.cancel_scope.cancel()  # before the server stops: its 1012 is not what is measured
            got = traffic.received
            print(json.dumps({"total_sent": len(traffic.sent), "total_acked": len(traffic.acked),
                              "lost": len(traffic.acked - set(got)), "duplicated": len(got) - len(set(got)),
                              "unexpected": len(set(got) - traffic.sent),
                              "subscriber_reconnects": traffic.reconnects, "server_alive": process.poll() is None}),
                  flush=True)
        finally:
            process.terminate()
            await trio.to_thread.run_sync(process.wait)
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--down-s", type=float, default=5.0, help="seconds each dependency is cut")
    parser.add_argument("--only", choices=["database", "streams"], help="cut only this one")
    args = parser.parse_args()
    postgres = f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/test"
    schema = f"rc_bench_{secrets.token_hex(4)}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = f"{postgres}?options=-csearch_path%3D{schema}"
        user_ids, room = prepare(url)
        codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
        log_path = Path(tempfile.mkdtemp(prefix="rc-outage-")) / "server.log"
        print(f"server log: {log_path}", flush=True)
        trio.run(run, url, [codec.mint(uid) for uid in user_ids], room, args.down_s, args.only, log_path)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
