"""Fixtures for the browser tests: one server process per module, one Chromium per session."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import ADMIN, ARTIFACTS, CHROMIUM, DEFAULT_TIMEOUT_MS, ServerProcess, User, chromium_missing, sign_in


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        chromium_missing(f"{CHROMIUM} does not exist")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        chromium_missing(f"the playwright package is missing: {exc}")
    from playwright.sync_api import expect

    # A loaded 2-core machine is slow; generous waits cost nothing when things are fast.
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                  args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:
            chromium_missing(f"it would not start: {exc}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `run.py serve` on a fresh SQLite data dir, with an admin who creates the test users."""
    base = tmp_path_factory.mktemp("browser-server")
    process = ServerProcess(base / "data", base)
    process.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--role", "admin")
    process.start()
    yield process
    process.close()


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """Save a page's screenshot under artifacts/browser/ (CI keeps that folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def save(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{test}--{name}.png"
        page.screenshot(path=str(path))
        return path

    return save


@pytest.fixture
def open_page(browser: Any, server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Opens a fresh browser context (its own sessionStorage) on the client, signed in as a user.

    Any uncaught page error fails the test; on failure each page's screenshot is saved.
    """
    contexts: list[Any] = []
    pages: list[tuple[str, Any]] = []
    errors: list[str] = []

    def open_(user: User | None = None, *, viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(viewport=viewport or {"width": 1100, "height": 720})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append((user.username if user else f"page{len(pages)}", page))
        page.goto(server.url + "/")
        if user is not None:
            sign_in(page, user)
        return page

    yield open_
    failed = getattr(request.node, "failed_call", False)
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, page in pages:
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}--failed-{name}.png"))
            except Exception:
                pass
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report

