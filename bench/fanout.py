#!/usr/bin/env python3
"""Fan-out benchmark: a real roomcast server, a Node.js load generator in another process, on loopback.

Every message is a real `send` over /ws, with a client_id as the web client and the SDK send
them: committed to the database (the client_id looked up first), relayed through
the outbox and the room stream, fanned out by the room actor. Scenarios:

  flat-1x1000    1 room x 1000 subscribers, one publisher flat out   -> deliveries/s
  flat-100x10    100 rooms x 10 subscribers, a publisher per room     -> deliveries/s
  rate-1000x2    1000 rooms x 2 subscribers, 1 message/s in each      -> server CPU, p50/p99 latency
  rate-1x1000    1 room x 1000 subscribers, 20 messages/s             -> p50/p99 send->receive
  idle-5000      5000 idle connections, each subscribed to the one room -> RSS per connection
  storm-1x1000   1000 subscribers join one room within ~1 s while 20 messages/s start at once
                 (no warm-up)     -> p50/p99 send->receive, bytes received (presence bytes apart),
                                     bytes the server wrote (/proc/<pid>/io wchar) during the storm,
                                     when all were subscribed, the server's CPU seconds until then and in all
  drop-1x1000    1000 subscribers, then every client resets its TCP connection at once
                                  -> the server stays up (/readyz 200), its fd count settles

Stacks: roomcast on `sqlite-memory` (SQLite + in-process streams, the default) or `postgresql-redis`,
and three peer servers driven by the same load generator, for comparison (bench/peers/): `node-ws`
(Node's `ws` package), `fastapi` (the FastAPI docs' ConnectionManager broadcast under uvicorn) and
`trio-websocket` (a raw trio-websocket server). Peers speak only the part of the /ws protocol the
load generator uses: no storage, no auth beyond taking the token, no presence. `--compare` runs the
scenarios on every stack (or those named with --stack) in one run and ends with one table.

Presence as subscribers ask for it: `--presence legacy` (PROTOCOL §5 `presence` events, the
default) or `--presence diff` (`presence_diff` events, opted in on subscribe).

    python bench/fanout.py                       # every scenario, SQLite + in-process streams
    python bench/fanout.py --stack postgresql-redis --scenario flat-1x1000
    python bench/fanout.py --profile             # also sample the server with py-spy (pip install py-spy);
                                                 # flat and rate: the steady state, storm: the joins' first seconds
    python bench/fanout.py --no-pin              # let server and load generator share every core
    python bench/fanout.py --stack postgresql-redis --scenario storm-1x1000 --presence diff
    python bench/fanout.py --scenario storm-1x1000 --presence diff --join-over 4 --rate 0.2
                                                 # the joins' CPU alone (server_cpu_s_until_subscribed),
                                                 # a thousand clients trickling in over four seconds
    python bench/fanout.py --scenario drop-1x1000 --subscribers 100   # a smoke run at small scale
    python bench/fanout.py --stack fastapi --scenario flat-1x1000       # a peer server alone
    python bench/fanout.py --compare --scenario flat-1x1000 --scenario idle-5000   # every stack, one table
    python bench/fanout.py --stack postgresql-redis --scenario flat-100x10 --server-setting send_committers=1
    python bench/fanout.py --compare --stack sqlite-memory --stack fastapi --scenario flat-100x10 --repeat 3
                                                 # three rounds; the table ends with each figure's spread
                                                 # and each stack against the others, round by round

By default the load generator gets the last CPU core and the server the others (Linux
sched_setaffinity; PostgreSQL and Redis are left to float). Sharing cores, the
scheduler often pulls the load generator, woken by the server's writes, onto the
server's own core in the middle of a fan-out and stalls it there: on a 2-core machine
that alone moves the p99 of rate-1x1000 by several ms. Clients of a real deployment
are on other machines and steal nothing from the server.

After each roomcast run the server's /metrics are kept in artifacts/fanout/<scenario>-<stack>-metrics.txt:
its send latency, rate-limit and transaction histograms say where a send's time went.

The load generator needs Node.js 18+; its one dependency (ws) is installed with npm on first use.
So are the peers' (bench/peers/stacks.py): `ws` for node-ws, bench/peers/.venv with the `bench`
extra of pyproject.toml for the Python peers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402
from roomcast.storage.models import Membership, Room, User  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from peers import stacks as peers  # noqa: E402

LOADGEN = ROOT / "bench" / "loadgen"
ARTIFACTS = ROOT / "artifacts" / "fanout"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
SECRET = secrets.token_urlsafe(32)
ROOMCAST_STACKS = ["sqlite-memory", "postgresql-redis"]
STACKS = [*ROOMCAST_STACKS, *peers.NAMES]

SCENARIOS = {
    "flat-1x1000": {"mode": "flat", "rooms": 1, "subscribers": 1000, "window": 32, "duration_s": 10, "warmup_s": 3},
    "flat-100x10": {"mode": "flat", "rooms": 100, "subscribers": 10, "window": 2, "duration_s": 10, "warmup_s": 3},
    "rate-1x1000": {"mode": "rate", "rooms": 1, "subscribers": 1000, "rate_per_s": 20, "duration_s": 60,
                    "warmup_s": 3},
    "rate-1000x2": {"mode": "rate", "rooms": 1000, "subscribers": 2, "rate_per_s": 1000, "duration_s": 20,
                    "warmup_s": 3},
    "idle-5000": {"mode": "idle", "rooms": 1, "subscribers": 5000},
    "storm-1x1000": {"mode": "storm", "rooms": 1, "subscribers": 1000, "rate_per_s": 20, "join_over_s": 1.0,
                     "duration_s": 10},
    "drop-1x1000": {"mode": "drop", "rooms": 1, "subscribers": 1000, "settle_s": 30},
}


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def core_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load generator cores): the last core for the load generator, or None to share."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return set(cores[:-1]), {cores[-1]}


def child_setup(cores: set[int] | None):  # type: ignore[no-untyped-def]
    """A preexec_fn: a raised file limit and, if given, the CPU cores to run on."""
    def setup() -> None:
        raise_file_limit()
        if cores is not None:
            os.sched_setaffinity(0, cores)
    return setup


@contextmanager
def database(stack: str, workdir: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a throwaway PostgreSQL schema."""
    if stack.startswith("sqlite"):
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    schema = f"rc_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seating(rooms: int, subscribers: int, subscriber_users: int) -> list[list[int]]:
    """For each room, the user index of each subscriber connection (users are reused past
    `subscriber_users`); the publisher is user index `subscriber_users`, in every room."""
    return [[(r * subscribers + k) % subscriber_users for k in range(subscribers)] for r in range(rooms)]


def prepare(url: str, users: int, seats: list[list[int]]) -> tuple[list[int], list[int]]:
    """Users, rooms and memberships straight in the database; returns (user ids, room ids)."""
    engine = create_database_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(User), [
            {"tenant": "default", "username": f"u{n}", "display_name": f"User {n}", "role": "member",
             "is_active": True} for n in range(users)])
        user_ids = [row[0] for row in connection.execute(text("SELECT id FROM users ORDER BY id"))]
        connection.execute(insert(Room), [
            {"tenant": "default", "kind": "group", "name": f"room {n}", "topic": "", "is_active": True,
             "last_seq": 0} for n in range(len(seats))])
        room_ids = [row[0] for row in connection.execute(text("SELECT id FROM rooms ORDER BY id"))]
        publisher = users - 1
        connection.execute(insert(Membership), [
            {"room_id": room_id, "user_id": user_ids[index], "room_role": "member", "last_read_seq": 0}
            for room_id, room_seats in zip(room_ids, seats, strict=True)
            for index in sorted(set(room_seats) | {publisher})])
    engine.dispose()
    return user_ids, room_ids


@contextmanager
def server(stack: str, url: str, workdir: Path, log_path: Path, cores: set[int] | None,
           extra_env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
        "ROOMCAST_NO_BOOTSTRAP": "1",
        "ROOMCAST_DATA_DIR": str(workdir),
        "ROOMCAST_DATABASE_URL": url,
        "ROOMCAST_JWT_SECRET": SECRET,
        "ROOMCAST_SEND_RATE_PER_S": "1000000",
        "ROOMCAST_SEND_BURST": "1000000",
        "ROOMCAST_LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "warning"),
    }
    if webhooks := os.environ.get("BENCH_WEBHOOKS"):  # JSON, as ROOMCAST_WEBHOOKS (see bench/webhook_receiver.py)
        env["ROOMCAST_WEBHOOKS"] = webhooks
    if stack.endswith("redis"):
        env |= {"ROOMCAST_REDIS_URL": REDIS, "ROOMCAST_REDIS_KEY_PREFIX": f"rc-bench:{secrets.token_hex(4)}:"}
    env |= extra_env or {}  # last: several nodes of one run share a Redis URL and key prefix
    with listening([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], env, log_path, cores) as started:
        yield started


@contextmanager
def peer_server(stack: str, log_path: Path, cores: set[int] | None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A peer server (bench/peers/) on a free port, pinned as roomcast's server is."""
    with listening(peers.COMMANDS[stack], peers.environment(), log_path, cores, cwd=peers.PEERS) as started:
        yield started


@contextmanager
def listening(command: list[str], env: dict[str, str], log_path: Path, cores: set[int] | None,
              cwd: Path | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a server that prints `listening on URL` first; (process, URL) until it is terminated."""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=log_path.open("w"),
                               text=True, preexec_fn=child_setup(cores))
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"{Path(command[1]).name} did not start: {line!r}; see {log_path}")
    try:
        yield process, line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serving(stack: str, spec: dict, workdir: Path, log_path: Path, cores: set[int] | None,
            extra_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, list[dict]]]:
    """The stack's server, and the plan's rooms: [{id, publisher: token, subscribers: [token, ...]}].

    roomcast gets a fresh database with the users, rooms and memberships; a peer keeps nothing,
    so its rooms are numbers and its tokens are minted for user ids that exist nowhere.
    """
    subscriber_users = spec["rooms"] * spec["subscribers"]  # one user per connection, as in life
    seats = seating(spec["rooms"], spec["subscribers"], subscriber_users)
    codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
    if stack in peers.COMMANDS:
        tokens = [codec.mint(uid) for uid in range(1, subscriber_users + 2)]
        rooms = [{"id": r + 1, "publisher": tokens[-1], "subscribers": [tokens[index] for index in room_seats]}
                 for r, room_seats in enumerate(seats)]
        with peer_server(stack, log_path, cores) as (process, base):
            yield process, base, rooms
        return
    with database(stack, workdir) as url:
        user_ids, room_ids = prepare(url, subscriber_users + 1, seats)
        tokens = [codec.mint(uid) for uid in user_ids]
        rooms = [{"id": room_id, "publisher": tokens[-1], "subscribers": [tokens[index] for index in room_seats]}
                 for room_id, room_seats in zip(room_ids, seats, strict=True)]
        with server(stack, url, workdir, log_path, cores, extra_env) as (process, base):
            yield process, base, rooms


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ensure_loadgen() -> None:
    if not (LOADGEN / "node_modules" / "ws").exists():
        subprocess.run(["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"],
                       cwd=LOADGEN, check=True)


def socket_count(pid: int) -> int:
    """The server's open sockets (its database files and pool come and go apart from the clients)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return count


def ready_status(base: str) -> int | None:
    """GET /readyz's status; None when the server does not answer at all."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def server_metrics(base: str) -> str:
    """The server's GET /metrics (Prometheus text), or "" if it does not answer."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def send_counters(metrics: str) -> dict[str, float]:
    """The server's committed messages, the transactions that committed them and their time (the
    committer's wait for each, from its start to its outcome in the event loop), from its /metrics."""
    wanted = {"roomcast_messages_committed_total": "messages", "roomcast_send_transactions_total": "transactions",
              "roomcast_send_transaction_seconds_sum": "transaction_seconds",
              "roomcast_send_transaction_seconds_count": "timed_transactions"}
    counters: dict[str, float] = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            counters[wanted[name]] = float(value)
    return counters


def after_the_drop(gen: subprocess.Popen[str], process: subprocess.Popen[str], base: str,
                   idle_sockets: int, settle_s: float) -> dict:
    """Tell the load generator to reset every connection; then watch the server until its fds settle."""
    assert gen.stdin is not None and gen.stdout is not None
    connected_sockets = socket_count(process.pid)
    gen.stdin.write("go\n")
    gen.stdin.flush()
    result = json.loads(gen.stdout.readline())
    dropped_at = time.monotonic()
    statuses: dict[str, int] = {}
    fds = connected_sockets
    settled_after = None
    while time.monotonic() - dropped_at < settle_s and process.poll() is None:
        status = ready_status(base)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        fds = socket_count(process.pid)
        # Settled: the dropped clients' sockets are gone (database and Redis connections stay).
        if fds <= connected_sockets - result["dropped"] + 2 and settled_after is None:
            settled_after = round(time.monotonic() - dropped_at, 2)
            break
        time.sleep(0.25)
    return result | {"server_alive": process.poll() is None, "readyz_after": ready_status(base),
                     "readyz_while_settling": statuses, "sockets_idle": idle_sockets,
                     "sockets_connected": connected_sockets, "sockets_after": fds,
                     "sockets_settled_after_s": settled_after}


def run_scenario(name: str, stack: str, profile: bool, duration_s: float | None = None, pin: bool = True,
                 presence: str = "legacy", subscribers: int | None = None,
                 presence_window_s: float | None = None, server_env: dict[str, str] | None = None,
                 join_over_s: float | None = None, rate_per_s: float | None = None) -> dict:
    spec = dict(SCENARIOS[name])
    server_cores, loadgen_cores = core_split(pin)
    if duration_s is not None and "duration_s" in spec:
        spec["duration_s"] = duration_s
    if subscribers is not None:
        spec["subscribers"] = subscribers
    if join_over_s is not None and "join_over_s" in spec:
        spec["join_over_s"] = join_over_s
    if rate_per_s is not None and "rate_per_s" in spec:
        spec["rate_per_s"] = rate_per_s
    extra_env = {"ROOMCAST_PRESENCE_WINDOW_S": str(presence_window_s)} if presence_window_s is not None else {}
    extra_env |= server_env or {}
    with tempfile.TemporaryDirectory(prefix="rc-fanout-") as tmp:
        workdir = Path(tmp)
        log_path = ARTIFACTS / f"{name}-{stack}-server.log"
        with serving(stack, spec, workdir, log_path, server_cores, extra_env) as (process, base, rooms):
            plan = {"url": base.replace("http://", "ws://"), **spec, "rooms": rooms, "server_pid": process.pid,
                    "presence": presence,
                    "latency_sample_every": 1 if spec["mode"] in ("rate", "storm") else 50}
            idle_sockets = socket_count(process.pid)
            (workdir / "plan.json").write_text(json.dumps(plan))
            before = rss_kib(process.pid)
            gen = subprocess.Popen(["node", str(LOADGEN / "loadgen.mjs"), str(workdir / "plan.json")],
                                   stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                                   preexec_fn=child_setup(loadgen_cores))
            assert gen.stdout is not None and gen.stdin is not None
            spy = None
            if profile and spec["mode"] in ("flat", "rate"):
                time.sleep(spec["warmup_s"] + 4)  # subscribers connect, then sample the steady state
                spy = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "--duration", "8",
                                        "--rate", "200", "--pid", str(process.pid),
                                        "--output", str(workdir / "profile.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            line = gen.stdout.readline()
            if line and json.loads(line).get("phase") == "storm":
                if profile:  # the joins and what follows them, from the first subscribe on
                    spy = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "--duration",
                                            str(math.ceil(spec["join_over_s"] + 4)), "--rate", "200",
                                            "--pid", str(process.pid), "--output", str(workdir / "profile.txt")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                line = gen.stdout.readline()
            if not line:
                raise SystemExit(f"load generator failed; the server's log is {log_path}")
            result = json.loads(line)
            if spec["mode"] == "drop":
                result = after_the_drop(gen, process, base, idle_sockets, spec["settle_s"])
            if spec["mode"] == "idle":
                time.sleep(2)  # let allocations settle
                after = rss_kib(process.pid)
                result |= {"rss_before_kib": before, "rss_after_kib": after,
                           "kib_per_connection": round((after - before) / spec["subscribers"], 2)}
                gen.stdin.close()
            gen.wait(timeout=120)
            if stack in ROOMCAST_STACKS:
                # The whole run's, warm-up included: where a send's time went (docs/metrics.md).
                metrics = server_metrics(base)
                (ARTIFACTS / f"{name}-{stack}-metrics.txt").write_text(metrics)
            if spec["mode"] == "flat" and stack in ROOMCAST_STACKS:
                counters = send_counters(metrics)
                if counters.get("transactions"):
                    result["messages_per_transaction"] = round(counters["messages"] / counters["transactions"], 2)
                if counters.get("timed_transactions"):
                    result["transaction_ms"] = round(1000 * counters["transaction_seconds"]
                                                     / counters["timed_transactions"], 2)
            if spy is not None:
                spy.wait(timeout=60)
                result["profile_top"] = summarize_profile(workdir / "profile.txt")
                if (workdir / "profile.txt").exists():
                    shutil.copy(workdir / "profile.txt", ARTIFACTS / f"{name}-{stack}-profile.txt")
    cores = ({"server": sorted(server_cores), "loadgen": sorted(loadgen_cores)}
             if server_cores and loadgen_cores else "shared")
    return {"scenario": name, "stack": stack, "cores": cores, "presence": presence, **result}


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Self time by function from py-spy's collapsed stacks, as shares of all samples."""
    if not path.exists():
        return []
    self_time: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        leaf = frames[-1]
        self_time[leaf] = self_time.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(self_time.items(), key=lambda item: -item[1])[:top]
    return [(frame, round(100 * count / total, 1)) for frame, count in ranked]


def compare_table(results: list[dict]) -> str:
    """One Markdown table of the runs: throughput and server CPU per delivery, latency, memory per connection."""
    def number(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    lines = ["| scenario | stack | deliveries/s | server CPU | CPU µs/delivery | p50 ms | p99 ms | KiB/conn | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        latency = r.get("latency_ms") or {}
        rate, cpu = r.get("deliveries_per_s"), r.get("server_cpu_share")
        per_delivery = cpu / rate * 1e6 if rate and cpu is not None else None
        notes = []
        if r.get("errors"):
            notes.append(f"{r['errors']} errors")
        if r.get("closes"):
            notes.append("closes " + ",".join(f"{code}x{n}" for code, n in r["closes"].items()))
        if "server_alive" in r:
            notes.append(f"alive={r['server_alive']} settled_after_s={r.get('sockets_settled_after_s')}")
        if r.get("server_cpu_s_until_subscribed") is not None:  # a storm: what the joins cost
            notes.append(f"all subscribed after {r['all_subscribed_after_s']:.2f} s, "
                         f"{r['server_cpu_s_until_subscribed']:.2f} CPU s until then; "
                         f"presence {r['presence_bytes'] / 1e6:.2f} MB")
        lines.append(f"| {r['scenario']} | {r['stack']} | {number(rate, 0)} | {number(cpu, 2)} | "
                     f"{number(per_delivery)} | {number(latency.get('p50'), 2)} | {number(latency.get('p99'), 2)} | "
                     f"{number(r.get('kib_per_connection'), 2)} | {'; '.join(notes)} |")
    return "\n".join(lines)


def _headline(result: dict) -> tuple[str, float | None]:
    """The figure a scenario is judged by: deliveries/s, p99 ms, KiB per connection, or server up."""
    if "deliveries_per_s" in result:
        return "deliveries/s", result["deliveries_per_s"]
    if "kib_per_connection" in result:
        return "KiB/conn", result["kib_per_connection"]
    if "server_alive" in result:
        return "server up", float(bool(result["server_alive"]))
    return "p99 ms", (result.get("latency_ms") or {}).get("p99")


def spread_table(results: list[dict]) -> str:
    """Over repeated runs: each scenario's headline figure per stack (median, min-max), and each
    stack's figure against every other stack's of the same repetition (median and range of the
    ratios), since this machine's speed drifts between runs more than stacks differ within one."""
    def figure(value: float) -> str:
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"

    by_run: dict[tuple[str, str], list[float | None]] = {}
    metric_of: dict[str, str] = {}
    for r in results:
        metric, value = _headline(r)
        metric_of[r["scenario"]] = metric
        by_run.setdefault((r["scenario"], r["stack"]), []).append(value)
    lines = ["| scenario | stack | figure | median | min-max | runs | against the others, same run (median, min-max) |",
             "|---|---|---|---:|---:|---:|---|"]
    for (scenario, stack), values in by_run.items():
        known = sorted(v for v in values if v is not None)
        if not known:
            continue
        ratios = []
        for (other_scenario, other), other_values in by_run.items():
            if other_scenario != scenario or other == stack:
                continue
            pairs = sorted(mine / theirs for mine, theirs in zip(values, other_values, strict=False)
                           if mine is not None and theirs)
            if pairs:
                ratios.append(f"{other} {statistics.median(pairs):.2f}x ({pairs[0]:.2f}-{pairs[-1]:.2f})")
        lines.append(f"| {scenario} | {stack} | {metric_of[scenario]} | {figure(statistics.median(known))} | "
                     f"{figure(known[0])}-{figure(known[-1])} | {len(known)} | {'; '.join(ratios)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=STACKS, action="append",
                        help="the stack to run (again for several); default sqlite-memory, or every one with --compare")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], action="append",
                        help="the scenario to run (again for several); default all")
    parser.add_argument("--compare", action="store_true",
                        help="run the scenarios on every stack (or those given) and end with one table")
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy in flat, rate and storm scenarios")
    parser.add_argument("--duration", type=float, help="seconds to measure, instead of the scenario's own")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not keep the load generator on a core of its own")
    parser.add_argument("--presence", choices=["legacy", "diff"], default="legacy",
                        help="how subscribers take presence: PROTOCOL §5 events, or opted-in presence_diff")
    parser.add_argument("--presence-window", type=float, help="the server's presence_window_s (default: its own)")
    parser.add_argument("--subscribers", type=int, help="subscribers per room, instead of the scenario's own")
    parser.add_argument("--join-over", type=float, metavar="SECONDS",
                        help="storm: the subscribes spread over this long instead of ~1 s (clients that "
                             "reconnect after a deploy trickle in over several seconds)")
    parser.add_argument("--rate", type=float, metavar="PER_S",
                        help="rate and storm: messages per second instead of 20 (0.2: the joins' cost alone)")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting for this run, e.g. send_committers=1 (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run everything N times, the stacks' order turned each time; with --compare "
                             "the table ends with each figure's spread and the stacks' ratios run by run")
    args = parser.parse_args()
    server_env = {f"ROOMCAST_{name.upper()}": value
                  for name, _, value in (setting.partition("=") for setting in args.server_setting)}
    if shutil.which("node") is None:
        raise SystemExit("the load generator needs Node.js (node) on PATH")
    stacks = args.stack or (STACKS if args.compare else ["sqlite-memory"])
    names = list(SCENARIOS) if not args.scenario or "all" in args.scenario else list(dict.fromkeys(args.scenario))
    raise_file_limit()
    ensure_loadgen()
    for stack in stacks:
        if stack in peers.COMMANDS:
            peers.ensure_installed(stack)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    results = []
    for repetition in range(args.repeat):
        turned = stacks[repetition % len(stacks):] + stacks[:repetition % len(stacks)]  # no stack always first
        for name in names:
            for stack in turned:
                result = run_scenario(name, stack, args.profile, args.duration, args.pin, args.presence,
                                      args.subscribers, args.presence_window, server_env, args.join_over, args.rate)
                if server_env:
                    result["server_settings"] = args.server_setting
                if args.repeat > 1:
                    result["repetition"] = repetition + 1
                print(json.dumps(result), flush=True)
                results.append(result)
    if args.compare:
        results.sort(key=lambda r: (names.index(r["scenario"]), stacks.index(r["stack"]), r.get("repetition", 1)))
        table = compare_table(results)
        if args.repeat > 1:
            table += "\n\n" + spread_table(results)
        (ARTIFACTS / "compare.md").write_text(table + "\n")
        print(table, flush=True)


if __name__ == "__main__":
    main()
