#!/usr/bin/env python3
"""Connection churn against a real server process: does it stay up, and does it keep anything?

Two phases, with a publisher sending to the room all along (so fan-outs meet dying sessions):

  churn      CYCLES connect / (maybe subscribe) / TCP reset cycles, AT_ONCE at a time
  mass drop  DROP subscribed connections, then every one of them reset at the same moment

Reports the server's RSS and open file descriptors before, after each phase and once settled,
whether the process is alive, and /readyz.

    python bench/churn.py                                # SQLite + in-process streams
    python bench/churn.py --stack postgresql-redis --cycles 5000 --drop 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import SECRET, database, prepare, raise_file_limit, rss_kib, seating, server  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from tests.faults.churn_client import abort, connect_and_drop, masked_text, upgrade_request  # noqa: E402


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def publisher(base: str, token: str, room: int, stop: trio.Event, sent: list[int]) -> None:
    """Sends to the room every 20 ms until `stop`."""
    parts = urlsplit(base)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    await stream.send_all(upgrade_request(base, token))
    while not stop.is_set():
        body = json.dumps({"type": "send", "room": room, "body": f"m{sent[0]}"}).encode()
        await stream.send_all(masked_text(body))
        sent[0] += 1
        with trio.move_on_after(0.02):
            while True:
                await stream.receive_some(65536)  # acks and the room's events: read and drop
    abort(stream)


async def churn(base: str, tokens: list[str], room: int, cycles: int, at_once: int) -> None:
    stages = [{"wait_for": None}, {}, {"room": room}, {"room": room, "wait_for": b'"welcome"'}]
    done = 0
    while done < cycles:
        async with trio.open_nursery() as nursery:
            for n in range(min(at_once, cycles - done)):
                stage = stages[(done + n) % len(stages)]
                nursery.start_soon(partial(connect_and_drop, base, tokens[(done + n) % len(tokens)], **stage))
        done += at_once


async def mass_drop(base: str, tokens: list[str], room: int, count: int) -> None:
    """`count` connections subscribed to the room, then reset all at once."""
    parts = urlsplit(base)
    streams: list[trio.SocketStream] = []

    async def join(token: str) -> None:
        stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        streams.append(stream)
        await stream.send_all(upgrade_request(base, token))
        await stream.send_all(masked_text(json.dumps({"type": "subscribe", "room": room}).encode()))
        received = b""
        with trio.fail_after(60):
            while b'"subscribed"' not in received:
                received += await stream.receive_some(65536)

    limiter = trio.CapacityLimiter(100)

    async def limited(token: str) -> None:
        async with limiter:
            await join(token)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(limited, tokens[n % len(tokens)])
    for stream in streams:
        abort(stream)


async def run(base: str, pid: int, tokens: list[str], publisher_token: str, room: int, cycles: int,
              drop: int) -> dict:
    def sample() -> dict:
        return {"rss_kib": rss_kib(pid), "fds": open_fds(pid)}

    figures: dict = {"before": sample()}
    stop, sent = trio.Event(), [0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher, base, publisher_token, room, stop, sent)
        started = time.monotonic()
        await churn(base, tokens, room, cycles, 20)
        figures["churn"] = {"cycles": cycles, "seconds": round(time.monotonic() - started, 1), **sample()}
        started = time.monotonic()
        await mass_drop(base, tokens, room, drop)
        figures["mass_drop"] = {"connections": drop, "seconds": round(time.monotonic() - started, 1), **sample()}
        stop.set()
    await trio.sleep(5)  # sessions notice their resets, rooms detach them
    figures["settled"] = sample()
    figures["messages_sent"] = sent[0]
    async with httpx.AsyncClient(base_url=base) as http:
        figures["readyz"] = (await http.get("/readyz")).status_code
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["sqlite-memory", "postgresql-redis"], default="sqlite-memory")
    parser.add_argument("--cycles", type=int, default=5000)
    parser.add_argument("--drop", type=int, default=1000)
    args = parser.parse_args()
    raise_file_limit()
    users = 200
    with tempfile.TemporaryDirectory(prefix="rc-churn-") as tmp:
        workdir = Path(tmp)
        with database(args.stack, workdir) as url:
            user_ids, room_ids = prepare(url, users + 1, seating(1, users, users))
            codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
            tokens = [codec.mint(uid) for uid in user_ids]
            with server(args.stack, url, workdir, workdir / "server.log", None) as (process, base):
                figures = trio.run(run, base, process.pid, tokens[:-1], tokens[-1], room_ids[0], args.cycles,
                                   args.drop)
                figures["alive"] = process.poll() is None
    print(json.dumps({"stack": args.stack, **figures}))


if __name__ == "__main__":
    main()
