"""/docs shows the written docs too: docs/protocol.md (with the /ws protocol) and the other pages,
rendered server-side, under a CSP that allows no script."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from roomcast.http.guides import DOCS_DIR, render_guides

ROOT = Path(__file__).resolve().parents[2]


async def test_the_docs_page_links_the_protocol(client: Any) -> None:
    page = await (await client.get("/docs")).get_data(as_text=True)
    assert 'href="/docs/protocol.md"' in page and 'href="/docs/operations.md"' in page


async def test_the_protocol_page_shows_the_ws_protocol(client: Any) -> None:
    response = await client.get("/docs/protocol.md")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    page = await response.get_data(as_text=True)
    assert '<h2 id="realtime-ws">Realtime: <code>/ws</code></h2>' in page
    assert 'href="#realtime-ws"' in page  # the contents' links work here as on GitHub
    for text in ("<td>1008</td>", "<td>1013</td>", "&quot;type&quot;: &quot;welcome&quot;", "subscribed",
                 "<table>", 'href="/docs/docs.css"', '<h3 id="guarantees">Guarantees</h3>'):
        assert text in page, text
    assert "<script" not in page


async def test_every_page_of_docs_is_served_and_its_links_to_pages_work(client: Any) -> None:
    names = sorted(path.name for path in DOCS_DIR.glob("*.md"))
    assert {"protocol.md", "architecture.md", "operations.md"} <= set(names)
    for name in names:
        page = await (await client.get(f"/docs/{name}")).get_data(as_text=True)
        for target in re.findall(r'href="(/docs/[^"#]+)', page):
            assert (await client.get(target)).status_code == 200, (name, target)
    for bad in ("nope.md", "..%2FREADME.md", "PROTOCOL.MD"):
        assert (await client.get(f"/docs/{bad}")).status_code == 404, bad


def test_raw_html_in_markdown_is_escaped(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text('# Hi <b>\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n')
    (tmp_path / "Skipped.md").write_text("# not served: names are lower case\n")
    pages = render_guides(tmp_path)
    assert set(pages) == {"page.md"}
    title, html = pages["page.md"]
    text = html.decode()
    assert title == "Hi <b>" and "<title>Hi &lt;b&gt; · roomcast</title>" in text
    assert "<script>" not in text and "&lt;script&gt;" in text and "href=\"javascript:" not in text


def test_an_install_without_the_docs_folder_serves_none(tmp_path: Path) -> None:
    assert render_guides(tmp_path / "absent") == {}
