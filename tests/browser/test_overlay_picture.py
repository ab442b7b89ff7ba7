"""`butter graph`'s HTML page (butter-observe) in headless Chromium: it loads offline, shows every node, and
highlights a group's members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("butter_observe", reason="butter-observe is not installed")

from butter_observe import GroupView, HostView, Snapshot
from butter_observe._cli import write_graph
from butter_observe._graph import overlay_graph

SIZE = 12


def ring(size: int) -> list[Snapshot]:
    """``size`` nodes in a ring; node i keeps item i and item i-1 (so each item has two members)."""
    ids = [f"{i:064x}" for i in range(1, size + 1)]
    cids = [f"{i + 100:064x}" for i in range(size)]
    return [
        Snapshot(node_id, f"127.0.0.1:{9000 + i}", 1.0, 10.0 * i, 1000 * (i % 3), 1, 2,
                 (HostView(ids[(i + 1) % size], f"127.0.0.1:{9000 + (i + 1) % size}", 10.0, 1000, 1, 1),),
                 (GroupView(cids[i], "cold", 2, 3), GroupView(cids[i - 1], "cold", 2, 3)), {})
        for i, node_id in enumerate(ids)
    ]


def test_the_overlay_page_shows_every_node_and_highlights_a_group(page: Any, tmp_path: Path) -> None:
    _, _, html = write_graph(overlay_graph(ring(SIZE)), tmp_path / "overlay", title="ring")
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(html.as_uri())  # offline: any request beyond the file itself is refused
    assert page.locator("svg circle.node").count() == SIZE
    assert page.locator("svg line.edge").count() == SIZE
    assert f"{SIZE} nodes" in page.locator("#summary").inner_text()
    page.select_option("#group", f"{100:064x}")
    assert page.locator("svg circle.node.member").count() == 2
    assert page.locator("svg circle.node.faded").count() == SIZE - 2
    page.screenshot(path=str(tmp_path / "overlay.png"))
    print(f"screenshot: {tmp_path / 'overlay.png'}")
