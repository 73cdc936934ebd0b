#!/usr/bin/env python3
"""A webhook receiver on loopback for benchmarks: answers every POST with 200, after `--sleep` seconds.

With `--sleep 10` it is the slow target of the issue's comparison: fan-out latency with a
webhook target that takes 10 s per request, against none. It prints the JSON to give the
server as its `webhooks` setting; bench/fanout.py passes `BENCH_WEBHOOKS` on:

    python bench/webhook_receiver.py --sleep 10 &        # prints {"url": ...}
    BENCH_WEBHOOKS='[{"url": "http://127.0.0.1:PORT/hook", "secret": "bench"}]' \\
        python bench/fanout.py --scenario rate-1x1000
    python bench/fanout.py --scenario rate-1x1000        # the same without a target
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.webhooks.receiver import Receiver, Reply


async def serve(sleep_s: float) -> None:
    receiver = Receiver()
    receiver.reply = lambda _: Reply(wait=lambda: trio.sleep(sleep_s)) if sleep_s > 0 else Reply()
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        print(json.dumps([{"url": receiver.url, "secret": "bench"}]), flush=True)
        while True:
            await trio.sleep(10)
            print(f"received {len(receiver.requests)}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    try:
        trio.run(serve, args.sleep)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
