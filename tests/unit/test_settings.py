"""Settings: flags > environment > TOML file > defaults; unknown keys and bad values stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomcast.config import DEFAULT_CONTACT_POLICY, PROJECT_ROOT, SettingsError, load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings(environ={})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == PROJECT_ROOT / "var" and (PROJECT_ROOT / "run.py").exists()
    assert settings.resolved_database_url == f"sqlite:///{PROJECT_ROOT}/var/roomcast.db"
    assert settings.redis_url is None
    assert settings.max_body_chars == 4000
    assert settings.contact_policy == DEFAULT_CONTACT_POLICY


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "roomcast.toml"
    config.write_text('port = 7000\nhost = "0.0.0.0"\nmax_body_chars = 100\n')
    environ = {"ROOMCAST_CONFIG": str(config), "ROOMCAST_PORT": "7001", "ROOMCAST_MAX_BODY_CHARS": "200"}
    settings = load_settings({"port": 7002}, environ=environ)
    assert settings.port == 7002  # flag
    assert settings.max_body_chars == 200  # environment over file
    assert settings.host == "0.0.0.0"  # file over default


def test_a_flag_left_unset_does_not_override() -> None:
    assert load_settings({"port": None}, environ={"ROOMCAST_PORT": "9000"}).port == 9000


def test_unknown_environment_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="ROOMCAST_PROT"):
        load_settings(environ={"ROOMCAST_PROT": "1"})


def test_harness_variables_are_not_settings() -> None:
    load_settings(environ={"ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_TEST_REDIS_URL": "redis://x"})


def test_unknown_file_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'colour' in config file"):
        load_settings(environ={"ROOMCAST_CONFIG": str(config)})


def test_bad_value_names_key_and_source(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"port \(from environment variable ROOMCAST_PORT\)"):
        load_settings(environ={"ROOMCAST_PORT": "eighty"})
    with pytest.raises(SettingsError, match=r"port \(from flag --port\)"):
        load_settings({"port": 70000}, environ={})


def test_broken_or_missing_file_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(SettingsError, match="config file"):
        load_settings(environ={"ROOMCAST_CONFIG": str(broken)})
    with pytest.raises(SettingsError, match="config file"):
        load_settings(environ={"ROOMCAST_CONFIG": str(tmp_path / "absent.toml")})


def test_tables_from_environment_are_json() -> None:
    settings = load_settings(environ={"ROOMCAST_CONTACT_POLICY": '{"student": ["teacher"]}'})
    assert settings.contact_policy == {"student": ["teacher"]}
    with pytest.raises(SettingsError, match="ROOMCAST_CONTACT_POLICY: expected JSON"):
        load_settings(environ={"ROOMCAST_CONTACT_POLICY": "{student"})


def test_contact_policy_roles_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[contact_policy]\nstudent = ["wizard"]\n')
    with pytest.raises(SettingsError, match="unknown role 'wizard'"):
        load_settings(environ={"ROOMCAST_CONFIG": str(config)})


def test_rs256_needs_a_public_key() -> None:
    with pytest.raises(SettingsError, match="jwt_public_key_file"):
        load_settings(environ={"ROOMCAST_JWT_ALGORITHM": "RS256"})


def test_attachment_types_are_media_types() -> None:
    settings = load_settings(environ={"ROOMCAST_ATTACHMENT_TYPES": '["application/pdf", "image/svg+xml"]'})
    assert settings.attachment_types == ["application/pdf", "image/svg+xml"]
    assert load_settings(environ={}).attachment_orphan_ttl_s == 86_400
    with pytest.raises(SettingsError, match="'PNG' is not a media type"):
        load_settings(environ={"ROOMCAST_ATTACHMENT_TYPES": '["PNG"]'})
    with pytest.raises(SettingsError, match="attachment_orphan_ttl_s"):
        load_settings(environ={"ROOMCAST_ATTACHMENT_ORPHAN_TTL_S": "5"})


def test_a_relative_data_dir_is_resolved_once_against_the_project_folder(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={"ROOMCAST_DATA_DIR": "state"}).data_dir == PROJECT_ROOT / "state"
    assert load_settings(environ={}, base_dir=tmp_path / "x").data_dir == tmp_path / "x" / "var"
    assert load_settings(environ={"ROOMCAST_DATA_DIR": str(tmp_path / "abs")}).data_dir == tmp_path / "abs"


def test_a_relative_data_dir_from_the_config_file_is_resolved_against_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "roomcast.toml").write_text('data_dir = "../state"\n')
    settings = load_settings(environ={"ROOMCAST_CONFIG": str(folder / "roomcast.toml")})
    assert settings.data_dir == tmp_path / "state"
    # The environment still wins, and its relative value is the project folder's.
    settings = load_settings(environ={"ROOMCAST_CONFIG": str(folder / "roomcast.toml"), "ROOMCAST_DATA_DIR": "s"})
    assert settings.data_dir == PROJECT_ROOT / "s"


def test_an_empty_jwt_secret_means_unset() -> None:
    assert load_settings(environ={"ROOMCAST_JWT_SECRET": ""}).jwt_secret is None


def test_a_read_replica_needs_a_postgresql_primary() -> None:
    replica = "postgresql+psycopg://reader@replica:5432/roomcast"
    with pytest.raises(SettingsError, match=r"database_read_url \(from environment variable "
                                            r"ROOMCAST_DATABASE_READ_URL\): .*SQLite has no replicas"):
        load_settings(environ={"ROOMCAST_DATABASE_READ_URL": replica})
    with pytest.raises(SettingsError, match=r"database_read_url .*must be a postgresql:// URL"):
        load_settings({"database_url": "postgresql+psycopg://db/roomcast", "database_read_url": "sqlite:///r.db"},
                      environ={})
    settings = load_settings({"database_url": "postgresql+psycopg://db/roomcast", "database_read_url": replica},
                             environ={"ROOMCAST_DATABASE_READ_MAX_LAG_S": "2.5"})
    assert (settings.database_read_url, settings.database_read_max_lag_s) == (replica, 2.5)
    # Empty (compose's `${VAR:-}`) is unset, whatever the database.
    assert load_settings(environ={"ROOMCAST_DATABASE_READ_URL": ""}).database_read_url is None
