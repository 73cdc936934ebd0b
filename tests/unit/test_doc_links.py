"""The README and docs/ link only inside the repository (and to a local server), and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roomcast.http.guides import slug

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Comes with the /metrics endpoint's documentation; linked from operations.md ahead of it.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<(https?://[^>]+)>")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return [inline or auto for inline, auto in _LINK.findall(text)]


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(heading.strip()) for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_stays_inside_the_repository_and_resolves(page: Path) -> None:
    for target in links(page):
        if target.startswith(("http://", "https://", "ws://")):
            assert re.match(r"(?:https?|ws)://(?:127\.0\.0\.1|localhost)[:/]", target), (page.name, target)
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), (page.name, target)
        assert resolved.exists(), (page.name, target)
        if anchor and resolved.suffix == ".md" and resolved.exists():
            assert anchor in anchors(resolved), (page.name, target)


def test_the_readme_links_each_page_of_docs() -> None:
    linked = {(ROOT / target).resolve() for target in links(ROOT / "README.md") if not target.startswith("http")}
    assert {ROOT / "docs" / name for name in ("protocol.md", "architecture.md", "operations.md")} <= linked
