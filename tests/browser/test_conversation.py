"""How a conversation reads: day separators, sender groups, relative times, replies, edit marks,
actions on hover or focus and in a keyboard menu; the "new messages" divider and jump-to-latest."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ServerProcess, bodies, open_room, write

pytestmark = pytest.mark.browser


def backdate(server: ServerProcess, message_ids: list[int], days: int) -> None:
    """Move messages into the past in the server's SQLite file (history reads them from there)."""
    with sqlite3.connect(server.data_dir / "roomcast.db") as db:
        for message_id in message_ids:
            (raw,) = db.execute("SELECT created_at FROM messages WHERE id = ?", (message_id,)).fetchone()
            moved = datetime.fromisoformat(str(raw)) - timedelta(days=days)
            db.execute("UPDATE messages SET created_at = ? WHERE id = ?",
                       (moved.strftime("%Y-%m-%d %H:%M:%S.%f"), message_id))


def test_day_separators_and_sender_groups(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(alice, "Days", bob)
    old = [server.send(alice, room["id"], f"last week {n}")["id"] for n in (1, 2)]
    earlier = [server.send(bob, room["id"], "yesterday")["id"]]
    for text in ("today 1", "today 2", "today 3"):
        server.send(alice, room["id"], text)
    server.send(bob, room["id"], "today from bob")
    backdate(server, old, 8)
    backdate(server, earlier, 1)
    page = open_page(bob)
    open_room(page, "Days")
    expect(bodies(page)).to_have_count(7)
    days = page.locator("#message-list li.day")
    expect(days).to_have_count(3)
    expect(days.nth(1)).to_have_text("Yesterday")
    expect(days.nth(2)).to_have_text("Today")
    expect(days.nth(0)).to_have_text(re.compile(r"\d{4}"))  # a full date with the year
    # Consecutive messages of one sender on one day form a group: only the first shows the name.
    grouped = page.locator("#message-list li.message").evaluate_all(
        "ns => ns.map(n => [n.querySelector('.body').textContent, n.classList.contains('grouped')])")
    assert grouped == [["last week 1", False], ["last week 2", True], ["yesterday", False],
                       ["today 1", False], ["today 2", True], ["today 3", True], ["today from bob", False]]
    first = page.locator("#message-list li.message", has_text="today 1")
    expect(first.locator(".author")).to_be_visible()
    # (kept for screen readers, out of sight)
    assert page.locator("#message-list li.message", has_text="today 2").locator(".meta").bounding_box()["height"] <= 1
    # Relative time, the full time on hover.
    when = first.locator("time.when")
    expect(when).to_have_text("just now")
    expect(when).to_have_attribute("title", re.compile(r"\d{4}.*\d{1,2}:\d{2}:\d{2}"))
    artifact(page, "days-and-groups")


def test_reply_edit_and_the_keyboard_menu(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    server.group(alice, "Replies", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Replies")
    open_room(b, "Replies")
    write(a, "Can someone review PR 42?")
    expect(bodies(b)).to_have_text(["Can someone review PR 42?"])

    # Actions show on hover; Reply quotes the message.
    question = b.locator("#message-list .message", has_text="PR 42")
    actions = question.locator(".actions")
    expect(actions).to_have_css("opacity", "0")
    question.hover()
    expect(actions).to_have_css("opacity", "1")
    question.get_by_role("button", name="Reply to message").click()
    expect(b.locator("#reply-bar")).to_contain_text("Replying to Alice: Can someone review PR 42?")
    expect(b.get_by_label("Write a message")).to_be_focused()
    write(b, "On it")
    answer = a.locator("#message-list .message", has_text="On it")
    expect(answer.locator(".reply-quote")).to_have_text("You: Can someone review PR 42?")
    expect(b.locator("#message-list .message", has_text="On it").locator(".reply-quote")).to_have_text(
        "Alice: Can someone review PR 42?")
    expect(b.locator("#reply-bar")).to_be_hidden()

    # The keyboard: Tab reaches the message's actions (they show on focus), the menu opens and arrows move.
    mine = a.locator("#message-list .message").first
    mine.get_by_role("button", name="More actions").focus()
    expect(mine.locator(".actions")).to_have_css("opacity", "1")
    a.keyboard.press("Enter")
    menu = mine.get_by_role("menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    a.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Edit message (menu)")).to_be_focused()
    a.keyboard.press("Enter")
    editor = a.get_by_label("Edit message text")
    expect(editor).to_be_focused()
    editor.fill("Can someone review PR 43?")
    editor.press("Enter")
    edited = b.locator("#message-list .message", has_text="PR 43").locator(".edited")
    expect(edited).to_have_text("(edited)")
    expect(edited).to_have_attribute("title", re.compile(r"^Edited .*\d{1,2}:\d{2}"))
    # The reply's quote follows the edit.
    expect(b.locator("#message-list .message", has_text="On it").locator(".reply-quote")).to_have_text(
        "Alice: Can someone review PR 43?")
    # Escape closes a menu and gives focus back to its button.
    mine.get_by_role("button", name="More actions").click()
    expect(menu).to_be_visible()
    a.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(mine.get_by_role("button", name="More actions")).to_be_focused()
    artifact(b, "reply-and-edit")


def test_new_messages_divider_and_jump_to_latest(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(alice, "Busy", bob)
    for n in range(1, 31):
        server.send(alice, room["id"], f"old {n:02d}")
    page = open_page(bob, viewport={"width": 900, "height": 600})
    open_room(page, "Busy")
    expect(bodies(page)).to_have_count(30)
    # 30 unread when opened: the divider sits above the first of them.
    divider = page.locator("#message-list li.new-divider")
    expect(divider).to_have_count(1)
    assert page.locator("#message-list > li").nth(1).get_attribute("class") == "new-divider"
    # Scrolled up, new messages do not pull the view down; a button counts them and jumps.
    page.locator("#messages").evaluate("n => { n.scrollTop = 0; }")
    jump = page.locator("#jump-latest")
    expect(jump).to_be_visible()
    expect(jump).to_have_text("↓ Latest")
    server.send(alice, room["id"], "new 1")
    server.send(alice, room["id"], "new 2")
    expect(jump).to_have_text("↓ 2 new messages")
    expect(jump).to_have_attribute("aria-label", "2 new messages, jump to latest")
    expect(page.locator("#message-list .message").last).not_to_be_in_viewport()
    artifact(page, "scrolled-up")
    jump.click()
    expect(page.locator("#message-list .message").last).to_be_in_viewport()
    expect(jump).to_be_hidden()
    expect(page.get_by_label("Write a message")).to_be_focused()
