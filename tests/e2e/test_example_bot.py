"""examples/bot: the example bot as its own process, registered with a live server, answering /time."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "example-bot-secret"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"webhook_poll_s": 0.05, "webhook_retry_base_s": 0.05, "webhook_retry_max_s": 0.2}


@pytest.fixture
def bot_url() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "examples" / "bot" / "bot.py"), "--port", "0",
                                "--secret", SECRET], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until it listens (or dies)
    try:
        if not line.startswith("listening on http://"):
            pytest.fail(f"the bot did not start: {line!r}")
        yield line.removeprefix("listening on ").strip() + "/"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_example_bot_answers_time_in_a_direct_chat(live_server: str, users: Any, bot_url: str) -> None:
    admin, ann = await users.create("admin"), await users.create("student")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        # Unsigned, or signed with another secret: refused, never answered.
        async with httpx.AsyncClient(timeout=10) as outside:
            forged = await outside.post(bot_url, content=b'{"event": "message.created"}',
                                        headers={"X-Roomcast-Signature": "sha256=00"})
            assert forged.status_code == 401

        created = await http.post("/api/bots", headers={"Authorization": f"Bearer {admin.token}"}, json={
            "username": "timebot", "display_name": "Time bot", "url": bot_url, "secret": SECRET,
            "trigger": "direct"})
        assert created.status_code == 201, created.text
        bot_id = created.json()["user"]["id"]
        auth = {"Authorization": f"Bearer {ann.token}"}
        room = (await http.post("/api/rooms", headers=auth, json={"kind": "direct", "members": [bot_id]})).json()
        sent = await http.post(f"/api/rooms/{room['id']}/messages", headers=auth, json={"body": "/time"})
        assert sent.status_code == 201

        async def answers() -> list[dict[str, Any]]:
            items = (await http.get(f"/api/rooms/{room['id']}/messages", headers=auth)).json()["items"]
            return [m for m in items if m["sender"]["id"] == bot_id]

        await eventually(answers, timeout=30)
        (reply,) = await answers()
        assert re.fullmatch(r"It is \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", reply["body"])
        assert reply["reply_to"] == sent.json()["id"]

        await http.post(f"/api/rooms/{room['id']}/messages", headers=auth, json={"body": "/help"})
        await eventually(lambda: _count(answers, 2), timeout=30)
        assert "/time" in (await answers())[-1]["body"]


async def _count(answers: Any, count: int) -> bool:
    return len(await answers()) >= count
