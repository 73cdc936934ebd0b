"""Private, throw-away redis-servers for tests that stop and restart Redis: one, or a cluster of them.

The shared server at 127.0.0.1:6379 and the shared cluster serve every test process (and
other worktrees' runs); restarting them would break those. These are ours alone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import trio

from tests.helpers import private_port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ask(port: int, command: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(4096)
    except OSError:
        return b""


def _binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise FileNotFoundError(f"{name} is not installed")
    return binary


async def _until(condition: str, check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await trio.to_thread.run_sync(check):
        if time.monotonic() > deadline:
            raise RuntimeError(condition)
        await trio.sleep(0.02)


class RedisServer:
    """redis-server on a free port, without persistence: a restart loses every stream.

    `cluster=True` starts it in cluster mode (its cluster config, which a restart keeps, in `workdir`).
    """

    def __init__(self, workdir: Path, *, cluster: bool = False, options: tuple[str, ...] = ()) -> None:
        self.binary = _binary("redis-server")
        self.workdir = workdir
        # Ports of its own, outside the ephemeral range: a restart (after `stop`) binds them again.
        self.port = private_port()
        self.bus_port = private_port() if cluster else 0
        self.cluster = cluster
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        # The cluster bus gets a free port of its own (by default it is port + 10000, maybe past 65535).
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                 "--cluster-port", str(self.bus_port)] if self.cluster else []
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *extra, *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = self.process
        await _until(f"redis-server on port {self.port} did not come up",
                     lambda: _ask(self.port, b"PING").startswith(b"+PONG") or process.poll() is not None)
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()  # like a crash: no chance to save anything (nothing is saved anyway)
        await trio.to_thread.run_sync(self.process.wait)
        self.process = None


class RedisCluster:
    """Masters (three) and `replicas` per master in cluster mode, made one cluster with redis-cli.

    A short `node_timeout_ms` has a replica take over soon after its master dies.
    """

    def __init__(self, workdir: Path, masters: int = 3, *, replicas: int = 0, node_timeout_ms: int = 15_000) -> None:
        self.cli = _binary("redis-cli")
        self.replicas = replicas
        # Validity factor 0: a replica takes over however long ago it last heard from its master.
        options = ("--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0")
        self.servers = [RedisServer(workdir, cluster=True, options=options) for _ in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
        await trio.to_thread.run_sync(lambda: subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{server.port}" for server in self.servers),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"], check=True, capture_output=True, timeout=30))
        await self.wait_ok()
        # Every replica has its master's data (a replica still syncing could not take over).
        await _until("a replica did not sync with its master", lambda: all(
            b"role:master" in info or b"master_link_status:up" in info
            for info in (_ask(server.port, b"INFO replication") for server in self.servers)))

    async def wait_ok(self) -> None:
        """Until every running node says cluster_state:ok."""
        await _until("the cluster did not reach cluster_state:ok", lambda: all(
            b"cluster_state:ok" in _ask(server.port, b"CLUSTER INFO") for server in self.servers if server.process))

    def command(self, port: int, *args: str) -> str:
        """redis-cli's answer to one command on one node (blocking: call in a thread)."""
        done = subprocess.run([self.cli, "-p", str(port), *args], check=True, capture_output=True, text=True,
                              timeout=10)
        return done.stdout.strip()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()
