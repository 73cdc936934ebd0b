"""The peer servers bench/fanout.py measures beside roomcast: how each is installed and started.

Each peer is a process that prints `listening on http://HOST:PORT` and serves /ws (see its module).
Their dependencies are none of roomcast's: the Python peers run in bench/peers/.venv, made on first
use with the `bench` extra of pyproject.toml (FastAPI, uvicorn, trio-websocket); the Node peer uses
the `ws` package, installed here with npm on first use, as the load generator's is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parents[1]
VENV = PEERS / ".venv"

# stack name -> the command that serves it (run from bench/peers/)
COMMANDS = {
    "node-ws": ["node", str(PEERS / "node_ws.mjs")],
    "fastapi": [str(VENV / "bin" / "python"), str(PEERS / "fastapi_server.py")],
    "trio-websocket": [str(VENV / "bin" / "python"), str(PEERS / "trio_websocket_server.py")],
}
NAMES = list(COMMANDS)


def bench_requirements() -> list[str]:
    """The `bench` extra of pyproject.toml: the one place the peers' Python dependencies are named."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"]["bench"])


def ensure_installed(stack: str) -> None:
    """Install what `stack` needs, once: `ws` for Node, or bench/peers/.venv for the Python peers."""
    if stack == "node-ws":
        if not (PEERS / "node_modules" / "ws").exists():
            subprocess.run(["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"],
                           cwd=PEERS, check=True)
        return
    requirements = bench_requirements()
    stamp = VENV / "bench-requirements.txt"  # what was installed: a changed extra installs again
    if stamp.exists() and stamp.read_text() == "\n".join(requirements):
        return
    if not (VENV / "bin" / "python").exists():
        print(f"creating {VENV} for the Python peers", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements], check=True)
    stamp.write_text("\n".join(requirements))


def environment() -> dict[str, str]:
    """The environment a peer runs in: the caller's, less roomcast's settings and any virtualenv."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ROOMCAST_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
