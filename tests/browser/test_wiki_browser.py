"""The wiki in a real browser: headless Chromium (Debian's ``chromium``; no browser download) driven by
Playwright against three wiki nodes on 127.0.0.1. Write an article on node A's page, read it on B's, SIGKILL A,
read it again on C's. When the test fails, a screenshot and the page's HTML are saved and their paths printed
(the ``page`` fixture, in conftest.py).

Playwright's async API runs on asyncio only (it does not support trio), so this is a plain test using its sync
API; the nodes are separate processes, on asyncio and trio.
"""

from __future__ import annotations

import re
import time
from typing import Any


def reload_until(page: Any, url: str, pattern: str, timeout: float = 30) -> str:
    """Load ``url`` again every half second until the page's text matches ``pattern``; returns the text."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        text = str(page.inner_text("main"))
        if re.search(pattern, text):
            return text
        assert time.monotonic() < deadline, f"{url} never showed {pattern!r}; last text:\n{text}"
        page.wait_for_timeout(500)


def find_on(page: Any, node: Any, content_id: str) -> None:
    """Use node's Find page to open the article ``content_id``."""
    page.goto(node.url + "find")
    page.fill("input[name=id]", content_id)
    page.click("#find")
    page.wait_for_url(re.compile(r"/article/[0-9a-f]{64}$"))


def test_write_on_a_read_on_b_kill_a_read_on_c(wiki_nodes: Any, page: Any) -> None:
    a = wiki_nodes.start(backend="asyncio")
    b = wiki_nodes.start(backend="trio")
    c = wiki_nodes.start(peer=b, backend="asyncio")
    for node in (a, b, c):  # everyone knows everyone: A's article can be replicated on B and C
        node.wait_for_peers(2)

    page.goto(a.url)
    page.click("text=Write an article")
    page.fill("input[name=title]", "Strawberries")
    page.fill("textarea[name=body]", "# Strawberries 🍓\n\n<script>document.title = 'pwned'</script>\n\n*Ripe* ones.")
    page.click("#publish")
    page.wait_for_url(re.compile(r"/article/[0-9a-f]{64}$"))
    content_id = page.inner_text("#content-id")
    assert page.url.endswith(content_id)

    find_on(page, b, content_id)  # B finds it by breadth-first search
    assert page.inner_text("#title") == "Strawberries"
    assert page.inner_text("#body h1") == "Strawberries 🍓"
    assert page.inner_text("#body em") == "Ripe"
    assert page.locator("script").count() == 0  # the body's <script> is text on the page, not a script
    assert "<script>document.title = 'pwned'</script>" in page.inner_text("#body")
    assert "pwned" not in page.title()

    reload_until(page, a.url + f"article/{content_id}", r"3 of 3 \(goldilocks\)")  # B and C hold replicas
    wiki_nodes.kill(a)  # SIGKILL: no hand-off

    find_on(page, c, content_id)
    assert page.inner_text("#title") == "Strawberries"
    assert page.inner_text("#body h1") == "Strawberries 🍓"
    page.click("text=Butter dwiki")
    page.goto(c.url + "articles")
    assert page.locator(f'#articles a[href="/article/{content_id}"]').inner_text() == "Strawberries"

    response = page.goto(c.url + "article/" + "0" * 64)
    assert response is not None and response.status == 404
    assert "was found on the network" in page.inner_text("#not-found")
