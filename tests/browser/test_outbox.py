"""The offline outbox: a message sent while the server is out of reach waits (surviving a reload), is
sent once the connection returns, exactly once; a send the server refuses offers retry and discard."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ServerProcess, bodies, open_room, write

pytestmark = pytest.mark.browser

SENDS = "**/api/rooms/*/messages"


def stored(server: ServerProcess, user: Any, room: dict[str, Any]) -> list[str]:
    items = server.api("GET", f"/api/rooms/{room['id']}/messages?limit=200", user).json()["items"]
    return [m["body"] for m in items]


def outbox(page: Any) -> list[dict[str, Any]]:
    raw = page.evaluate("""() => Object.keys(localStorage).filter(k => k.startsWith('roomcast.outbox.'))
                                  .map(k => localStorage.getItem(k))""")
    return [item for blob in raw for item in json.loads(blob)]


def test_a_message_sent_while_the_server_is_down_is_delivered_once_when_it_returns(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(alice, "Outage", bob)
    page = open_page(bob)
    other = open_page(alice)
    open_room(page, "Outage")
    open_room(other, "Outage")
    write(page, "before the outage")
    expect(bodies(page)).to_have_text(["before the outage"])

    server.stop()
    expect(page.locator("#connection-banner")).to_have_text("Connection lost. Reconnecting…")
    write(page, "sent while the server was down")
    pending = page.locator("#outbox-list .message.pending")
    expect(pending).to_have_count(1)
    expect(pending).to_contain_text("sent while the server was down")
    expect(pending).to_contain_text("Not sent yet: it will be sent when the connection returns")
    expect(page.get_by_label("Write a message")).to_have_value("")
    artifact(page, "pending-while-down")
    assert [i["body"] for i in outbox(page)] == ["sent while the server was down"]

    server.start()
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    expect(bodies(page)).to_have_text(["before the outage", "sent while the server was down"])
    expect(pending).to_have_count(0)
    # No stale notice, and stored exactly once.
    expect(page.locator("#composer-error")).to_have_text("")
    expect(page.locator("#connection-banner")).to_be_hidden()
    assert stored(server, bob, room) == ["before the outage", "sent while the server was down"]
    assert outbox(page) == []
    # The other member's page, reconnected too, shows it once.
    expect(bodies(other)).to_have_text(["before the outage", "sent while the server was down"])
    artifact(page, "delivered-after-restart")


def test_a_pending_message_survives_a_reload_and_is_sent_once(server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Reloads", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Reloads")
    open_room(b, "Reloads")
    # The server answers, but the answer never reaches the page: it was stored, the page cannot know.
    answered: list[int] = []

    def lose_answer(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        answered.append(route.fetch().status)
        route.abort()

    a.route(SENDS, lose_answer)
    write(a, "written just before the reload")
    # Not `#outbox-list .message.pending`: the message's live event may reach the page first, which then
    # shows it as a message and not also as pending; the entry stays in the outbox all the same.
    expect(bodies(b)).to_have_text(["written just before the reload"])  # it was stored
    for _ in range(400):  # the route handler runs while Playwright waits
        if answered:
            break
        a.wait_for_timeout(50)
    assert answered and answered[0] == 201
    assert [i["body"] for i in outbox(a)] == ["written just before the reload"]

    a.unroute(SENDS)
    a.reload()
    expect(a.locator("body")).to_have_attribute("data-connection", "open")
    open_room(a, "Reloads")
    # Resent with the same client_id after the reload: the server returns the original, stores nothing new.
    expect(bodies(a)).to_have_text(["written just before the reload"])
    expect(a.locator("#outbox-list .message")).to_have_count(0)
    assert outbox(a) == []
    assert stored(server, alice, room) == ["written just before the reload"]
    expect(bodies(b)).to_have_text(["written just before the reload"])


def test_a_refused_send_offers_retry_and_discard(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Closing", bob)
    page = open_page(bob)
    open_room(page, "Closing")
    # Hold the sends back (the network is down for them) while the owner closes the room.
    page.route(SENDS, lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    write(page, "first try")
    expect(page.locator("#outbox-list .message.pending")).to_have_count(1)
    assert server.api("PATCH", f"/api/rooms/{room['id']}", alice, json={"is_active": False}).status_code == 200
    page.unroute(SENDS)

    failed = page.locator("#outbox-list .message.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".pending-state")).to_contain_text("Not sent:")
    expect(failed.get_by_role("button", name="Retry sending")).to_be_visible()
    expect(failed.get_by_role("button", name="Discard message")).to_be_visible()
    artifact(page, "failed-send")
    # The failure is kept across a reload, still with its actions.
    assert [i["state"] for i in outbox(page)] == ["failed"]

    # Open the room again: Retry sends it.
    assert server.api("PATCH", f"/api/rooms/{room['id']}", alice, json={"is_active": True}).status_code == 200
    failed.get_by_role("button", name="Retry sending").click()
    expect(bodies(page)).to_have_text(["first try"])
    expect(page.locator("#outbox-list .message")).to_have_count(0)

    # Discard drops another refused one for good.
    page.route(SENDS, lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    write(page, "never mind")
    expect(page.locator("#outbox-list .message.pending")).to_have_count(1)
    assert server.api("PATCH", f"/api/rooms/{room['id']}", alice, json={"is_active": False}).status_code == 200
    page.unroute(SENDS)
    expect(failed).to_have_count(1)
    failed.get_by_role("button", name="Discard message").click()
    expect(page.locator("#outbox-list .message")).to_have_count(0)
    assert outbox(page) == []
    assert stored(server, bob, room) == ["first try"]
