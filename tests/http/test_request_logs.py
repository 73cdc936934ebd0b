"""Request ids, the access log, crash tracebacks, and the /ws session's connect and close lines."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from trio_websocket import ConnectionClosed

from roomcast.http.app import create_app
from roomcast.logs import JsonFormatter
from roomcast.node import Node
from tests.helpers import eventually
from tests.ws_client import ws_connect


def lines(caplog: pytest.LogCaptureFixture, event: str | None = None) -> list[dict[str, Any]]:
    parsed = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    return [line for line in parsed if event is None or line["event"] == event]


async def test_each_request_gets_an_id_echoed_and_one_access_line(client: Any, users: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    user = await users.create()
    caplog.set_level(logging.INFO)
    first = await client.get("/api/me", headers=user.headers)
    second = await client.get(f"/api/users/{user.id}", headers=user.headers)
    ids = [first.headers["X-Request-Id"], second.headers["X-Request-Id"]]
    assert ids[0] != ids[1] and all(len(value) == 16 for value in ids)
    access = lines(caplog, "http.request")
    assert [line["request_id"] for line in access] == ids
    assert access[1]["method"] == "GET" and access[1]["route"] == "/api/users/<id:user_id>"
    assert access[1]["path"] == f"/api/users/{user.id}" and access[1]["status"] == 200
    assert isinstance(access[1]["duration_ms"], float) and access[1]["logger"] == "roomcast.access"
    assert "client" in access[1]


@pytest.mark.parametrize(("sent", "kept"), [("req-42.a:b_c", True), ("x" * 128, True), ("x" * 129, False),
                                            ("has space", False), ("<script>", False), ("", False)])
async def test_a_sane_incoming_request_id_is_kept(client: Any, caplog: pytest.LogCaptureFixture,
                                                  sent: str, kept: bool) -> None:
    caplog.set_level(logging.INFO)
    response = await client.get("/healthz", headers={"X-Request-Id": sent})
    echoed = response.headers["X-Request-Id"]
    assert (echoed == sent) is kept
    assert lines(caplog, "http.request")[0]["request_id"] == echoed


async def test_unmatched_routes_and_errors_are_logged_too(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = await client.get("/api/no/such/thing")
    [line] = lines(caplog, "http.request")
    assert line["status"] == 404 and line["route"] == "-" and line["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize("settings_overrides", [{"access_log": False}])
async def test_the_access_log_can_be_turned_off(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = await client.get("/healthz")
    assert response.headers["X-Request-Id"]  # the id stays: it still ties other lines together
    assert lines(caplog, "http.request") == []


async def test_a_crash_is_logged_once_with_its_traceback_and_request_id(node: Node,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(node)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    caplog.set_level(logging.DEBUG)
    response = await app.test_client().get("/boom", headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    with_traceback = [line for line in lines(caplog) if "traceback" in line]
    assert len(with_traceback) == 1
    [crash] = with_traceback
    assert crash["request_id"] == "crash-1" and "RuntimeError: secret internals" in crash["traceback"]
    assert "in boom" in crash["traceback"]
    assert lines(caplog, "http.request")[0]["status"] == 500


async def test_a_ws_session_logs_its_connect_and_close_with_its_session_id(
        live_server: str, users: Any, caplog: pytest.LogCaptureFixture) -> None:
    user = await users.create()
    caplog.set_level(logging.INFO)
    async with ws_connect(live_server, user.token) as ws:
        welcome = ws.welcome
        await ws.request({"type": "ping", "ref": "p"})
    session = welcome["session_id"]
    await eventually(lambda: lines(caplog, "ws.disconnected"))
    [connected] = lines(caplog, "ws.connected")
    [closed] = lines(caplog, "ws.disconnected")
    assert connected["session"] == closed["session"] == session and connected["user"] == user.id
    assert closed["code"] == 1000 and closed["duration_ms"] >= 0
    assert connected["client"] == "127.0.0.1"


async def test_a_refused_ws_handshake_is_logged(live_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(ConnectionClosed):
        async with ws_connect(live_server, "not-a-token"):
            pass
    await eventually(lambda: lines(caplog, "ws.refused"))
    [refused] = lines(caplog, "ws.refused")
    assert refused["code"] == 1008 and refused["reason"] == "unauthorized"


async def test_a_crash_in_a_ws_handler_is_logged_once_with_its_traceback_and_session(
        live_server: str, users: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from roomcast.http.ws.handlers import HANDLERS

    async def broken(session: Any, frame: Any) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setitem(HANDLERS, "typing", broken)
    user = await users.create()
    caplog.set_level(logging.INFO)
    async with ws_connect(live_server, user.token) as ws:
        await ws.send({"type": "typing", "room": 1, "state": True})
        with pytest.raises(ConnectionClosed):
            await ws.event()
    await eventually(lambda: lines(caplog, "ws.disconnected"))
    with_traceback = [line for line in lines(caplog) if "traceback" in line]
    assert len(with_traceback) == 1
    [crash] = with_traceback
    assert crash["session"] == ws.welcome["session_id"] and "RuntimeError: a bug in a handler" in crash["traceback"]
    assert lines(caplog, "ws.disconnected")[0]["code"] == 1011
