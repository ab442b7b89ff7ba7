"""The wiki in a real browser: headless Chromium (Debian's ``chromium``; no browser download) driven by
Playwright against three wiki nodes on 127.0.0.1. Write an article on node A's page and edit it there, read
the new version on B's page and both revisions in B's history, delete it from A's page and see "deleted" on
C's. When the test fails, a screenshot and the page's HTML are saved and their paths printed (the ``page``
fixture, in conftest.py).

Playwright's async API runs on asyncio only (it does not support trio), so this is a plain test using its sync
API; the nodes are separate processes, on asyncio and trio.
"""

from __future__ import annotations

import re
import time
from typing import Any

ARTICLE = re.compile(r"/article/[0-9a-f]{64}$")


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


def find_on(page: Any, node: Any, article_id: str) -> None:
    """Use node's Find page to open the article ``article_id``."""
    page.goto(node.url + "find")
    page.fill("input[name=id]", article_id)
    page.click("#find")
    page.wait_for_url(ARTICLE)


def test_write_and_edit_on_a_read_on_b_delete_on_a_deleted_on_c(wiki_nodes: Any, page: Any) -> None:
    a = wiki_nodes.start(backend="asyncio")
    b = wiki_nodes.start(backend="trio")
    c = wiki_nodes.start(peer=b, backend="asyncio")
    for node in (a, b, c):  # everyone knows everyone: A's revisions are pushed to B and C
        node.wait_for_peers(2)

    page.goto(a.url)
    page.click("text=Write an article")
    page.fill("input[name=title]", "Strawberries")
    page.fill("textarea[name=body]", "# Strawberries 🍓\n\n<script>document.title = 'pwned'</script>\n\n*Ripe* ones.")
    page.click("#publish")
    page.wait_for_url(ARTICLE)
    article_id = page.inner_text("#content-id")
    assert page.url.endswith(article_id)
    assert page.locator("#delete").count() == 1  # A's key created it: A's page offers to delete it

    page.click("#edit")  # edit it on A's page: the form holds the current text
    assert page.input_value("input[name=title]") == "Strawberries"
    assert "*Ripe* ones." in page.input_value("textarea[name=body]")
    page.fill("textarea[name=body]", "# Strawberries 🍓\n\n<script>document.title = 'pwned'</script>\n\n"
                                     "*Ripe* ones, picked in **June**.")
    page.click("#save")
    page.wait_for_url(ARTICLE)
    assert page.inner_text("#body strong") == "June"
    assert "2 revision(s)" in page.inner_text("main")

    reload_until(page, b.url + f"article/{article_id}", r"picked in June")  # B reads the new version
    assert page.inner_text("#title") == "Strawberries"
    assert page.inner_text("#body h1") == "Strawberries 🍓"
    assert page.locator("script").count() == 0  # the body's <script> is text on the page, not a script
    assert "<script>document.title = 'pwned'</script>" in page.inner_text("#body")
    assert "pwned" not in page.title()
    assert page.locator("#stale").count() == 0  # B's read was answered by peers
    assert page.locator("#delete").count() == 0  # B's key did not create it

    page.click("#history")  # both revisions in B's history, newest first, the edit marked current
    rows = page.locator("#history-list tr.revision")
    assert rows.count() == 2
    assert "current" in rows.nth(0).inner_text() and "current" not in rows.nth(1).inner_text()
    rows.nth(0).locator("text=diff").click()  # the edit's changes against the first revision
    assert page.inner_text("#diff .del") == "-*Ripe* ones."
    assert page.inner_text("#diff .add") == "+*Ripe* ones, picked in **June**."

    page.goto(a.url + f"article/{article_id}")  # A deletes it (and confirms): the page then says it is deleted
    page.click("#delete")
    assert "This cannot be undone" in page.inner_text("main")
    page.click("#confirm")
    page.wait_for_url(ARTICLE)
    assert "was deleted by its creator" in page.inner_text("#deleted")

    reload_until(page, c.url + f"article/{article_id}", r"deleted by its creator")  # and so does C's
    response = page.goto(c.url + f"article/{article_id}/history")
    assert response is not None and response.status == 410

    response = page.goto(c.url + "article/" + "0" * 64)
    assert response is not None and response.status == 404
    assert "was found on the network" in page.inner_text("#not-found")
