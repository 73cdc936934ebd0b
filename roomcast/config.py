"""One settings object, read from flags > environment > TOML file > defaults.

Every setting has a field below. In the environment it is `ROOMCAST_<NAME>`
(upper case); lists and tables are given there as JSON. The TOML file named by
`ROOMCAST_CONFIG` uses the field names as keys. An unknown key or a bad value
stops start-up with a message naming it and where it came from.

A relative `data_dir` is resolved once, here, so every command finds the same files
whatever its working directory: against the config file's folder when the value comes
from the file, else against the project folder (the one holding `run.py`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

ROLES = ("admin", "service", "member", "teacher", "tutor", "student", "parent", "bot")

# Caller role -> roles it may open a direct chat with (PROTOCOL §2).
_OPEN_TO_ALL = ["admin", "teacher", "tutor", "member", "bot"]
_EVERYONE = ["admin", "member", "teacher", "tutor", "student", "parent", "bot"]
DEFAULT_CONTACT_POLICY: dict[str, list[str]] = {
    "admin": _EVERYONE,
    "teacher": _EVERYONE,
    "tutor": _EVERYONE,
    "member": _OPEN_TO_ALL,
    "student": _OPEN_TO_ALL,
    "parent": _OPEN_TO_ALL,
    "bot": _OPEN_TO_ALL,
    "service": [],
}

# A lowercase media type without parameters, as the upload sniffer names them (image/png, text/plain).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
# The folder holding run.py and the roomcast package: the base of a relative data_dir.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[^/\s:\[\]@?#]+)(:\d{1,5})?", re.IGNORECASE)

# Environment variables with the prefix that are not settings.
_NON_SETTING_ENV = {"ROOMCAST_CONFIG", "ROOMCAST_NO_BOOTSTRAP"}
_NON_SETTING_ENV_PREFIXES = ("ROOMCAST_TEST_",)


# Every webhook event (PROTOCOL §6). `message.unread` is enqueued by its own scheduler.
WEBHOOK_EVENTS = (
    "message.created", "message.edited", "message.deleted",
    "room.created", "room.updated", "room.deleted",
    "member.added", "member.removed",
    "message.unread",
)
WEBHOOK_URL_MAX = 2048
WEBHOOK_SECRET_MAX = 256


def check_webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host, or ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an absolute http:// or https:// URL")
    if len(url) > WEBHOOK_URL_MAX or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in url):
        raise ValueError(f"url must be at most {WEBHOOK_URL_MAX} characters, without spaces or control characters")
    try:
        port = parts.port
    except ValueError:  # out of 0..65535, or not a number
        port = 0
    # None of these could ever be posted to, nor port 0: the HTTP client takes it for the scheme's default.
    if port == 0:
        raise ValueError("url has an invalid port (a number from 1 to 65535)")
    try:  # the host as the sender names it (IDNA), then as the resolver encodes it: an empty or
        # over-long label, or a character IDNA refuses, could never be posted to either
        httpx.URL(url).raw_host.decode("ascii").encode("idna")
    except (httpx.InvalidURL, UnicodeError):
        raise ValueError("url has an invalid host name") from None
    return url


def check_webhook_secret(secret: str) -> str:
    if not secret or len(secret) > WEBHOOK_SECRET_MAX:
        raise ValueError(f"secret must be 1 to {WEBHOOK_SECRET_MAX} characters")
    return secret


def check_webhook_events(events: list[str]) -> list[str]:
    """A non-empty list of known event names, or ["*"] for every event."""
    if not events:
        raise ValueError('events must name at least one event, or be "*"')
    unknown = sorted(set(events) - {*WEBHOOK_EVENTS, "*"})
    if unknown:
        raise ValueError(f"unknown events {unknown}; events are {', '.join(WEBHOOK_EVENTS)} or *")
    return ["*"] if "*" in events else list(dict.fromkeys(events))


@dataclass(frozen=True, slots=True)
class RedisClusterAddress:
    """Where a Redis Cluster is: some of its nodes (it tells the rest) and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


REDIS_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def redis_cluster_address(url: str) -> RedisClusterAddress | None:
    """The nodes of a `redis+cluster://[user:password@]host:port,host:port` URL (TLS:
    `rediss+cluster://`); None for any other URL; ValueError saying what is wrong."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in REDIS_CLUSTER_SCHEMES:
        return None
    if "?" in rest or "#" in rest:
        raise ValueError("a redis+cluster:// URL takes no query or fragment")
    location, _, path = rest.partition("/")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0; leave the path empty")
    userinfo, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = []
    for node in hosts.split(","):
        host, port = _host_port(node.strip())
        nodes.append((host, port))
    return RedisClusterAddress(tuple(nodes), username, password, tls=scheme.lower() == "rediss+cluster")


def _host_port(node: str) -> tuple[str, int]:
    if node.startswith("["):  # [IPv6]:port
        host, bracket, port = node[1:].partition("]")
        port = port.removeprefix(":") if bracket else ""
    else:
        host, _, port = node.rpartition(":") if ":" in node else (node, "", "")
    if not host:
        raise ValueError(f"{node!r} is not host:port (a redis+cluster:// URL lists host:port,host:port)")
    if not port:
        return host, 6379
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{node!r} has no valid port")
    return host, int(port)


class WebhookTarget(BaseModel):
    """One outgoing webhook endpoint of the settings file: it gets the events of every tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    active: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_webhook_url(url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, secret: str) -> str:
        return check_webhook_secret(secret)

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, events: Any) -> Any:
        if events == "*":
            return ["*"]
        return check_webhook_events(events) if isinstance(events, list) else events


class Settings(BaseModel):
    """Every knob roomcast has, with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("var")
    database_url: str | None = None
    database_pool_size: int = Field(10, ge=1, le=200)
    # How long a call waits for PostgreSQL (a connection, its statements, the COMMIT) before it is
    # answered `unavailable` (503): a server that stops answering without closing anything.
    database_timeout_s: float = Field(15.0, gt=0)

    # A PostgreSQL streaming replica of database_url for client-facing reads (history, room lists, the
    # replay of a subscription); storage/replica.py, docs/architecture.md "Reads from a replica". Unset:
    # every read goes to database_url. A replica that does not answer, or has not replayed what the
    # primary had database_read_max_lag_s ago, is left alone until it has; its lag is measured every
    # database_read_probe_s.
    database_read_url: str | None = None
    database_read_max_lag_s: float = Field(5.0, gt=0)
    database_read_probe_s: float = Field(0.2, gt=0, le=10)

    # redis://… (one Redis), or redis+cluster://host:port,host:port (a Redis Cluster: any of its nodes).
    redis_url: str | None = None
    redis_stream_maxlen: int = Field(10_000, ge=100)
    redis_key_prefix: str = "roomcast:"
    # Connections to the one Redis, or to each master of a cluster.
    redis_max_connections: int = Field(8, ge=2, le=64)
    redis_timeout_s: float = Field(10.0, gt=0)
    redis_connect_timeout_s: float = Field(5.0, gt=0)
    memory_stream_maxlen: int = Field(1000, ge=16)
    # The in-process stream's entries, all rooms together: the rooms appended to least recently give theirs up first.
    memory_stream_max_entries: int = Field(100_000, ge=16)

    # The actor runtime (DESIGN.md §2, §5, §7).
    stream_read_block_s: float = Field(5.0, gt=0)
    stream_read_count: int = Field(256, ge=1)
    stream_retry_base_s: float = Field(0.1, gt=0)
    stream_retry_max_s: float = Field(5.0, gt=0)
    outbox_batch_size: int = Field(500, ge=1)
    outbox_sweep_s: float = Field(5.0, gt=0)
    room_mailbox_size: int = Field(256, ge=4)
    room_replay_buffer: int = Field(1024, ge=0)
    # A replay (subscribe with `since`) is paced by the client's socket; one that takes no event
    # for this long is closed with 1013.
    room_replay_stall_s: float = Field(60.0, gt=0)
    supervisor_intensity: int = Field(5, ge=0)
    supervisor_period_s: float = Field(10.0, gt=0)
    restart_backoff_s: float = Field(0.1, ge=0)
    restart_backoff_max_s: float = Field(5.0, ge=0)

    jwt_secret: str | None = None
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    token_ttl_s: int = Field(86_400, ge=60)
    # A valid token costs no database read while its user is cached (identity/user_cache.py): changes
    # made through the admin tools reach every node's cache at once by the notices stream; the ttl
    # bounds staleness when that stream is down or a user is changed in the database directly.
    user_cache_ttl_s: float = Field(30.0, ge=0)
    user_cache_size: int = Field(10_000, ge=1)

    default_tenant: str = "default"
    contact_policy: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CONTACT_POLICY))

    max_request_bytes: int = Field(1 << 20, ge=1024)
    # A server process runs a full garbage collection this often and rarely otherwise, so no storm
    # of connections sets off one pass after another (collector.py); 0: CPython's own trigger.
    gc_interval_s: float = Field(60.0, ge=0)
    # REST sends (POST /api/rooms/{id}/messages) answered below Quart, by the front door (http/fast_sends.py):
    # the same answers for a fraction of the CPU. Off: Hypercorn and Quart serve them like every request.
    rest_fast_sends: bool = True
    max_body_chars: int = Field(4000, ge=1)
    attachment_max_bytes: int = Field(10 << 20, ge=1)
    attachment_types: list[str] = Field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"]
    )
    # An upload no message carries is removed this long after it began (by a sweep on every node).
    attachment_orphan_ttl_s: float = Field(86_400.0, ge=60)

    send_rate_per_s: float = Field(10.0, gt=0)
    # Group commit: the node's sends (every /ws session's and REST request's) share transactions
    # of at most send_batch_max messages; send_queue_max sends' requests may wait for one (past it
    # senders wait); send_committers transactions run at once on PostgreSQL (SQLite: always 1), the
    # second and later only while half a batch waits.
    send_batch_max: int = Field(256, ge=1, le=10_000)
    send_queue_max: int = Field(1024, ge=1, le=100_000)
    send_committers: int = Field(2, ge=1, le=16)
    send_burst: int = Field(30, ge=1)
    typing_rate_per_s: float = Field(2.0, gt=0)
    typing_burst: int = Field(5, ge=1)
    # Failed logins allowed per username (in its tenant) and per client address, in `limits`
    # notation ("10/5 minutes"): beyond either, login answers 429 until the window moves on.
    login_failures_per_username: str = "10/5 minutes"
    login_failures_per_address: str = "50/5 minutes"

    # Browser origins (scheme://host[:port]) allowed to call the API (CORS) and open /ws; "*" is
    # any. Empty: same origin only.
    allowed_origins: list[str] = Field(default_factory=list)
    # Proxies (IP addresses or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    trusted_proxies: list[str] = Field(default_factory=list)

    ws_max_frame_bytes: int = Field(64 << 10, ge=1024)
    ws_outbound_queue: int = Field(1024, ge=8)
    heartbeat_s: float = Field(25.0, gt=0)
    # How long a closing session may take to finish its current frame before the socket is cut.
    ws_close_timeout_s: float = Field(5.0, gt=0)
    # Presence events list at most this many online users (plus the full count): a join in a
    # room of n subscribers otherwise costs O(n) bytes to each of n sockets.
    presence_online_limit: int = Field(50, ge=1, le=10_000)
    # During a burst of subscribes (several clients'), a batch of joins starts at most this often (a
    # join after a quiet spell, or one client's rooms one after another, go at once): each batch costs
    # ~3 ms of CPU whatever its size, so joins trickling in would each pay it (services/joins.py).
    # 0: a batch as soon as one is free.
    join_batch_interval_s: float = Field(0.05, ge=0, le=1)
    # Presence changes of a room are folded over this long into one event per subscriber
    # (a `presence_diff`, or the newest `presence`): a join storm costs each socket one event per window.
    presence_window_s: float = Field(0.1, ge=0, le=10)
    # A `presence_diff` lists at most this many users (joins first); the rest are only counted.
    # 20 badges are about 1.2 KB: 1000 joins within 1 s cost the room's sockets ~10 MB, not 1.5 GB.
    presence_diff_limit: int = Field(20, ge=1, le=10_000)
    # With Redis: how long a node's presence entries outlive it. Users of a node that died are
    # announced `left` within this plus a third of it.
    presence_ttl_s: float = Field(15.0, ge=1)
    room_idle_s: float = Field(60.0, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)

    # GET /metrics: unset, open to whoever reaches the port; set, it needs `Authorization: Bearer <token>`.
    metrics_token: str | None = None
    # How often a node samples its counters for /api/admin/stats rates and, with Redis, posts its
    # figures there; a node that stops posting drops out of the cluster figures after stats_ttl_s.
    stats_interval_s: float = Field(1.0, gt=0, le=60)
    stats_ttl_s: float = Field(5.0, gt=0)

    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # One line per HTTP request (method, route, path, status, duration, request id, client).
    access_log: bool = True

    webhooks: list[WebhookTarget] = Field(default_factory=list)
    # Webhook delivery (PROTOCOL §6): per node, at most `webhook_concurrency` requests in flight,
    # at most `webhook_target_concurrency` of them to one target.
    webhook_connect_timeout_s: float = Field(5.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(10, ge=1, le=100)
    webhook_retry_base_s: float = Field(1.0, gt=0)
    webhook_retry_max_s: float = Field(600.0, gt=0)
    webhook_concurrency: int = Field(32, ge=1, le=1024)
    webhook_target_concurrency: int = Field(4, ge=1, le=256)
    # A claimed delivery is this node's for this long; a node that dies mid-attempt releases it then.
    webhook_lease_s: float = Field(60.0, gt=0)
    webhook_poll_s: float = Field(1.0, gt=0)
    webhook_retention_s: float = Field(7 * 86_400.0, gt=0)
    # Webhooks and bots never connect to these (egress.py): by default the link-local networks,
    # where cloud metadata services answer.
    egress_denied_networks: list[str] = Field(default_factory=lambda: ["169.254.0.0/16", "fe80::/10"])
    # `message.unread`: a member with no live connection who has not read a message this long
    # after it was sent is notified; the scan for such members runs every `notify_poll_s`.
    notify_after_s: float = Field(60.0, gt=0)
    notify_poll_s: float = Field(5.0, gt=0)
    # The token POST /api/bots returns lives this long (revoke it with POST /api/bots/{id}/token).
    bot_token_ttl_s: int = Field(365 * 86_400, ge=60)

    @field_validator("jwt_secret")
    @classmethod
    def _empty_secret_is_none(cls, secret: str | None) -> str | None:
        # `ROOMCAST_JWT_SECRET=` (e.g. compose's `${ROOMCAST_JWT_SECRET:-}`) means "not set".
        return secret or None

    @field_validator("database_read_url")
    @classmethod
    def _replica_of_postgresql(cls, url: str | None, info: ValidationInfo) -> str | None:
        if not url:  # `ROOMCAST_DATABASE_READ_URL=` means "not set"
            return None
        primary = info.data.get("database_url") or "sqlite"
        if not primary.startswith("postgresql"):
            raise ValueError("a read replica needs a PostgreSQL database_url (SQLite has no replicas); "
                             "unset database_read_url or set database_url to the PostgreSQL primary")
        if not url.startswith("postgresql"):
            raise ValueError("database_read_url must be a postgresql:// URL of a streaming replica of database_url")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url:
            redis_cluster_address(url)  # a malformed cluster URL stops start-up here
        return url

    @model_validator(mode="after")
    def _cluster_keys_spread(self) -> Settings:
        if self.redis_cluster is not None and ("{" in self.redis_key_prefix or "}" in self.redis_key_prefix):
            raise ValueError("redis_key_prefix must not contain { or } with a Redis Cluster: a hash tag there "
                             "would put every key in one slot")
        return self

    @field_validator("contact_policy")
    @classmethod
    def _known_roles(cls, policy: dict[str, list[str]]) -> dict[str, list[str]]:
        for caller, targets in policy.items():
            for role in (caller, *targets):
                if role not in ROLES:
                    raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return policy

    @field_validator("attachment_types")
    @classmethod
    def _media_types(cls, types: list[str]) -> list[str]:
        for media_type in types:
            if not _MEDIA_TYPE.fullmatch(media_type):
                raise ValueError(f"{media_type!r} is not a media type like image/png")
        return types

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("webhook_lease_s must be longer than webhook_timeout_s")
        return self
    @field_validator("login_failures_per_username", "login_failures_per_address")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like '10/5 minutes'") from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like 'https://app.example.com' (scheme://host[:port])")
        return [origin.lower() for origin in origins]

    @field_validator("trusted_proxies", "egress_denied_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or CIDR network") from None
        return networks

    @model_validator(mode="after")
    def _rs256_needs_a_key(self) -> Settings:
        if self.jwt_algorithm == "RS256" and self.jwt_public_key_file is None:
            raise ValueError("jwt_algorithm RS256 needs jwt_public_key_file")
        return self

    @property
    def redis_cluster(self) -> RedisClusterAddress | None:
        """The cluster `redis_url` names, or None (no Redis, or one Redis)."""
        return redis_cluster_address(self.redis_url) if self.redis_url else None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in data_dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'roomcast.db'}"


class SettingsError(Exception):
    """A setting is unknown or has a bad value; the message names it."""


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    values: dict[str, tuple[Any, str]] = {}
    for name, raw in environ.items():
        if not name.startswith("ROOMCAST_") or name in _NON_SETTING_ENV:
            continue
        if name.startswith(_NON_SETTING_ENV_PREFIXES):
            continue
        key = name.removeprefix("ROOMCAST_").lower()
        if key not in Settings.model_fields:
            raise SettingsError(f"unknown setting {name} in the environment")
        annotation = str(Settings.model_fields[key].annotation)
        value: Any = raw
        if annotation.startswith(("list", "dict")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{name}: expected JSON ({exc.msg})") from None
        values[key] = (value, f"environment variable {name}")
    return values


def _file_values(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    values: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if key not in Settings.model_fields:
            raise SettingsError(f"unknown setting {key!r} in config file {path}")
        values[key] = (value, f"config file {path}")
    return values


def _resolve_data_dir(merged: dict[str, tuple[Any, str]], config_path: Path | None, base_dir: Path) -> None:
    value, source = merged.get("data_dir", ("var", "defaults"))
    if not isinstance(value, str | Path) or not str(value):
        return  # validation names the problem
    path = Path(value).expanduser()
    if not path.is_absolute():
        from_file = config_path is not None and source.startswith("config file")
        path = ((config_path.resolve().parent if from_file and config_path else base_dir) / path)
    merged["data_dir"] = (path.resolve(), source)


def load_settings(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                  base_dir: Path = PROJECT_ROOT) -> Settings:
    """Merge defaults < TOML file < environment < flags into one validated Settings.

    A relative `data_dir` becomes absolute: against the config file's folder when it comes
    from the file, else against `base_dir` (the project folder).
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, tuple[Any, str]] = {}
    config_path = Path(environ["ROOMCAST_CONFIG"]) if environ.get("ROOMCAST_CONFIG") else None
    if config_path is not None:
        merged.update(_file_values(config_path))
    merged.update(_env_values(environ))
    for key, value in (flags or {}).items():
        if value is not None:
            merged[key] = (value, f"flag --{key.replace('_', '-')}")
    _resolve_data_dir(merged, config_path, base_dir)
    try:
        return Settings.model_validate({key: value for key, (value, _) in merged.items()})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            source = merged.get(key, (None, "settings"))[1]
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            problems.append(f"{where} (from {source}): {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
