"""`butter tracker serve` (butter-observe) in headless Chromium: the live page shows the nodes writing to the
tracker's database, and redraws itself when one of them dies (its snapshots stop, so after the expiry it
counts as gone)."""

from __future__ import annotations

import functools
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("butter_observe", reason="butter-observe is not installed")

from anyio.from_thread import BlockingPortal, start_blocking_portal

import butter
from butter.settings import ButterSettings
from butter.testing.process import RunningProcess

SIZE = 4
EXPIRY = 2.0  # seconds without a snapshot before a node counts as gone
FAST_HOSTS = {"refresh_interval": 0.5, "exchange_interval": 0.2, "quality_timeout": 1.0, "max_failures": 2}


def settings(network: str, database: Path, peers: list[str]) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1", peers=peers, transport={"driver": "memory", "options": {"network": network}},
        discovery={"drivers": ["static"]}, persistence={"driver": ""}, retrieval={"driver": ""},
        host_manager={"driver": "diversity", "options": FAST_HOSTS},
        plugins={"observe": {"tracker_url": f"sqlite:{database}", "tracker_interval": 0.3}},
    )


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[BlockingPortal, list[butter.Node], Path]]:
    """``SIZE`` nodes on the memory transport writing snapshots to a SQLite tracker database."""
    database, network = tmp_path / "tracker.db", f"tracker-view-{uuid.uuid4().hex[:8]}"
    with start_blocking_portal("asyncio") as portal, ExitStack() as stack:
        nodes: list[butter.Node] = []
        for _ in range(SIZE):
            made = settings(network, database, [str(n.address) for n in nodes[:1]])
            nodes.append(stack.enter_context(portal.wrap_async_context_manager(butter.open_node(made))))
        yield portal, nodes, database


def test_the_live_view_shows_the_nodes_then_one_gone(overlay: Any, page: Any, tmp_path: Path) -> None:
    portal, nodes, database = overlay
    view = RunningProcess([sys.executable, "-m", "butter.cli", "tracker", "serve", f"sqlite:{database}", "--port",
                           "0", "--refresh", "0.3", "--expiry", str(EXPIRY)], cwd=tmp_path)
    try:
        url = view.wait_for(r"tracker view on (http://127\.0\.0\.1:\d+/)", timeout=30).group(1)
        page.goto(url)
        page.wait_for_selector(f'#summary[data-live="{SIZE}"][data-gone="0"]')
        assert page.locator("svg circle.node:not(.unseen)").count() == SIZE
        page.screenshot(path=str(tmp_path / "live-before.png"))
        portal.call(functools.partial(nodes[-1].aclose, graceful=False))  # dies: its snapshots stop
        page.wait_for_selector(f'#summary[data-live="{SIZE - 1}"][data-gone="1"]')
        assert page.locator("svg circle.node:not(.unseen)").count() == SIZE - 1
        assert f"{SIZE - 1} live nodes, 1 gone" in page.locator("#summary").inner_text()
        page.screenshot(path=str(tmp_path / "live-after.png"))
        print(f"screenshots: {tmp_path / 'live-before.png'} {tmp_path / 'live-after.png'}")
    finally:
        view.stop(signal.SIGINT)
        view.stop(signal.SIGKILL)
