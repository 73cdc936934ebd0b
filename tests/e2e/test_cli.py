"""The command line end to end: a real server process on a real socket, the CLI beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    return env | {"ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_DATA_DIR": str(data_dir), "ROOMCAST_LOG_FORMAT": "text"}


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], env=cli_env(data_dir),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--port", "0"], env=cli_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the server is listening (or dies)
    if not line.startswith("listening on http://"):
        process.kill()
        pytest.fail(f"server did not start: {line!r} {process.stderr.read() if process.stderr else ''}")
    try:
        yield process, line.removeprefix("listening on ").strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_serve_create_user_token_me(server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    process, url = server
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200

        created = await trio.to_thread.run_sync(
            run_cli, tmp_path, "create-user", "olga", "--password", "s3cret-pass", "--role", "teacher")
        assert created.returncode == 0, created.stderr
        user = json.loads(created.stdout)
        assert user["username"] == "olga" and user["role"] == "teacher" and user["tenant"] == "default"

        minted = await trio.to_thread.run_sync(run_cli, tmp_path, "token", "olga", "--ttl", "120")
        assert minted.returncode == 0, minted.stderr
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {minted.stdout.strip()}"})
        assert me.status_code == 200 and me.json()["id"] == user["id"]

        login = await http.post("/api/auth/login", json={"username": "olga", "password": "s3cret-pass"})
        assert login.status_code == 200

    process.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(lambda: process.wait(timeout=15)) == 0


async def test_sigint_stops_gracefully(server: tuple[subprocess.Popen[str], str]) -> None:
    process, _ = server
    process.send_signal(signal.SIGINT)
    assert await trio.to_thread.run_sync(lambda: process.wait(timeout=15)) == 0
    assert process.stderr is not None
    assert "server.stopped" in process.stderr.read()


@pytest.mark.parametrize("command", [[], ["serve"], ["migrate"], ["create-user"], ["token"], ["users"],
                                     ["users", "list"], ["users", "set-password"]])
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(tmp_path, *command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_migrate(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate")
    assert result.returncode == 0 and (tmp_path / "roomcast.db").exists()


def test_duplicate_user_and_unknown_user_fail_clearly(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "create-user", "ann").returncode == 0
    again = run_cli(tmp_path, "create-user", "ann")
    assert again.returncode == 1 and "taken" in again.stderr
    missing = run_cli(tmp_path, "token", "nobody")
    assert missing.returncode != 0 and "nobody" in missing.stderr


@pytest.mark.parametrize("name", ["ann smith", "ann\u200bsmith", "\u202eadmin", "a" * 65, ""])
def test_create_user_refuses_a_name_rest_refuses(tmp_path: Path, name: str) -> None:
    """POST /api/users refuses invisible characters and names over 64 characters; the CLI took them."""
    result = run_cli(tmp_path, "create-user", name)
    assert result.returncode == 1 and "username must" in result.stderr


def test_bad_settings_stop_start_up_naming_the_key(tmp_path: Path) -> None:
    env = cli_env(tmp_path) | {"ROOMCAST_PORT": "eighty"}
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "serve"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "ROOMCAST_PORT" in result.stderr


async def test_users_commands_disable_enable_revoke_and_set_password(
        server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    _, url = server
    for name, display in (("ann", "Ann Admin"), ("bea", "Beatrice"), ("cy", "Cyrus BEAr")):
        assert run_cli(tmp_path, "create-user", name, "--password", "first password", "--display-name",
                       display).returncode == 0
    listed = run_cli(tmp_path, "users", "list", "-q", "bea")
    assert [json.loads(line)["username"] for line in listed.stdout.splitlines()] == ["bea", "cy"]

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def login(password: str) -> int:
            response = await http.post("/api/auth/login", json={"username": "bea", "password": password})
            return response.status_code

        token = (await http.post("/api/auth/login", json={"username": "bea", "password": "first password"})
                 ).json()["access_token"]
        disabled = await trio.to_thread.run_sync(run_cli, tmp_path, "users", "disable", "bea")
        assert disabled.returncode == 0 and json.loads(disabled.stdout)["is_active"] is False
        assert await login("first password") == 401
        assert (await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        listed = await trio.to_thread.run_sync(run_cli, tmp_path, "users", "list", "--disabled")
        assert [json.loads(line)["username"] for line in listed.stdout.splitlines()] == ["bea"]

        assert (await trio.to_thread.run_sync(run_cli, tmp_path, "users", "enable", "bea")).returncode == 0
        assert await login("first password") == 200
        reset = await trio.to_thread.run_sync(run_cli, tmp_path, "users", "set-password", "bea", "--password",
                                              "second password")
        assert reset.returncode == 0
        assert await login("first password") == 401 and await login("second password") == 200
        assert (await trio.to_thread.run_sync(run_cli, tmp_path, "users", "revoke", "bea")).returncode == 0


def test_users_commands_fail_clearly(tmp_path: Path) -> None:
    missing = run_cli(tmp_path, "users", "disable", "nobody")
    assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr
    assert run_cli(tmp_path, "create-user", "dan").returncode == 0
    short = run_cli(tmp_path, "users", "set-password", "dan", "--password", "short")
    assert short.returncode != 0 and "8 to 1024" in short.stderr
    piped = subprocess.run([sys.executable, str(ROOT / "run.py"), "users", "set-password", "dan"],
                           env=cli_env(tmp_path), input="from stdin 123\n", capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert run_cli(tmp_path, "users", "list", "--role", "nonsense").returncode == 2
