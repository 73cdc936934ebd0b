"""Attachments in the web client: pick, drop or paste a file, see it upload, previews and download chips;
files the server would refuse are explained before the upload, and the server's own refusals after it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .harness import ADMIN, ServerProcess, open_room, png, write

pytestmark = pytest.mark.browser

LIMIT = 64 * 1024  # a small upload limit, so that "too large" needs no big file


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("browser-attachments")
    process = ServerProcess(base / "data", base)
    process.env["ROOMCAST_ATTACHMENT_MAX_BYTES"] = str(LIMIT)
    process.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--role", "admin")
    process.start()
    yield process
    process.close()


def test_an_image_and_a_file_reach_the_other_user_as_a_preview_and_a_download_chip(
        server: ServerProcess, open_page: Any, artifact: Any) -> None:
    alice = server.create_user("alice", display_name="Alice")
    bob = server.create_user("bob", display_name="Bob")
    server.group(alice, "Photos", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Photos")
    open_room(b, "Photos")

    # Pick: the 📎 button opens the file chooser.
    with a.expect_file_chooser() as chooser:
        a.get_by_role("button", name="Attach files").click()
    chooser.value.set_files([{"name": "harbour.png", "mimeType": "image/png", "buffer": png(160, 90)},
                             {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Agenda:\n1. ship\n"}])
    uploads = a.locator("#attach-list .upload")
    expect(uploads).to_have_count(2)
    expect(uploads.filter(has_text="harbour.png")).to_contain_text("ready")
    expect(uploads.filter(has_text="notes.txt")).to_contain_text("ready")
    write(a, "From the pier")

    message = b.locator("#message-list .message", has_text="From the pier")
    preview = message.get_by_role("button", name="Open image harbour.png")
    expect(preview).to_be_visible()
    image = preview.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))  # fetched with the token, shown from memory
    b.wait_for_function("() => document.querySelector('.preview img')?.naturalWidth === 160")
    chip = message.get_by_role("button", name="Download notes.txt, 16 bytes")
    expect(chip).to_contain_text("notes.txt")
    expect(chip).to_contain_text("16 bytes")
    artifact(b, "preview-and-chip")

    # Click the preview: it opens large; Escape closes it.
    preview.click()
    expect(b.locator("#image-viewer")).to_be_visible()
    expect(b.locator("#image-viewer-name")).to_have_text("harbour.png")
    artifact(b, "image-open")
    b.keyboard.press("Escape")
    expect(b.locator("#image-viewer")).to_be_hidden()

    # The chip downloads the file, with its name, fetched with the token.
    with b.expect_download() as download:
        chip.click()
    assert download.value.suggested_filename == "notes.txt"
    assert download.value.path().read_bytes() == b"Agenda:\n1. ship\n"

    # The room list previews an attachment-only message by its file name.
    a.locator("#attach-input").set_input_files([{"name": "only.png", "mimeType": "image/png", "buffer": png(8, 8)}])
    expect(a.locator("#attach-list .upload")).to_contain_text("ready")
    a.get_by_role("button", name="Send").click()
    expect(b.locator("#room-list")).to_contain_text("📎 only.png")
    expect(b.locator("#message-list .message").last.get_by_role("button", name="Open image only.png")).to_be_visible()


def test_dropped_and_pasted_files_upload_too(server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    server.group(alice, "Drops", bob)
    a = open_page(alice)
    b = open_page(bob)
    open_room(a, "Drops")
    open_room(b, "Drops")
    a.evaluate("""() => {
        const dropped = new DataTransfer();
        dropped.items.add(new File(["dropped text"], "dropped.txt", {type: "text/plain"}));
        const target = document.getElementById("messages");
        target.dispatchEvent(new DragEvent("dragover", {dataTransfer: dropped, bubbles: true, cancelable: true}));
        target.dispatchEvent(new DragEvent("drop", {dataTransfer: dropped, bubbles: true, cancelable: true}));
        const pasted = new DataTransfer();
        pasted.items.add(new File(["pasted text"], "pasted.txt", {type: "text/plain"}));
        document.getElementById("composer-input").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: pasted, bubbles: true, cancelable: true}));
    }""")
    expect(a.locator("#attach-list .upload.done")).to_have_count(2)
    a.get_by_role("button", name="Send").click()
    last = b.locator("#message-list .message").last
    expect(last.get_by_role("button", name="Download dropped.txt, 12 bytes")).to_be_visible()
    expect(last.get_by_role("button", name="Download pasted.txt, 11 bytes")).to_be_visible()


def test_refused_files_are_explained_before_and_after_the_upload(server: ServerProcess, open_page: Any,
                                                                  artifact: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "Refusals", bob)
    a = open_page(alice)
    open_room(a, "Refusals")
    uploads: list[str] = []
    a.on("request", lambda r: uploads.append(r.url) if r.method == "POST" and "/attachments" in r.url else None)
    error = a.locator("#attach-error")

    # Before: a type the server does not take, and a file over its limit (from GET /api/config).
    a.locator("#attach-input").set_input_files(
        [{"name": "archive.zip", "mimeType": "application/zip", "buffer": b"PK\x03\x04" + b"\x00" * 30}])
    expect(error).to_have_text("archive.zip cannot be sent: PNG, JPEG, GIF, WebP, PDF and plain text only.")
    a.locator("#attach-input").set_input_files(
        [{"name": "huge.png", "mimeType": "image/png", "buffer": png() + b"\x00" * LIMIT}])
    # Sizes round up: a file just over the limit never reads as the limit itself.
    expect(error).to_have_text(re.compile(r"^huge\.png is 64\.[1-9] KB; files can be at most 64 KB\.$"))
    artifact(a, "too-large-before-upload")
    assert uploads == [] and a.locator("#attach-list .upload").count() == 0

    # After: a file whose name says PNG but whose bytes are a web page: the server's 415, in its words.
    a.locator("#attach-input").set_input_files(
        [{"name": "cat.png", "mimeType": "image/png", "buffer": b"<!DOCTYPE html><script>alert(1)</script>"}])
    expect(error).to_contain_text("cat.png was not uploaded: this is")
    expect(error).to_contain_text("may not be uploaded here")
    expect(a.locator("#attach-list .upload.failed")).to_have_count(1)
    artifact(a, "refused-415")
    assert len(uploads) == 1
    a.get_by_role("button", name="Remove cat.png").click()
    expect(a.locator("#attach-list")).to_be_hidden()
    # Nothing was sent with it.
    assert server.api("GET", f"/api/rooms/{room['id']}/messages", alice).json()["items"] == []
