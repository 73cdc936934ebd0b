"""The project's written docs (docs/*.md) as HTML pages under /docs, rendered once at start.

Markdown goes through markdown-it-py with raw HTML off (it is escaped), so a page holds
nothing but what the Markdown says; the pages run no script and load only /docs/docs.css.
"""

from __future__ import annotations

import html
import re
from itertools import pairwise
from pathlib import Path

from markdown_it import MarkdownIt

from ..config import PROJECT_ROOT

DOCS_DIR = PROJECT_ROOT / "docs"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.md")
_TITLE = re.compile(r"^# (.+)$", re.MULTILINE)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · roomcast</title>
  <link rel="stylesheet" href="/docs/docs.css">
</head>
<body>
  <nav class="guides"><a href="/docs">REST reference</a>{links}</nav>
  <main class="guide">
{body}
  </main>
</body>
</html>
"""


def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it, so `[…](#realtime-ws)` works there and here."""
    kept = re.sub(r"[^\w\- ]", "", heading.lower())
    return kept.replace(" ", "-")


def _render(markdown: MarkdownIt, text: str) -> str:
    """HTML of `text`, each heading with its slug as id (the first of a repeated slug wins, like GitHub)."""
    tokens = markdown.parse(text)
    seen: set[str] = set()
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open" and inline.type == "inline":
            anchor = slug(inline.content)
            if anchor not in seen:
                seen.add(anchor)
                opening.attrSet("id", anchor)
    return str(markdown.renderer.render(tokens, markdown.options, {}))


def render_guides(folder: Path = DOCS_DIR) -> dict[str, tuple[str, bytes]]:
    """name → (title, whole HTML page) for each docs/*.md; empty when the folder is absent (an install
    without the source tree)."""
    if not folder.is_dir():
        return {}
    sources = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.md"))
               if _NAME.fullmatch(path.name)}
    titles = {name: (match.group(1).strip() if (match := _TITLE.search(text)) else name)
              for name, text in sources.items()}
    links = "".join(f' · <a href="/docs/{name}">{html.escape(title)}</a>' for name, title in titles.items())
    markdown = _renderer()
    return {name: (titles[name], _PAGE.format(title=html.escape(titles[name]), links=links,
                                               body=_render(markdown, text)).encode("utf-8"))
            for name, text in sources.items()}
