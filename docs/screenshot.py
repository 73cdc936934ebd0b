"""Regenerate docs/screenshot.png (the README's picture of the web client).

Run from the repository root inside the project's environment:
    .venv/bin/python docs/screenshot.py
It starts a throwaway server, seeds a few users and conversations over REST and photographs
one user's view in Debian's Chromium, like the browser tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.harness import ADMIN, CHROMIUM, ServerProcess, open_room, sign_in  # noqa: E402


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
            server.send(theo, launch["id"], "Staging is on 0.4.2, smoke tests are green.")
            server.send(priya, launch["id"],
                        "Release notes are drafted:\n• presence in the room header\n• unread badges")
            server.send(maya, launch["id"], "Great work. Shipping at 15:00 unless anyone objects.")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
                theo_page = browser.new_page()
                theo_page.goto(server.url + "/")
                sign_in(theo_page, theo)
                open_room(theo_page, "Launch crew")
                page = browser.new_page(viewport={"width": 1040, "height": 600})
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
                page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
