#!/usr/bin/env python3
"""Broadcast benchmark: many connected users, one POST /api/broadcast to one role, time to the last receipt.

A real roomcast server (or two sharing PostgreSQL and Redis), and a Node.js load generator in
another process (bench/loadgen/broadcast.mjs) holding every WebSocket client. Of `--users`
users, `--targets` (default: half) have the role broadcast to (`teacher`), the others are
`student`s; no one is a `parent`, and a warm-up broadcast goes there first. Each round is one
broadcast: the load generator times it from just before the POST to the last target's receipt,
then waits `--grace` seconds and counts anything that reached a non-target (there must be
nothing) or a target twice.

    python bench/broadcast.py                                 # 5000 users, 2500 targets, SQLite + in-process
    python bench/broadcast.py --stack postgresql-redis --nodes 2
    python bench/broadcast.py --users 200 --rounds 3          # a smoke run

The load generator gets the last CPU core and the servers the others (see bench/fanout.py;
`--no-pin` to share). It needs Node.js 18+; its one dependency (ws) is installed with npm on
first use. The exit status is 1 when a target missed the broadcast or a non-target got it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import (  # noqa: E402
    LOADGEN,
    REDIS,
    SECRET,
    child_setup,
    core_split,
    database,
    ensure_loadgen,
    raise_file_limit,
)
from sqlalchemy import insert, text  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402
from roomcast.storage.models import User  # noqa: E402

ARTIFACTS = ROOT / "artifacts" / "broadcast"
TARGET_ROLE, OTHER_ROLE = "teacher", "student"


def prepare(url: str, users: int, targets: int) -> tuple[int, list[tuple[int, bool]]]:
    """The admin who broadcasts, and (user id, is a target) for each connected user, straight in the database.

    Targets and the others are interleaved, so that each node of a pair holds half of each.
    """
    engine = create_database_engine(url)
    upgrade(engine)
    chosen = {round(n * users / targets) for n in range(targets)} if targets else set()
    with engine.begin() as connection:
        connection.execute(insert(User), [
            {"tenant": "default", "username": f"u{n}", "display_name": f"User {n}", "is_active": True,
             "role": TARGET_ROLE if n in chosen else OTHER_ROLE} for n in range(users)])
        connection.execute(insert(User), [{"tenant": "default", "username": "broadcaster", "display_name": "B",
                                           "role": "admin", "is_active": True}])
        rows = connection.execute(text("SELECT id, username FROM users ORDER BY id")).all()
    engine.dispose()
    ids = {username: user_id for user_id, username in rows}
    return ids["broadcaster"], [(ids[f"u{n}"], n in chosen) for n in range(users)]


@contextmanager
def server(name: str, stack: str, url: str, prefix: str, workdir: Path,
           cores: set[int] | None) -> Iterator[tuple[int, str]]:
    """One `run.py serve` process: (its pid, its base URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
        "ROOMCAST_NO_BOOTSTRAP": "1",
        "ROOMCAST_DATA_DIR": str(workdir),
        "ROOMCAST_DATABASE_URL": url,
        "ROOMCAST_JWT_SECRET": SECRET,
        "ROOMCAST_LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "warning"),
    }
    if stack.endswith("redis"):
        env |= {"ROOMCAST_REDIS_URL": REDIS, "ROOMCAST_REDIS_KEY_PREFIX": prefix}
    log_path = ARTIFACTS / f"{stack}-{name}-server.log"
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True,
                               preexec_fn=child_setup(cores))
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"server {name} did not start: {line!r}; see {log_path}")
    try:
        yield process.pid, line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(args: argparse.Namespace) -> dict:
    server_cores, loadgen_cores = core_split(args.pin)
    targets = args.users // 2 if args.targets is None else args.targets
    prefix = f"rc-bench:{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix="rc-broadcast-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url = stack.enter_context(database(args.stack, workdir))
        admin, users = prepare(url, args.users, targets)
        codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
        bases = [stack.enter_context(server(f"node{n}", args.stack, url, prefix, workdir / f"node{n}",
                                            server_cores))[1] for n in range(args.nodes)]
        plan = {
            "urls": [base.replace("http://", "ws://") for base in bases], "http": bases[0],
            "admin_token": codec.mint(admin), "name": "bench", "role": TARGET_ROLE, "data_bytes": args.data_bytes,
            "rounds": args.rounds, "timeout_s": args.timeout, "grace_s": args.grace,
            "users": [{"token": codec.mint(user_id), "target": target} for user_id, target in users],
        }
        (workdir / "plan.json").write_text(json.dumps(plan))
        generator = subprocess.run(["node", str(LOADGEN / "broadcast.mjs"), str(workdir / "plan.json")],
                                   stdout=subprocess.PIPE, text=True, preexec_fn=child_setup(loadgen_cores),
                                   timeout=args.timeout * args.rounds + 600)
        if generator.returncode != 0 or not generator.stdout:
            raise SystemExit(f"the load generator failed; server logs are in {ARTIFACTS}")
        result = json.loads(generator.stdout.splitlines()[-1])
    cores = ({"servers": sorted(server_cores), "loadgen": sorted(loadgen_cores)}
             if server_cores and loadgen_cores else "shared")
    return {"stack": args.stack, "targets": targets, "data_bytes": args.data_bytes, "cores": cores, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["sqlite-memory", "postgresql-redis"], default="sqlite-memory")
    parser.add_argument("--users", type=int, default=5000, help="connected users (one connection each)")
    parser.add_argument("--targets", type=int, help="how many of them have the role broadcast to (default: half)")
    parser.add_argument("--nodes", type=int, default=1, help="servers sharing the users (postgresql-redis only)")
    parser.add_argument("--rounds", type=int, default=3, help="broadcasts, one at a time, each timed")
    parser.add_argument("--data-bytes", type=int, default=256, help="size of the broadcast's data string")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a round waits for every target")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds after the last receipt to watch for strays")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not keep the load generator on a core of its own")
    args = parser.parse_args()
    if args.nodes > 1 and args.stack != "postgresql-redis":
        parser.error("--nodes above 1 needs --stack postgresql-redis")
    if not 0 <= (args.targets or 0) <= args.users:
        parser.error("--targets must be between 0 and --users")
    if shutil.which("node") is None:
        raise SystemExit("the load generator needs Node.js (node) on PATH")
    raise_file_limit()
    ensure_loadgen()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result = run(args)
    print(json.dumps(result), flush=True)
    complete = all(r["received"] == r["targets"] and not r["non_target_receipts"] and not r["duplicates"]
                   for r in result["rounds"])
    raise SystemExit(0 if complete else 1)


if __name__ == "__main__":
    main()
