"""Presence in the web client, from the server's diffs: a truncated diff shows the count, and the
whole list is fetched when someone looks at it (the room's details), not on every diff."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ADMIN, ServerProcess, open_room

pytestmark = pytest.mark.browser

CONNECT = """async (tokens) => {
    const { RoomcastClient } = await import("/sdk/roomcast.js");
    window.__others = [];
    await Promise.all(tokens.map(([token, room]) => new Promise((resolve) => {
        const client = new RoomcastClient({ token, storage: null });
        window.__others.push(client);
        client.on("subscribed", resolve);
        client.on("status", ({ status }) => status === "open" && client.subscribe(room));
        client.start();
    })));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("browser-presence")
    process = ServerProcess(base / "data", base)
    # One user listed per diff, and joins close together folded into one diff.
    process.env["ROOMCAST_PRESENCE_DIFF_LIMIT"] = "1"
    process.env["ROOMCAST_PRESENCE_WINDOW_S"] = "1.5"
    process.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--role", "admin")
    process.start()
    yield process
    process.close()


def test_a_truncated_diff_shows_the_count_and_details_fetch_the_whole_list(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    carol = server.create_user("carol", display_name="Carol")
    room = server.group(alice, "Crowd", bob, carol)
    page = open_page(alice)
    open_room(page, "Crowd")
    expect(page.locator("#room-online")).to_have_text("3 members · Nobody else online")
    # Bob and Carol arrive within one window: the diff lists one user (lowest id first, perhaps
    # Alice herself) and counts the rest; the header shows the count, not a wrong list.
    page.evaluate(CONNECT, [[bob.token, room["id"]], [carol.token, room["id"]]])
    online = page.locator("#room-online")
    expect(online).to_have_text(re.compile(r"^3 members · (2 others online|Online: (Bob|Carol) and 1 more)$"))
    artifact(page, "truncated")
    # Looking at the members fetches everyone once.
    page.get_by_role("button", name="Details").click()
    dialog = page.get_by_role("dialog", name="Crowd")
    expect(dialog.locator(".member .dot.on")).to_have_count(3)
    expect(online).to_have_text(re.compile(r"^3 members · Online: (Bob, Carol|Carol, Bob)$"))
    page.keyboard.press("Escape")
    # Leaves come as diffs too.
    page.evaluate("() => window.__others.forEach((c) => c.stop())")
    expect(online).to_have_text("3 members · Nobody else online")
