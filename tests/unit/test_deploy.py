"""docker-compose.yml, the Caddyfile, the Dockerfile and .dockerignore: a deployment that runs as is.

With Docker's compose plugin present, `docker compose config` (which needs no daemon and pulls
nothing) validates and resolves the file; without it the YAML is read directly. Either way the
same structure is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NODES = ("node1", "node2")


def _docker_compose_config() -> dict[str, Any] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    env = {k: v for k, v in os.environ.items() if k != "ROOMCAST_JWT_SECRET"}
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        return None  # docker without the compose plugin
    result = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    resolved = _docker_compose_config()
    if resolved is not None:
        return resolved
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_two_nodes_behind_a_load_balancer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"node1", "node2", "lb", "postgres", "redis"} <= set(services)
    lb = services["lb"]
    assert str(lb["image"]).startswith("caddy:")
    assert any("8000" in str(port) for port in lb["ports"])
    assert set(lb["depends_on"]) >= set(NODES)
    assert not any("ports" in services[node] for node in NODES)  # reached through the balancer only
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy node1:8000 node2:8000" in caddyfile and "health_uri /readyz" in caddyfile
    assert any("deploy/Caddyfile" in str(volume) for volume in lb["volumes"])


def test_health_checks_use_readyz_and_everything_restarts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*NODES, "lb"):
        assert "/readyz" in _healthcheck_command(services[name]), name
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert "healthcheck" in service, name
    for node in NODES:
        depends = services[node]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_the_nodes_share_database_redis_and_jwt_secret(compose: dict[str, Any]) -> None:
    node1, node2 = (compose["services"][node]["environment"] for node in NODES)
    assert node1 == node2
    assert node1["ROOMCAST_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in \
        node1["ROOMCAST_DATABASE_URL"]
    assert node1["ROOMCAST_REDIS_URL"] == "redis://redis:6379/0"
    assert "ROOMCAST_JWT_SECRET" in node1
    # Without the variable set, the secret generated into the shared data volume is shared instead.
    assert all(any(str(volume).startswith("roomcast-data:") or _target(volume) == "/data"
                   for volume in compose["services"][node]["volumes"]) for node in NODES)


def _target(volume: Any) -> str:
    return str(volume.get("target")) if isinstance(volume, dict) else str(volume).split(":")[1]


def test_postgres_and_redis_keep_their_data_and_redis_appends(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert any(_target(volume) == "/var/lib/postgresql/data" for volume in services["postgres"]["volumes"])
    assert any(_target(volume) == "/data" for volume in services["redis"]["volumes"])
    command = services["redis"]["command"]
    command = command if isinstance(command, list) else str(command).split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert {"pgdata", "redisdata", "roomcast-data"} <= set(compose["volumes"])


def test_the_image_checks_readiness_and_its_context_leaves_local_state_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK"):]
    assert "/readyz" in healthcheck.split("CMD ", 2)[1] and "/healthz" not in healthcheck
    assert "COPY docs ./docs" in dockerfile
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "var", ".git", "artifacts", "__pycache__", "node_modules", ".env"} <= ignored
    assert "docs" not in ignored and "roomcast" not in ignored and "README.md" not in ignored
