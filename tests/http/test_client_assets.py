"""The web client's files: served at / and /client/<name> under a strict CSP, and shipped in the package."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import pytest

from roomcast.http.routes.client import CSP


@pytest.fixture
def db_backend() -> str:
    return "sqlite"  # static files: one database is plenty


async def test_the_page_and_its_modules_carry_the_csp(client: Any) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    html = (await page.get_data()).decode()
    for src in re.findall(r'(?:src|href)="(/client/[^"]+)"', html):
        asset = await client.get(src)
        assert asset.status_code == 200, src
        assert asset.headers["Content-Security-Policy"] == CSP
    script = await client.get("/client/app.js")
    assert script.headers["Content-Type"].startswith("text/javascript")


async def test_unknown_client_files_are_404_and_docs_keep_their_policy(client: Any) -> None:
    for path in ("/client/missing.js", "/client/..%2Fapp.py", "/client/"):
        response = await client.get(path)
        assert response.status_code == 404, path
    docs = await client.get("/docs")
    assert docs.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_no_user_text_reaches_html_parsing() -> None:
    # The client renders user text with textContent only; keep HTML-parsing sinks out of it.
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")
    for folder in ("client", "sdk"):
        for entry in (files("roomcast.http") / folder).iterdir():
            if entry.name.endswith(".js"):
                assert not sinks.search(entry.read_text()), entry.name
