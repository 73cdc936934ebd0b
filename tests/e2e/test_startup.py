"""Start-up problems are one clear line and a non-zero exit, before anything starts; data_dir is found
the same way from any working directory."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import ROOT, cli_env


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(cli_env(tmp_path), "serve", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result) == (f"run.py serve: port {port} on 127.0.0.1 is in use; "
                                "pick another with --port or stop the other server")
    assert result.stdout == ""
    assert not (tmp_path / "roomcast.db").exists()  # nothing migrated, nothing started


def test_an_unknown_host_is_one_line(tmp_path: Path) -> None:
    result = run(cli_env(tmp_path), "serve", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 1
    assert one_line(result).startswith("run.py serve: cannot resolve host 'no-such-host.invalid'")


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"], ["token", "alice"]])
def test_an_unreachable_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = cli_env(tmp_path) | {"ROOMCAST_DATABASE_URL": f"postgresql+psycopg://rc:hunter2@127.0.0.1:{port}/rc"}
    result = run(env, *command)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"run.py {command[0]}: database postgresql+psycopg://rc:***@127.0.0.1:{port}/rc "
                           "is unreachable (")
    assert line.endswith("start it or fix database_url (ROOMCAST_DATABASE_URL)") and "hunter2" not in line


def test_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = run(cli_env(tmp_path / "a-file" / "data"), "serve", "--port", "0")
    assert result.returncode == 1
    assert one_line(result).startswith(f"run.py serve: data_dir {tmp_path / 'a-file' / 'data'} is not writable")


def test_a_bad_setting_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = run(cli_env(tmp_path) | {"ROOMCAST_PORT": "eighty", "ROOMCAST_HEARTBEAT_S": "-1"}, "serve")
    assert result.returncode == 2
    line = one_line(result)
    assert "ROOMCAST_PORT" in line and "ROOMCAST_HEARTBEAT_S" in line and "Traceback" not in result.stderr


def test_an_unreadable_jwt_key_is_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path) | {"ROOMCAST_JWT_ALGORITHM": "RS256",
                               "ROOMCAST_JWT_PUBLIC_KEY_FILE": str(tmp_path / "absent.pem")}
    result = run(env, "serve", "--port", "0")
    assert result.returncode == 1
    assert one_line(result).startswith(f"run.py serve: cannot read the JWT key {tmp_path / 'absent.pem'}")


def test_every_command_finds_the_same_data_dir_from_any_working_directory(tmp_path: Path) -> None:
    config_dir, elsewhere, other = tmp_path / "etc", tmp_path / "elsewhere", tmp_path / "other"
    for folder in (config_dir, elsewhere, other):
        folder.mkdir()
    (config_dir / "roomcast.toml").write_text('data_dir = "../state"\n')
    env = {k: v for k, v in cli_env(tmp_path).items() if k != "ROOMCAST_DATA_DIR"}
    env["ROOMCAST_CONFIG"] = str(config_dir / "roomcast.toml")

    created = run(env, "create-user", "alice", cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    minted = run(env, "token", "alice", cwd=other)
    assert minted.returncode == 0, minted.stderr
    assert (tmp_path / "state" / "roomcast.db").exists() and (tmp_path / "state" / "jwt_secret").exists()
    assert not list(elsewhere.iterdir()) and not list(other.iterdir())

    server = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--port", "0"], env=env, cwd=other,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("listening on http://127.0.0.1:")
        assert server.stdout.readline().strip() == f"data_dir {tmp_path / 'state'}"
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert json.loads(created.stdout)["username"] == "alice"
