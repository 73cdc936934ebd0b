"""A private, throw-away redis-server for tests that stop and restart Redis.

The shared server at 127.0.0.1:6379 serves every test process (and other
worktrees' runs); restarting it would break them. This one is ours alone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import trio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on a free port, without persistence: a restart loses every stream."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not await trio.to_thread.run_sync(_answers, self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not come up")
            await trio.sleep(0.02)

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()  # like a crash: no chance to save anything (nothing is saved anyway)
        await trio.to_thread.run_sync(self.process.wait)
        self.process = None
