"""A real roomcast server process and Playwright on Debian's Chromium, for the browser tests.

The tests use Playwright's sync API in plain (non-trio) tests: the server is a separate
process, so nothing here shares an event loop with Trio.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import JWT_SECRET, private_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ROOMCAST_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "artifacts" / "browser"
START_TIMEOUT_S = 60
DEFAULT_TIMEOUT_MS = 20_000
ADMIN = ("browser-admin", "admin-password-" + "x" * 8)

_names = itertools.count(1)


@dataclass
class User:
    id: int
    username: str
    password: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token}"}


class ServerProcess:
    """`run.py serve` in a subprocess over one data dir; restartable on the same port."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = private_port()  # kept across restarts, where the pages reconnect
        self.starts = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
            "ROOMCAST_NO_BOOTSTRAP": "1",
            "ROOMCAST_DATA_DIR": str(data_dir),
            "ROOMCAST_JWT_SECRET": JWT_SECRET,
            "ROOMCAST_SEND_BURST": "100000",
            "ROOMCAST_SEND_RATE_PER_S": "100000",
            "ROOMCAST_TYPING_BURST": "1000",
            "ROOMCAST_TYPING_RATE_PER_S": "1000",
            "ROOMCAST_SHUTDOWN_GRACE_S": "2",
            "ROOMCAST_LOG_FORMAT": "text",
            "ROOMCAST_LOG_LEVEL": "warning",
        }
        self._http: httpx.Client | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], env=self.env, capture_output=True,
                              text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"run.py {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        """Start serving on the process's port (every start the same one: clients reconnect there)."""
        self.starts += 1
        log = (self.log_dir / f"server-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "serve", "--port", str(self.port)],
            env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line!r}; see {log.name}")
        self.url = line.removeprefix("listening on ").strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Graceful stop (SIGTERM): connected clients get 1012, as in a deployment's restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=30)
        return self._http

    def api(self, method: str, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        headers = user.headers if user else {}
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def token(self, username: str, password: str) -> str:
        response = self.api("POST", "/api/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["access_token"]

    def create_user(self, prefix: str = "user", *, display_name: str | None = None) -> User:
        """A fresh member with a password, made through the REST API by the admin."""
        username = f"{prefix}{next(_names)}{secrets.token_hex(2)}"
        password = "pw-" + secrets.token_hex(8)
        admin_token = self.token(*ADMIN)
        body: dict[str, Any] = {"username": username, "password": password, "role": "member"}
        if display_name:
            body["display_name"] = display_name
        response = self.http.post(self.url + "/api/users", json=body,
                                  headers={"Authorization": f"Bearer {admin_token}"})
        assert response.status_code == 201, response.text
        return User(response.json()["id"], username, password, self.token(username, password))

    def group(self, owner: User, name: str, *members: User) -> dict[str, Any]:
        response = self.api("POST", "/api/rooms", owner,
                            json={"kind": "group", "name": name, "members": [m.id for m in members]})
        assert response.status_code == 201, response.text
        return response.json()

    def send(self, user: User, room_id: int, body: str) -> dict[str, Any]:
        response = self.api("POST", f"/api/rooms/{room_id}/messages", user, json={"body": body})
        assert response.status_code == 201, response.text
        return response.json()

    def close(self) -> None:
        self.stop()
        if self._http is not None:
            self._http.close()


def chromium_missing(reason: str) -> None:
    """Skip for a developer without Chromium; fail in CI (ROOMCAST_TEST_REQUIRE_SERVICES=1)."""
    message = f"Chromium for the browser tests is not available ({reason}); install it with `apt-get install chromium`"
    if os.environ.get("ROOMCAST_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; CI requires it", pytrace=False)
    pytest.skip(message)


def sign_in(page: Any, user: User) -> None:
    """Sign in through the form and wait until the live connection is up."""
    from playwright.sync_api import expect

    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_attribute("data-username", user.username)
    expect(page.locator("body")).to_have_attribute("data-connection", "open")


def open_room(page: Any, name: str) -> None:
    """Click a room in the list by its name and wait for its title."""
    from playwright.sync_api import expect

    page.locator("#room-list li", has=page.locator(".room-name", has_text=name)).get_by_role("button").click()
    expect(page.locator("#room-title")).to_have_text(name)


def room_item(page: Any, name: str) -> Any:
    return page.locator("#room-list li", has=page.locator(".room-name", has_text=name))


def bodies(page: Any) -> Any:
    return page.locator("#message-list .message .body")


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a server-side effect the page cannot show (a stored read pointer) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.05)


def png(width: int = 48, height: int = 32, rgb: tuple[int, int, int] = (38, 87, 197)) -> bytes:
    """A real PNG image of one colour (the browser must be able to draw the preview)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def write(page: Any, text: str) -> None:
    """Type a message in the composer and send it with Enter."""
    page.get_by_label("Write a message").fill(text)
    page.get_by_label("Write a message").press("Enter")
