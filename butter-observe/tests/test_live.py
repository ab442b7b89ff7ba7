"""What `butter tracker serve`'s page polls (/overlay.json), from a SQLite file and a real PostgreSQL server:
nodes with a recent snapshot are drawn, older ones counted as gone. (The page itself is tested in headless
Chromium: tests/browser/test_tracker_view.py.)"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from butter_observe import open_database
from butter_observe._http import serve_http
from butter_observe._live import LiveOverlay

from .conftest import Postgres
from .test_graph import fake_overlay
from .test_metrics import http_get


def fill(url: str) -> None:
    """5 nodes in a ring; the last one's snapshot is an hour old."""
    now = time.time()
    database = open_database(url)
    try:
        for i, snapshot in enumerate(fake_overlay(5)):
            database.write(replace(snapshot, taken_at=now - (3600 if i == 4 else 0)), history_expiry=7200)
    finally:
        database.close()


def check(view: dict[str, object]) -> None:
    assert (view["live"], view["gone"], view["links"]) == (4, 1, 4)
    assert view["named"] == 1  # the gone node, still named in a live node's known hosts
    assert str(view["svg"]).count('class="node"') == 4 and str(view["svg"]).count('class="node unseen"') == 1


@pytest.mark.anyio
async def test_the_view_from_sqlite_over_http(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'tracker.db'}"
    fill(url)
    overlay = LiveOverlay(url, expiry=60)
    listening: list[int] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_http("127.0.0.1", 0, {"/overlay.json": overlay.answer}, what="test",
                                             on_listening=listening.append))
            with anyio.fail_after(10):
                while not listening:
                    await anyio.sleep(0.01)
            status, body = await http_get(listening[0], "/overlay.json")
            assert status == 200
            check(json.loads(body))
            assert (await http_get(listening[0], "/"))[0] == 404
            tg.cancel_scope.cancel()
    finally:
        overlay.close()


def test_the_view_from_postgresql(postgres: Postgres) -> None:
    url = postgres.create_database()
    fill(url)
    overlay = LiveOverlay(url, expiry=60)
    try:
        check(overlay.read())
    finally:
        overlay.close()


@pytest.mark.anyio
async def test_an_unreadable_database_answers_503_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    overlay = LiveOverlay(f"sqlite:{path}", expiry=60)
    path.mkdir()  # a directory: SQLite cannot open it
    status, _, body = await overlay.answer()
    assert status == 503 and "error" in json.loads(body)
    path.rmdir()
    fill(f"sqlite:{path}")
    status, _, body = await overlay.answer()
    assert status == 200
    check(json.loads(body))
    overlay.close()
