"""CORS (quart-cors), the /ws Origin check, and X-Forwarded-* believed from trusted proxies only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.raw_http import receive_until

APP = "https://app.example.com"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


@pytest.fixture
def db_backend() -> str:
    return "sqlite"  # nothing here depends on the database


# --------------------------------------------------------------------------- CORS


async def test_by_default_no_cors_headers(client: Any, users: Any) -> None:
    alice = await users.create("member")
    preflight = await client.options("/api/rooms", headers=PREFLIGHT)
    assert preflight.status_code == 204  # answered without a token, but allowing nothing
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = await client.get("/api/me", headers={**alice.headers, "Origin": APP})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": [APP, "http://localhost:3000"]}])
async def test_preflight_for_an_allowed_origin(client: Any) -> None:
    preflight = await client.options("/api/rooms", headers=PREFLIGHT)  # no Authorization: never 401
    assert preflight.status_code == 204
    headers = preflight.headers
    assert headers["Access-Control-Allow-Origin"] == APP
    assert {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")} == {
        "authorization", "content-type"}
    assert "POST" in headers["Access-Control-Allow-Methods"] and int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]


@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": [APP]}])
@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://app.example.com", "null"])
async def test_preflight_for_another_origin_allows_nothing(client: Any, origin: str) -> None:
    preflight = await client.options("/api/rooms", headers={**PREFLIGHT, "Origin": origin})
    assert preflight.status_code == 204 and "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": [APP]}])
async def test_responses_to_an_allowed_origin_carry_the_headers_errors_too(client: Any, users: Any) -> None:
    alice = await users.create("member")
    ok = await client.get("/api/me", headers={**alice.headers, "Origin": APP})
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert "Retry-After" in ok.headers["Access-Control-Expose-Headers"]
    refused = await client.get("/api/me", headers={"Origin": APP})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("bad", [["app.example.com"], ["https://app.example.com/path"], ["ftp://x"], ["null"]])
def test_bad_allowed_origins_stop_start_up(tmp_path: Any, bad: list[str]) -> None:
    from roomcast.config import SettingsError, load_settings
    with pytest.raises(SettingsError, match="allowed_origins"):
        load_settings({"allowed_origins": bad}, environ={})


@pytest.mark.parametrize(("key", "bad"), [("trusted_proxies", ["10.0.0.300"]), ("trusted_proxies", ["proxy.local"]),
                                          ("login_failures_per_username", "many"),
                                          ("login_failures_per_address", "10 per fortnight")])
def test_bad_proxy_and_throttle_settings_stop_start_up(key: str, bad: Any) -> None:
    from roomcast.config import SettingsError, load_settings
    with pytest.raises(SettingsError, match=key):
        load_settings({key: bad}, environ={})


# --------------------------------------------------------------------------- /ws Origin, over real sockets


async def handshake(base: str, token: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """The status and body of a hand-written /ws upgrade with these extra headers."""
    parts = urlsplit(base)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    lines = [f"GET /ws?token={token} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in headers.items())]
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = await receive_until(stream, b"\r\n\r\n", timeout=10, chunk_bytes=65536)
        with trio.fail_after(10):
            head, _, body = answer.partition(b"\r\n\r\n")
            if b"Content-Length" in head and not head.startswith(b"HTTP/1.1 101"):
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += await stream.receive_some(65536)
    return int(answer.split(b" ")[1]), body


@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": [APP]}])
async def test_ws_origin_checked_at_the_handshake(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    own = live_server  # http://127.0.0.1:PORT: same origin
    assert (await handshake(live_server, alice.token, {}))[0] == 101  # no Origin: not a browser
    assert (await handshake(live_server, alice.token, {"Origin": own}))[0] == 101
    assert (await handshake(live_server, alice.token, {"Origin": APP}))[0] == 101
    for origin in ("https://evil.example.com", "null", own.replace("http://", "https://"), "garbage"):
        status, body = await handshake(live_server, alice.token, {"Origin": origin})
        assert status == 403 and b'"code":"forbidden"' in body.replace(b" ", b""), origin


async def test_ws_same_origin_only_by_default(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    assert (await handshake(live_server, alice.token, {"Origin": live_server}))[0] == 101
    assert (await handshake(live_server, alice.token, {"Origin": APP}))[0] == 403


@pytest.mark.parametrize(("settings_overrides", "expected"), [({"trusted_proxies": ["127.0.0.1/32"]}, 101),
                                                              ({"trusted_proxies": ["10.0.0.0/8"]}, 403)])
async def test_ws_same_origin_uses_the_forwarded_proto_of_a_trusted_proxy(live_server: str, users: Any,
                                                                          expected: int) -> None:
    """A TLS-terminating proxy: the browser's origin is https://HOST, the proxy talks http to the node."""
    alice = await users.create("member")
    https_origin = live_server.replace("http://", "https://")
    headers = {"Origin": https_origin, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    assert (await handshake(live_server, alice.token, headers))[0] == expected


# --------------------------------------------------------------------------- X-Forwarded-For, real sockets


@pytest.mark.parametrize(("settings_overrides", "trusted"), [
    ({"trusted_proxies": ["127.0.0.1"], "login_failures_per_address": "2/minute"}, True),
    ({"trusted_proxies": [], "login_failures_per_address": "2/minute"}, False),
    ({"trusted_proxies": ["192.0.2.0/24"], "login_failures_per_address": "2/minute"}, False),
])
async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(live_server: str, trusted: bool) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        async def login(username: str, forwarded_for: str) -> int:
            response = await http.post("/api/auth/login", json={"username": username, "password": "wrong"},
                                       headers={"X-Forwarded-For": forwarded_for})
            return response.status_code

        assert [await login(f"u{n}", "203.0.113.1") for n in range(2)] == [401, 401]
        assert await login("u2", "203.0.113.1") == 429  # that address has spent its failures
        # Another address behind the proxy: its own budget if the proxy is believed; else the
        # socket's peer (127.0.0.1) is the client and it has spent its budget already.
        assert await login("u3", "198.51.100.1, 203.0.113.2") == (401 if trusted else 429)
