"""The web client in headless Chromium against a real server process: chat flows between two users."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ServerProcess, bodies, eventually, open_room, room_item

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def test_sign_in_rejects_a_wrong_password_then_accepts_the_right_one(server: ServerProcess, open_page: Any,
                                                                    artifact: Any) -> None:
    user = server.create_user("signin")
    page = open_page()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_have_text("Wrong username or password.")
    artifact(page, "wrong-password")
    page.get_by_label("Password").fill(user.password)
    page.get_by_label("Password").press("Enter")
    expect(page.locator("#me-name")).to_have_text(user.username)  # no display name: the username
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    # The token lives in sessionStorage and never in the page's URL.
    assert page.evaluate("sessionStorage.getItem('roomcast.token')")
    assert "token" not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('roomcast.token')") is None


def test_two_users_exchange_messages_live_both_ways(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    server.group(alice, "Project Kestrel", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Project Kestrel")
    open_room(b, "Project Kestrel")
    # Who is online: each sees the other once both have the room open.
    expect(a.locator("#room-online")).to_contain_text("Bob")
    expect(b.locator("#room-online")).to_contain_text("Alice")

    a.get_by_label("Write a message").fill("Morning Bob! Is the build green?")
    a.get_by_label("Write a message").press("Enter")
    expect(bodies(b)).to_have_text(["Morning Bob! Is the build green?"])

    # Shift+Enter is a newline, Enter sends.
    box = b.get_by_label("Write a message")
    box.type("Green since 9:40.")
    box.press("Shift+Enter")
    box.type("Shipping at noon 🚀")
    box.press("Enter")
    expect(bodies(a)).to_have_text(["Morning Bob! Is the build green?", "Green since 9:40.\nShipping at noon 🚀"])
    expect(bodies(b)).to_have_text(["Morning Bob! Is the build green?", "Green since 9:40.\nShipping at noon 🚀"])
    expect(box).to_have_value("")

    # Read receipts: both have the room open, so each has seen the other's message.
    expect(a.locator("#message-list .message").last.locator(".receipt")).to_have_text("Seen by Bob")
    expect(b.locator("#message-list .message").last.locator(".receipt")).to_have_text("Seen by Alice")
    artifact(a, "alice")
    artifact(b, "bob")


def test_markup_in_messages_and_names_is_shown_as_text_and_runs_nothing(server: ServerProcess, open_page: Any,
                                                                       artifact: Any) -> None:
    mallory = server.create_user("mallory", display_name="<b onmouseover=alert(2)>Mallory</b>")
    victim = server.create_user("victim")
    room = server.group(mallory, "<script>alert(3)</script>", victim)
    dialogs: list[str] = []
    page = open_page(victim)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.evaluate("window.__pwned = false")

    server.send(mallory, room["id"], XSS)
    expect(room_item(page, "<script>alert(3)</script>")).to_contain_text(XSS)
    open_room(page, "<script>alert(3)</script>")
    # A live message too, not only history.
    server.send(mallory, room["id"], "<svg onload=\"window.__pwned=true\"></svg>")
    expect(bodies(page)).to_have_text([XSS, "<svg onload=\"window.__pwned=true\"></svg>"])
    expect(page.locator("#message-list .author").first).to_have_text("<b onmouseover=alert(2)>Mallory</b>")
    page.locator("#message-list .author").first.hover()
    # Nothing became markup, and nothing ran.
    assert page.locator("#message-list img, #message-list svg, #message-list b, #room-list img").count() == 0
    assert page.evaluate("window.__pwned") is False
    assert dialogs == []
    artifact(page, "xss-as-text")


def test_editing_and_deleting_own_messages_shows_live_to_the_other(server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    server.group(alice, "Edits", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Edits")
    open_room(b, "Edits")
    for text in ("keep me", "fix me", "drop me"):
        a.get_by_label("Write a message").fill(text)
        a.get_by_label("Write a message").press("Enter")
    expect(bodies(b)).to_have_text(["keep me", "fix me", "drop me"])
    # Only one's own messages have edit and delete controls.
    expect(b.get_by_role("button", name="Edit message")).to_have_count(0)

    fix = a.locator("#message-list .message", has_text="fix me")
    fix.get_by_role("button", name="Edit message").click()
    editor = a.get_by_label("Edit message text")
    expect(editor).to_be_focused()
    editor.fill("fixed")
    editor.press("Enter")
    expect(bodies(b)).to_have_text(["keep me", "fixed", "drop me"])
    expect(b.locator("#message-list .message", has_text="fixed").locator(".edited")).to_have_text("(edited)")

    drop = a.locator("#message-list .message", has_text="drop me")
    drop.get_by_role("button", name="Delete message").click()
    expect(drop.get_by_role("button", name="Delete message")).to_have_text("Confirm delete")
    drop.get_by_role("button", name="Delete message").click()
    expect(bodies(a)).to_have_text(["keep me", "fixed"])
    expect(bodies(b)).to_have_text(["keep me", "fixed"])
    # The room list's preview follows: the last message is now "fixed".
    expect(room_item(b, "Edits")).to_contain_text("fixed")


def test_typing_indicator_shows_while_the_other_types(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob")
    server.group(alice, "Typing", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Typing")
    open_room(b, "Typing")
    expect(b.locator("#room-online")).to_contain_text("Alice")
    a.get_by_label("Write a message").type("I am typing a long")
    expect(b.locator("#typing")).to_have_text("Alice is typing…")
    artifact(b, "typing")
    a.get_by_label("Write a message").press("Enter")
    expect(b.locator("#typing")).to_have_text("")
    expect(bodies(b)).to_have_text(["I am typing a long"])


def test_unread_badge_counts_messages_and_clears_when_the_room_is_read(server: ServerProcess,
                                                                     open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    quiet = server.group(alice, "Quiet room", bob)
    busy = server.group(alice, "Busy room", bob)
    server.send(alice, busy["id"], "before bob signs in")
    page = open_page(bob)
    expect(room_item(page, "Busy room").locator(".badge")).to_have_text("1")
    expect(room_item(page, "Quiet room").locator(".badge")).to_have_count(0)
    open_room(page, "Quiet room")
    for n in range(2):
        server.send(alice, busy["id"], f"live {n}")
    expect(room_item(page, "Busy room").locator(".badge")).to_have_text("3")
    expect(room_item(page, "Busy room")).to_contain_text("live 1")
    expect(room_item(page, "Busy room").get_by_role("button")).to_have_accessible_name(re.compile("3 unread"))
    # The most recent activity comes first.
    expect(page.locator("#room-list .room-name").first).to_have_text("Busy room")
    artifact(page, "unread")
    open_room(page, "Busy room")
    expect(room_item(page, "Busy room").locator(".badge")).to_have_count(0)
    # The read pointer reached the server: a fresh listing agrees.
    def unread() -> int:
        rooms = server.api("GET", "/api/rooms", bob).json()["items"]
        return next(r["unread_count"] for r in rooms if r["id"] == busy["id"])

    expect(page.locator("#message-list .message")).to_have_count(3)
    eventually(lambda: unread() == 0)
    # And a reload shows no badge either.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    expect(room_item(page, "Busy room")).to_be_visible()
    expect(room_item(page, "Busy room").locator(".badge")).to_have_count(0)
    expect(room_item(page, "Quiet room").locator(".badge")).to_have_count(0)
    assert quiet["id"] != busy["id"]


def test_a_click_on_a_room_survives_a_redraw_between_press_and_release(server: ServerProcess,
                                                                       open_page: Any) -> None:
    """The list redraws on every preview, badge and presence change; a click whose press came
    before one and whose release after still opens the room."""
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Redrawn room", bob)
    page = open_page(alice)
    button = room_item(page, "Redrawn room").get_by_role("button")
    box = button.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    server.send(bob, room["id"], "sent while the mouse was down")
    expect(room_item(page, "Redrawn room")).to_contain_text("sent while the mouse was down")  # redrawn
    page.mouse.up()
    expect(page.locator("#room-title")).to_have_text("Redrawn room")
    expect(bodies(page)).to_have_text(["sent while the mouse was down"])


def test_direct_chat_from_contacts(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    carol = server.create_user("carol", display_name="Carol")
    dave = server.create_user("dave", display_name="Dave")
    c = open_page(carol)
    d = open_page(dave)
    c.get_by_role("button", name="New chat").click()
    expect(c.get_by_role("dialog")).to_be_visible()
    contact = c.get_by_role("button", name=re.compile(rf"Chat with Dave \(@{dave.username}\)"))
    expect(contact).to_have_accessible_name(re.compile("online"))
    artifact(c, "contacts")
    contact.click()
    expect(c.locator("#room-title")).to_have_text("Dave")
    expect(c.get_by_label("Write a message")).to_be_focused()
    c.keyboard.type("Hi Dave, got a minute?")
    c.keyboard.press("Enter")
    # Dave was not in the room a moment ago: it appears live in his list, unread.
    expect(room_item(d, "Carol").locator(".badge")).to_have_text("1")
    open_room(d, "Carol")
    expect(bodies(d)).to_have_text(["Hi Dave, got a minute?"])
    # Starting the chat again lands in the same room.
    c.get_by_role("button", name="New chat").click()
    c.get_by_role("button", name=re.compile("Chat with Dave")).click()
    expect(c.locator("#room-list li")).to_have_count(1)


def test_create_group_with_the_keyboard(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    owner = server.create_user("owner", display_name="Olga")
    erin = server.create_user("erin")
    frank = server.create_user("frank")
    page = open_page(owner)
    e = open_page(erin)
    page.get_by_role("button", name="New group").click()
    expect(page.get_by_label("Group name")).to_be_focused()
    page.keyboard.type("Launch crew")
    page.get_by_label(re.compile(erin.username)).check()
    page.get_by_label(re.compile(frank.username)).check()
    artifact(page, "new-group")
    page.get_by_label("Group name").press("Enter")  # Enter in the form creates the group
    expect(page.locator("#room-title")).to_have_text("Launch crew")
    expect(page.locator("#room-online")).to_contain_text("3 members")
    page.get_by_label("Write a message").fill("Welcome aboard")
    page.get_by_label("Write a message").press("Enter")
    # Erin was added while connected: the room shows up for her live, with the message.
    expect(room_item(e, "Launch crew")).to_contain_text("Welcome aboard")
    open_room(e, "Launch crew")
    expect(bodies(e)).to_have_text(["Welcome aboard"])


def test_scrolling_up_loads_older_pages(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Long history", bob)
    for n in range(1, 121):
        server.send(alice, room["id"], f"message {n:03d}")
    page = open_page(bob)
    open_room(page, "Long history")
    messages = page.locator("#message-list .message")
    expect(messages).to_have_count(50)
    expect(messages.last.locator(".body")).to_have_text("message 120")
    expect(messages.last).to_be_in_viewport()
    scroller = page.locator("#messages")
    scroller.evaluate("node => { node.scrollTop = 0; }")
    expect(messages).to_have_count(100)
    # The reader stays where they were: the first message of the old top is still on screen.
    expect(page.locator("#message-list .message", has_text="message 071")).to_be_in_viewport()
    scroller.evaluate("node => { node.scrollTop = 0; }")
    expect(messages).to_have_count(120)
    expect(messages.first.locator(".body")).to_have_text("message 001")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    texts = messages.locator(".body").all_text_contents()
    assert texts == [f"message {n:03d}" for n in range(1, 121)]
    artifact(page, "history")


def test_phone_width_shows_one_pane_at_a_time(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Pocket", bob)
    server.send(alice, room["id"], "A fairly long message that has to wrap on a narrow phone screen without "
                                   "pushing anything sideways out of view.")
    page = open_page(bob, viewport={"width": 375, "height": 740})
    expect(page.locator("#room-list")).to_be_visible()
    expect(page.locator("#room")).to_be_hidden()
    artifact(page, "phone-rooms")
    open_room(page, "Pocket")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.get_by_label("Write a message")).to_be_visible()
    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_label("Write a message").fill("Replying from my phone")
    page.get_by_role("button", name="Send").click()
    expect(bodies(page)).to_have_text([re.compile("fairly long"), "Replying from my phone"])
    artifact(page, "phone-room")
    page.get_by_role("button", name="Back to rooms").click()
    expect(page.locator("#room-list")).to_be_visible()
    expect(room_item(page, "Pocket").get_by_role("button")).to_be_focused()


def test_pages_have_a_strict_csp_and_no_inline_script(server: ServerProcess, open_page: Any) -> None:
    response = server.api("GET", "/")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    # Every script is an external file of our own; no inline code, no inline handlers or styles.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="/client/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html) and "style=" not in html
    for asset in ("app.js", "styles.css"):
        served = server.api("GET", f"/client/{asset}")
        assert served.status_code == 200 and served.headers["content-security-policy"] == csp
    assert server.api("GET", "/client/nope.js").status_code == 404
    assert server.api("GET", "/client/..%2Fapp.py").status_code == 404
    # The docs page keeps its own policy.
    assert "connect-src 'self'" in server.api("GET", "/docs").headers["content-security-policy"]
    # The browser loads the page with no CSP violation.
    page = open_page()
    violations = page.evaluate("""() => new Promise(resolve => {
        const seen = [];
        document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));
        setTimeout(() => resolve(seen), 200);
    })""")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert violations == []
