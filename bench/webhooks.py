#!/usr/bin/env python3
"""Webhook delivery benchmark: queued deliveries per second to a fast receiver on loopback.

Opens a node in this process on a fresh SQLite file (or a throwaway PostgreSQL schema it
creates and drops), queues `--events` webhook events spread over `--rooms` rooms for one
settings-file target, then starts the node's `webhooks` actor and times how long it takes to
deliver them all to a receiver that answers 200 at once (tests/webhooks/receiver.py). Events
of one room go out one at a time (per-room order), so `--rooms` and the concurrency settings
bound the parallelism. Prints deliveries/s and checks every delivery ended `delivered`.

    python bench/webhooks.py --events 2000 --rooms 32
    python bench/webhooks.py --database postgresql --concurrency 64 --target-concurrency 16
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from roomcast.config import load_settings  # noqa: E402
from roomcast.node import open_node  # noqa: E402
from roomcast.services.webhook_delivery import ensure_webhook_delivery  # noqa: E402
from roomcast.storage.models import WebhookDelivery  # noqa: E402
from roomcast.storage.webhooks import insert_deliveries  # noqa: E402
from roomcast.timestamps import utcnow  # noqa: E402
from roomcast.wire import encode_text  # noqa: E402
from tests.webhooks.receiver import Receiver  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def queue(session: Session, events: int, rooms: int) -> None:
    now = utcnow()
    rows = []
    for index in range(events):
        room, seq = index % rooms + 1, index // rooms + 1
        body = {"id": secrets.token_hex(16), "event": "message.created", "tenant": "default", "room": room,
                "seq": seq, "message": {"id": index + 1, "body": "x" * 100}}
        rows.append({"tenant": "default", "target": "config:0", "webhook_id": None, "event_id": body["id"],
                     "event": "message.created", "room_id": room, "seq": seq, "body": encode_text(body),
                     "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
    for start in range(0, len(rows), 1000):
        insert_deliveries(session, rows[start:start + 1000])


def count_delivered(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(WebhookDelivery)
                          .where(WebhookDelivery.status == "delivered")) or 0


async def run(args: argparse.Namespace, database_url: str, data_dir: str) -> None:
    receiver = Receiver()
    settings = load_settings({
        "database_url": database_url, "data_dir": data_dir, "jwt_secret": "bench-" + "x" * 32, "log_level": "warning",
        "webhooks": [{"url": receiver.url, "secret": "bench"}], "webhook_concurrency": args.concurrency,
        "webhook_target_concurrency": args.target_concurrency, "webhook_poll_s": 0.05,
    }, environ={})
    async with open_node(settings) as node, trio.open_nursery() as nursery:
        await node.database.write(queue, args.events, args.rooms)
        await receiver.start(nursery)
        started = time.perf_counter()
        ensure_webhook_delivery(node)
        with trio.fail_after(args.time_limit):
            while len(receiver.requests) < args.events:
                await trio.sleep(0.01)
        elapsed = time.perf_counter() - started
        with trio.fail_after(30):
            while (delivered := await node.database.read(count_delivered)) < args.events:
                await trio.sleep(0.05)
        ids = {request.json["id"] for request in receiver.requests}
        print(f"database={node.database.engine.dialect.name} events={args.events} rooms={args.rooms} "
              f"concurrency={args.concurrency}/{args.target_concurrency} (node/target)")
        print(f"delivered {delivered} in {elapsed:.2f}s: {args.events / elapsed:.0f} deliveries/s; "
              f"requests {len(receiver.requests)}, distinct ids {len(ids)}")
        receiver.stop()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--target-concurrency", type=int, default=16)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("ROOMCAST_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roomcast-bench-") as data_dir:
        if args.database == "sqlite":
            trio.run(run, args, f"sqlite:///{data_dir}/bench.db", data_dir)
            return
        schema = f"rc_bench_{os.getpid()}_{secrets.token_hex(4)}"
        admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(args.postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
            trio.run(run, args, url.render_as_string(hide_password=False), data_dir)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
