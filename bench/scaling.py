#!/usr/bin/env python3
"""Scaling benchmark: 1 to N roomcast processes sharing one PostgreSQL and one Redis (or Redis Cluster).

For each process count it starts that many server processes on this machine against a fresh
database schema and a fresh Redis key prefix, spreads every room's subscribers over the
processes round-robin (as a load balancer would) and puts each room's publisher on process
`room % N`, so most deliveries cross processes through Redis. The Node load generator
(bench/loadgen/) then runs one of bench/fanout.py's flat scenarios and reports deliveries/s
and the CPU all the servers used. Every message is a real `send`, committed to PostgreSQL.

    python bench/scaling.py                                   # 1..4 processes, flat-100x10, single Redis
    python bench/scaling.py --redis-url redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
    python bench/scaling.py --processes 1 2 --scenario flat-1x1000 --duration 5

Nothing is pinned: the servers, the load generator, PostgreSQL and Redis share every core.
On a machine with fewer cores than processes the servers compete for CPU, so besides
deliveries/s the table gives deliveries per server CPU-second, which is what a capacity
plan multiplies by the cores a deployment has.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from fanout import (  # type: ignore[import-not-found]
    ARTIFACTS,
    LOADGEN,
    REDIS,
    SCENARIOS,
    SECRET,
    TokenCodec,
    child_setup,
    database,
    ensure_loadgen,
    prepare,
    raise_file_limit,
    seating,
    server,
)

STACK = "postgresql-redis"


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """utime + stime, and with `reaped_children` the times of children that ended (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / 100


def shared_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of every Redis and PostgreSQL process on this machine: what the
    shared components spend per message, so where each saturates is measured, not guessed."""
    totals = {"redis": 0.0, "postgresql": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm.startswith("redis-server"):
                totals["redis"] += cpu_seconds(int(entry.name))
            elif comm in ("postgres", "postmaster"):
                # A backend that ends moves its time into the postmaster's children times.
                parent = (entry / "stat").read_text().split(") ")[1].split()[1]
                postmaster = Path(f"/proc/{parent}/comm").read_text().strip() != "postgres"
                totals["postgresql"] += cpu_seconds(int(entry.name), reaped_children=postmaster)
        except (OSError, IndexError):
            pass  # the process ended meanwhile
    return totals


def run(processes: int, scenario: str, redis_url: str, duration_s: float, presence: str) -> dict:
    spec = dict(SCENARIOS[scenario])
    if spec["mode"] != "flat":
        raise SystemExit("scaling runs the flat scenarios")
    spec["duration_s"] = duration_s
    with tempfile.TemporaryDirectory(prefix="rc-scaling-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        subscriber_users = spec["rooms"] * spec["subscribers"]
        seats = seating(spec["rooms"], spec["subscribers"], subscriber_users)
        url = stack.enter_context(database(STACK, workdir))
        user_ids, room_ids = prepare(url, subscriber_users + 1, seats)
        codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
        tokens = [codec.mint(uid) for uid in user_ids]
        shared = {"ROOMCAST_REDIS_URL": redis_url, "ROOMCAST_REDIS_KEY_PREFIX": f"rc-scale:{secrets.token_hex(4)}:"}
        nodes = []
        for index in range(processes):
            node_dir = workdir / f"node{index}"
            node_dir.mkdir()
            log_path = ARTIFACTS / f"scaling-{processes}-node{index}.log"
            nodes.append(stack.enter_context(server(STACK, url, node_dir, log_path, None, shared)))
        bases = [base.replace("http://", "ws://") for _, base in nodes]
        pids = [process.pid for process, _ in nodes]
        rooms = []
        connection = 0
        for position, (room_id, room_seats) in enumerate(zip(room_ids, seats, strict=True)):
            subscriber_urls = []
            for _ in room_seats:
                subscriber_urls.append(bases[connection % processes])
                connection += 1
            rooms.append({"id": room_id, "publisher": tokens[-1], "publisher_url": bases[position % processes],
                          "subscribers": [tokens[index] for index in room_seats],
                          "subscriber_urls": subscriber_urls})
        plan = {"url": bases[0], **spec, "rooms": rooms, "server_pid": pids[0], "server_pids": pids,
                "presence": presence, "latency_sample_every": 50}
        (workdir / "plan.json").write_text(json.dumps(plan))
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        shared_before = shared_cpu_seconds()
        started = time.monotonic()
        gen = subprocess.run(["node", str(LOADGEN / "loadgen.mjs"), str(workdir / "plan.json")],
                             stdout=subprocess.PIPE, text=True, preexec_fn=child_setup(None), check=False)
        wall = time.monotonic() - started
        cpu_total = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        shared_after = shared_cpu_seconds()
        if gen.returncode != 0 or not gen.stdout.strip():
            raise SystemExit(f"load generator failed (exit {gen.returncode}); see {ARTIFACTS}")
        result = json.loads(gen.stdout.splitlines()[0])
    server_cores = result["server_cpu_share"]
    # The whole run (joins, warm-up, measuring) sent `sent` messages: CPU per message of each shared part.
    sent = max(1, result["sent"])
    shared_ms = {name: round(1000 * (shared_after[name] - shared_before[name]) / sent, 3) for name in shared_after}
    return {
        "processes": processes, "scenario": scenario, "redis": redis_url,
        "deliveries_per_s": round(result["deliveries_per_s"]),
        "messages_acked": result["acked"], "errors": result["errors"],
        "server_cores_used": round(server_cores, 2),
        "deliveries_per_server_cpu_s": round(result["deliveries_per_s"] / server_cores) if server_cores else None,
        "p50_ms": result["latency_ms"]["p50"], "p99_ms": result["latency_ms"]["p99"],
        "whole_run_server_cpu_s": round(cpu_total, 1), "whole_run_s": round(wall, 1),
        "whole_run_messages": result["sent"],
        "server_cpu_ms_per_message": round(1000 * cpu_total / sent, 3),
        "redis_cpu_ms_per_message": shared_ms["redis"],
        "postgresql_cpu_ms_per_message": shared_ms["postgresql"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--scenario", choices=[name for name, spec in SCENARIOS.items() if spec["mode"] == "flat"],
                        default="flat-100x10")
    parser.add_argument("--redis-url", default=REDIS, help="redis://… or redis+cluster://host:port,…")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per process count")
    parser.add_argument("--presence", choices=["legacy", "diff"], default="diff")
    args = parser.parse_args()
    raise_file_limit()
    ensure_loadgen()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for count in args.processes:
        row = run(count, args.scenario, args.redis_url, args.duration, args.presence)
        print(json.dumps(row), flush=True)
        rows.append(row)
    base = rows[0]["deliveries_per_s"] or 1
    print(f"\n{'processes':>9} {'deliveries/s':>13} {'x of first':>10} {'server cores':>12} "
          f"{'deliv/CPU-s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['processes']:>9} {row['deliveries_per_s']:>13} {row['deliveries_per_s'] / base:>10.2f} "
              f"{row['server_cores_used']:>12} {row['deliveries_per_server_cpu_s']!s:>12} "
              f"{row['p50_ms'] or 0:>8.1f} {row['p99_ms'] or 0:>8.1f}")
    print("\nCPU ms per message over each whole run (servers / Redis / PostgreSQL):")
    for row in rows:
        print(f"{row['processes']:>9}  {row['server_cpu_ms_per_message']} / {row['redis_cpu_ms_per_message']}"
              f" / {row['postgresql_cpu_ms_per_message']}")


if __name__ == "__main__":
    main()
