"""Regenerate docs/screenshot.png (the README's picture of the web client).

Run from the repository root inside the project's environment:
    .venv/bin/python docs/screenshot.py
It starts a throwaway server, seeds a few users and conversations over REST and photographs
one user's view in Debian's Chromium, like the browser tests do.
"""

from __future__ import annotations

import struct
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.harness import ADMIN, CHROMIUM, ServerProcess, open_room, sign_in  # noqa: E402


def chart_png(width: int = 280, height: int = 150) -> bytes:
    """A small bar chart, drawn pixel by pixel (the picture a teammate shares in the chat)."""
    bars = [0.35, 0.5, 0.45, 0.7, 0.62, 0.85, 0.9]
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            bar, within = divmod(x - 14, 38)
            top = height - 12 - int(bars[bar] * (height - 30)) if 0 <= bar < len(bars) else height
            if 0 <= bar < len(bars) and within < 26 and top <= y < height - 12:
                row += bytes((38, 87, 197))
            elif y == height - 12:
                row += bytes((150, 156, 170))
            else:
                row += bytes((250, 251, 253))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", Path(tmp))
        server.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--role", "admin")
        server.start()
        try:
            maya = server.create_user("maya", display_name="Maya Lindqvist")
            theo = server.create_user("theo", display_name="Theo Okafor")
            priya = server.create_user("priya", display_name="Priya Raman")
            launch = server.group(maya, "Launch crew", theo, priya)
            server.group(theo, "Design reviews", maya)
            direct = server.api("POST", "/api/rooms", priya, json={"kind": "direct", "members": [maya.id]}).json()
            server.send(priya, direct["id"], "Lunch at 12:30?")
            staging = server.send(theo, launch["id"], "Staging is on 0.4.2, smoke tests are green.")
            chart = server.api("POST", f"/api/rooms/{launch['id']}/attachments", theo,
                               files={"file": ("latency.png", chart_png(), "image/png")}).json()
            server.api("POST", f"/api/rooms/{launch['id']}/messages", theo,
                       json={"body": "p95 latency this week 📉", "attachments": [chart["id"]]})
            server.send(priya, launch["id"],
                        "Release notes are drafted:\n• presence in the room header\n• unread badges")
            server.api("POST", f"/api/rooms/{launch['id']}/messages", maya,
                       json={"body": "Great work. Shipping at 15:00 unless anyone objects.",
                             "reply_to": staging["id"]})
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
                theo_page = browser.new_page()
                theo_page.goto(server.url + "/")
                sign_in(theo_page, theo)
                open_room(theo_page, "Launch crew")
                page = browser.new_page(viewport={"width": 1040, "height": 680})
                page.goto(server.url + "/")
                sign_in(page, maya)
                open_room(page, "Launch crew")
                theo_page.get_by_label("Write a message").fill("No objections from me.")
                theo_page.get_by_label("Write a message").press("Enter")
                page.get_by_label("Write a message").fill("Thanks! I'll post the changelog.")
                page.get_by_label("Write a message").press("Enter")
                theo_page.get_by_label("Write a message").type("Checking the dashb")
                expect(page.locator("#typing")).to_have_text("Theo Okafor is typing…")
                expect(page.locator(".receipt").last).to_have_text("Seen by Theo Okafor")
                page.wait_for_function("() => document.querySelector('.preview img')?.naturalWidth > 0")
                page.mouse.move(0, 0)  # no hover toolbar in the picture
                page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
