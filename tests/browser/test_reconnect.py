"""The client survives a server restart: a visible reconnecting state, then a resume with no gap."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ServerProcess, bodies, open_room, room_item

pytestmark = pytest.mark.browser


def test_after_a_server_restart_the_page_resumes_with_no_gap_and_no_duplicate(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(alice, "Resilient", bob)
    elsewhere = server.group(alice, "Elsewhere", bob)
    server.send(alice, room["id"], "before 1")
    server.send(alice, room["id"], "before 2")
    page = open_page(bob)
    open_room(page, "Resilient")
    expect(bodies(page)).to_have_text(["before 1", "before 2"])
    banner = page.locator("#connection-banner")

    server.stop()  # graceful: the page gets 1012 and shows that it is reconnecting
    expect(banner).to_be_visible()
    expect(banner).to_have_text("Connection lost. Reconnecting…")
    artifact(page, "reconnecting")
    # Then keep the page off the network until what is sent meanwhile has certainly been missed
    # live and has to come back through `since`. (Going offline first could hide the 1012 from
    # the page, which would then only notice the dead connection by its own heartbeat.)
    page.context.set_offline(True)

    server.start()
    missed = [f"while away {n}" for n in range(1, 4)]
    for text in missed:
        server.send(alice, room["id"], text)
    server.send(alice, elsewhere["id"], "in another room")
    page.context.set_offline(False)

    expect(banner).to_be_hidden()
    expect(bodies(page)).to_have_text(["before 1", "before 2", *missed])
    # The other room caught up too: its badge counts the message sent while away.
    expect(room_item(page, "Elsewhere").locator(".badge")).to_have_text("1")
    # Live again, both ways.
    server.send(alice, room["id"], "live after restart")
    page.get_by_label("Write a message").fill("and back from Bob")
    page.get_by_label("Write a message").press("Enter")
    expected = ["before 1", "before 2", *missed, "live after restart", "and back from Bob"]
    expect(bodies(page)).to_have_text(expected)
    artifact(page, "resumed")
    # What the page shows is exactly the stored history: nothing missing, nothing twice.
    stored = server.api("GET", f"/api/rooms/{room['id']}/messages?limit=200", bob).json()["items"]
    assert [m["body"] for m in stored] == expected
    seqs = [int(s) for s in page.locator("#message-list .message").evaluate_all("ns => ns.map(n => n.dataset.seq)")]
    assert seqs == sorted(set(seqs)) == [m["seq"] for m in stored]


def test_a_plain_restart_reconnects_on_its_own(server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Plain restart", bob)
    page = open_page(bob)
    open_room(page, "Plain restart")
    server.restart()
    # Whether the page noticed the 1012 before the new process was up or not, it comes back.
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    server.send(alice, room["id"], "are you back?")
    expect(bodies(page)).to_have_text(["are you back?"])


def test_a_room_opened_while_the_server_is_down_loads_its_history_once_back(
        server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Opened offline", bob)
    server.group(alice, "Landing", bob)  # the newest room: the page does not start in the other
    server.send(alice, room["id"], "history 1")
    server.send(alice, room["id"], "history 2")
    page = open_page(bob)
    server.stop()
    expect(page.locator("body")).to_have_attribute("data-connection", "reconnecting")
    open_room(page, "Opened offline")
    # The history cannot come: the page says so rather than showing an empty room.
    expect(page.locator("#composer-error")).to_contain_text("Could not load messages")
    expect(bodies(page)).to_have_count(0)

    server.start()
    server.send(alice, room["id"], "while away")
    # Back online, the history comes after all, with what was missed live: each once, in order.
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    expect(bodies(page)).to_have_text(["history 1", "history 2", "while away"])
    expect(page.locator("#composer-error")).to_have_text("")
    server.send(alice, room["id"], "live again")
    expect(bodies(page)).to_have_text(["history 1", "history 2", "while away", "live again"])
