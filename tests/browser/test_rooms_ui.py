"""Room details (members, roles, add, remove, rename, leave), unread counts in the tab title,
browser notifications, names and plurals as people read them, and the layout at 360 px."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ServerProcess, bodies, open_room, png, room_item, sign_in, write

pytestmark = pytest.mark.browser

# Notifications are recorded instead of shown (headless Chromium draws none); permission is real.
RECORD_NOTIFICATIONS = """
window.__notifications = [];
const Real = window.Notification;
class Recorded extends Real {
  constructor(title, options) {
    super(title, options);
    window.__notifications.push({title, body: options && options.body});
  }
}
window.Notification = Recorded;
"""


def test_room_details_add_remove_rename_and_leave(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    owner = server.create_user("olga", display_name="Olga")
    carol = server.create_user("carol")  # no display name: shown once, as the username
    dave = server.create_user("dave", display_name="Dave")
    server.group(owner, "Planning", carol)
    o = open_page(owner)
    c = open_page(carol)
    open_room(o, "Planning")
    open_room(c, "Planning")
    expect(o.locator("#room-online")).to_have_text("2 members · Online: " + carol.username)

    o.get_by_role("button", name="Details").click()
    dialog = o.get_by_role("dialog", name="Planning")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#details-count")).to_have_text("2 members")
    members = dialog.locator(".member")
    expect(members.filter(has_text="Olga")).to_contain_text("Owner")
    expect(members.filter(has_text=carol.username).locator(".member-name")).to_have_text(carol.username)
    expect(members.filter(has_text=carol.username).locator(".dot.on")).to_have_count(1)

    # Add Dave from the contacts.
    dialog.get_by_label("Add a member").select_option(label=f"Dave (@{dave.username})")
    dialog.get_by_role("button", name="Add", exact=True).click()
    expect(dialog.locator("#details-count")).to_have_text("3 members")
    expect(c.locator("#room-online")).to_contain_text("3 members")  # live for the others
    artifact(o, "details")

    # Remove Dave again, rename the room.
    dialog.get_by_role("button", name=f"Remove Dave (@{dave.username}) from the room").click()
    expect(dialog.locator("#details-count")).to_have_text("2 members")
    dialog.get_by_label("Room name").fill("Planning Q3")
    dialog.get_by_role("button", name="Rename").click()
    expect(o.locator("#room-title")).to_have_text("Planning Q3")
    expect(c.locator("#room-title")).to_have_text("Planning Q3")
    expect(room_item(c, "Planning Q3")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(o.get_by_role("button", name="Details")).to_be_focused()

    # A plain member sees the members but no controls; leaving takes a second click.
    c.get_by_role("button", name="Details").click()
    theirs = c.get_by_role("dialog", name="Planning Q3")
    expect(theirs.locator(".member")).to_have_count(2)
    expect(theirs.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    expect(theirs.get_by_label("Room name")).to_be_hidden()
    theirs.get_by_role("button", name="Leave room").click()
    expect(theirs.get_by_role("button", name="Really leave?")).to_be_visible()
    theirs.get_by_role("button", name="Really leave?").click()
    expect(theirs).to_be_hidden()
    expect(room_item(c, "Planning Q3")).to_have_count(0)
    expect(c.locator("#room-title")).to_have_text("Pick a conversation")
    expect(o.locator("#room-online")).to_contain_text("1 member ·")


def test_unread_count_in_the_title_and_a_notification_for_a_background_room(
        server: ServerProcess, browser: Any, open_page: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    open_room_ = server.group(alice, "In view", bob)
    other = server.group(alice, "Elsewhere", bob)
    page = open_page()
    page.context.grant_permissions(["notifications"], origin=server.url)
    page.add_init_script(RECORD_NOTIFICATIONS)
    page.reload()
    sign_in(page, bob)
    open_room(page, "In view")
    assert page.evaluate("Notification.permission") == "granted"
    expect(page.get_by_role("button", name="Turn on notifications")).to_be_hidden()
    expect(page).to_have_title("roomcast")

    server.send(alice, other["id"], "psst, over here")
    server.send(alice, other["id"], "and again")
    expect(page).to_have_title("(2) roomcast")
    expect(room_item(page, "Elsewhere").locator(".badge")).to_have_text("2")
    page.wait_for_function("window.__notifications.length === 2")
    assert page.evaluate("window.__notifications") == [
        {"title": "Alice in Elsewhere", "body": "psst, over here"},
        {"title": "Alice in Elsewhere", "body": "and again"}]
    # A message in the room being read raises nothing and counts as read.
    server.send(alice, open_room_["id"], "you are looking at this one")
    expect(bodies(page)).to_have_text(["you are looking at this one"])
    assert page.evaluate("window.__notifications.length") == 2
    expect(page).to_have_title("(2) roomcast")
    # The tab in the background: a message in the open room counts and notifies too, until the tab is back.
    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    server.send(alice, open_room_["id"], "while you were away")
    expect(page).to_have_title("(3) roomcast")
    page.wait_for_function("window.__notifications.length === 3")
    assert page.evaluate("window.__notifications[2]") == {"title": "Alice in In view", "body": "while you were away"}
    page.evaluate("""() => {
        delete document.visibilityState;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page).to_have_title("(2) roomcast")
    open_room(page, "Elsewhere")
    expect(page).to_have_title("roomcast")


def test_notifications_are_offered_when_the_browser_has_not_been_asked(server: ServerProcess, open_page: Any) -> None:
    user = server.create_user("asker")
    page = open_page(user)
    if page.evaluate("Notification.permission") != "default":
        pytest.skip("this browser has already decided about notifications")
    expect(page.get_by_role("button", name="Turn on notifications")).to_be_visible()


def test_the_whole_client_fits_360_px(server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice Wonderland-Smith")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(alice, "A group with a rather long name for a phone", bob)
    server.send(alice, room["id"], "A message long enough to wrap a few times on a narrow phone screen 📱🚀")
    page = open_page(bob, viewport={"width": 360, "height": 740})
    expect(room_item(page, "A group with a rather long name")).to_be_visible()
    # Name and preview line up.
    item = room_item(page, "A group with a rather long name")
    name_x = item.locator(".room-name").bounding_box()["x"]
    preview_x = item.locator(".room-preview").bounding_box()["x"]
    assert abs(name_x - preview_x) < 1
    artifact(page, "phone-list")
    open_room(page, "A group with a rather long name for a phone")
    page.locator("#attach-input").set_input_files([{"name": "screenshot-from-my-phone.png", "mimeType": "image/png",
                                                     "buffer": png(900, 400)}])
    expect(page.locator("#attach-list .upload.done")).to_have_count(1)
    write(page, "Here it is")
    expect(page.locator("#message-list .message").last.locator(".preview img")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.locator("#messages").evaluate("n => n.scrollWidth <= n.clientWidth")
    artifact(page, "phone-room")
    page.get_by_role("button", name="Details").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    dialog_box = page.get_by_role("dialog").bounding_box()
    assert dialog_box["x"] >= 0 and dialog_box["x"] + dialog_box["width"] <= 360
    artifact(page, "phone-details")


def within_width(inner: dict[str, float], outer: dict[str, float]) -> bool:
    """Whether a box lies between the left and right edges of another (lists may scroll vertically)."""
    return inner["x"] >= outer["x"] - 1 and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1


def test_a_display_name_without_spaces_wraps_instead_of_widening_messages_and_dialogs(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    # The longest display name the server takes, as one word: anyone can be given one.
    wide = server.create_user("wide", display_name="W" * 128)
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(wide, "Wide names", bob)
    server.send(wide, room["id"], "hello")
    page = open_page(bob)
    open_room(page, "Wide names")
    expect(bodies(page)).to_have_text(["hello"])
    message = page.locator("#message-list .message").first
    assert within_width(message.locator(".author").bounding_box(), message.bounding_box())
    assert page.locator("#messages").evaluate("n => n.scrollWidth <= n.clientWidth")

    # The contact list of "New chat" keeps the name inside its button and the button inside the dialog.
    page.get_by_role("button", name="New chat").click()
    dialog = page.locator("#direct-dialog")
    contact = dialog.locator(f"button.contact[data-username='{wide.username}']")
    expect(contact).to_be_visible()
    assert within_width(contact.bounding_box(), dialog.bounding_box())
    assert contact.evaluate("n => n.scrollWidth <= n.clientWidth")
    dialog.get_by_role("button", name="Close").click()

    # "New group" listed the name in a fieldset as wide as the name: Create was pushed out of sight.
    page.get_by_role("button", name="New group").click()
    dialog = page.locator("#group-dialog")
    expect(dialog.locator(f"input[data-username='{wide.username}']")).to_be_visible()
    artifact(page, "group-dialog")
    for button in ("Create group", "Cancel"):
        assert within_width(dialog.get_by_role("button", name=button).bounding_box(), dialog.bounding_box())
    dialog.get_by_label("Group name").fill("Made anyway")
    dialog.locator(f"input[data-username='{wide.username}']").check()
    dialog.get_by_role("button", name="Create group").click()
    expect(page.locator("#room-title")).to_have_text("Made anyway")


# The left edge on screen of the first character of `needle` in a node's text.
X_OF = """([node, needle]) => {
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const at = text.data.indexOf(needle);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(text, at);
    range.setEnd(text, at + 1);
    return range.getBoundingClientRect().x;
  }
  return null;
}"""


def reads_left_to_right(locator: Any, *parts: str) -> bool:
    """Whether `parts` of a line are drawn from left to right in this order."""
    xs = [locator.evaluate(f"(node, needle) => ({X_OF})([node, needle])", part) for part in parts]
    assert None not in xs, (parts, xs)
    return xs == sorted(xs)


def test_a_name_with_a_right_to_left_override_cannot_turn_the_rest_of_the_line_around(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    # U+202E (right-to-left override) left open: everything after it in the same line would be
    # drawn backwards, "Alice is typing…" as "ecilA …gnipyt si" and a handle as "(ecila@)".
    spoof = server.create_user("spoof", display_name="\u202eAlice")
    bob = server.create_user("bob", display_name="Bob")
    room = server.group(spoof, "Bidi", bob)
    server.send(spoof, room["id"], "hello there")
    page = open_page(bob)
    preview = room_item(page, "Bidi").locator(".room-preview")
    expect(preview).to_contain_text("hello there")
    assert reads_left_to_right(preview, ": ", "hello", "there")

    open_room(page, "Bidi")
    typist = open_page(spoof)
    open_room(typist, "Bidi")
    typist.get_by_label("Write a message").press_sequentially("abc")
    expect(page.locator("#typing")).to_contain_text("is typing")
    assert reads_left_to_right(page.locator("#typing"), "is", "typing")
    artifact(page, "typing")

    page.get_by_role("button", name="New chat").click()
    contact = page.locator(f"#direct-dialog button.contact[data-username='{spoof.username}']")
    expect(contact).to_contain_text(f"(@{spoof.username})")
    assert reads_left_to_right(contact, "(@", spoof.username, ")")
