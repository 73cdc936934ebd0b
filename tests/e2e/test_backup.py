"""`run.py backup` and `run.py restore`: a SQLite round trip, online backups, refusals, PostgreSQL advice."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast.storage.backup import BackupError, backup, restore, serving
from tests.e2e.test_cli import ROOT, cli_env, run_cli, server  # noqa: F401 - the server fixture


def usernames(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT username FROM users ORDER BY id")]


def test_backup_and_restore_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli(data, "create-user", "before").returncode == 0
    result = run_cli(data, "backup", str(tmp_path / "copy.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"backed up {data / 'roomcast.db'} to {tmp_path / 'copy.db'}"
    assert run_cli(data, "create-user", "after").returncode == 0
    assert usernames(data / "roomcast.db") == ["before", "after"]

    restored = run_cli(data, "restore", str(tmp_path / "copy.db"))
    assert restored.returncode == 0, restored.stderr
    assert usernames(data / "roomcast.db") == ["before"]
    assert run_cli(data, "token", "before").returncode == 0
    assert run_cli(data, "token", "after").returncode != 0


def test_backup_into_a_folder_names_the_file_and_never_overwrites(tmp_path: Path) -> None:
    data, folder = tmp_path / "data", tmp_path / "backups"
    folder.mkdir()
    assert run_cli(data, "migrate").returncode == 0
    assert run_cli(data, "backup", str(folder)).returncode == 0
    [written] = folder.iterdir()
    assert written.name.startswith("roomcast-") and written.suffix == ".db"
    again = run_cli(data, "backup", str(written))
    assert again.returncode == 1
    assert again.stderr.strip() == f"run.py backup: {written} exists; name a new file or a folder"


def test_backup_while_serving_and_restore_refused_while_serving(
        server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:  # noqa: F811
    assert run_cli(tmp_path, "create-user", "live").returncode == 0
    online = run_cli(tmp_path, "backup", str(tmp_path / "online.db"))
    assert online.returncode == 0, online.stderr
    assert usernames(tmp_path / "online.db") == ["live"]
    refused = run_cli(tmp_path, "restore", str(tmp_path / "online.db"))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"run.py restore: a server is using {tmp_path / 'roomcast.db'}; "
                                      "stop it (every node), then restore")


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    result = run_cli(tmp_path / "data", "restore", str(tmp_path / "junk.db"))
    assert result.returncode == 1 and "is not a SQLite database" in result.stderr
    missing = run_cli(tmp_path / "data", "restore", str(tmp_path / "absent.db"))
    assert missing.returncode == 1 and "no backup file" in missing.stderr


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_on_postgresql_the_commands_give_pg_dump_advice(tmp_path: Path, command: str) -> None:
    env = cli_env(tmp_path) | {"ROOMCAST_DATABASE_URL": "postgresql+psycopg://roomcast@127.0.0.1:1/roomcast"}
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), command, str(tmp_path / "x")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pg_dump --format=custom" in result.stderr and "pg_restore" in result.stderr
    assert not (tmp_path / "x").exists()


def test_the_functions_directly(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5000)])
    copy = backup(database, tmp_path / "copy.sqlite")
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM t")
    with serving(database), pytest.raises(BackupError, match="a server is using"):
        restore(copy, database)
    restore(copy, database)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (5000,)
    with pytest.raises(BackupError, match="no database"):
        backup(tmp_path / "absent.sqlite", tmp_path / "x.sqlite")
