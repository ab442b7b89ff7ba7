"""The tracker on real nodes (memory transport) writing to a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

import butter
from butter.errors import ButterConfigError
from butter.testing.overlay import wait_for
from butter_observe import SCHEMA_VERSION, Snapshot, Tracker, open_database

from .conftest import MakeSettings, Postgres, observer, overlay

pytestmark = pytest.mark.anyio

FAST = {"tracker_interval": 0.2, "tracker_write_timeout": 5.0}


def latest(url: str) -> list[Snapshot]:
    database = open_database(url)
    try:
        return database.latest()
    finally:
        database.close()


async def tracked_overlay_leaves_its_picture(make: MakeSettings, url: str) -> None:
    """Three nodes with PCG: one item stored; the database ends up with every node, its known hosts and the
    item's group."""
    async with overlay(make, 3, {"tracker_url": url, **FAST}) as nodes:
        content_id = await nodes[0].store(os.urandom(2000))

        def pictured() -> bool:
            snapshots = latest(url)
            return (len(snapshots) == 3 and all(len(s.hosts) == 2 for s in snapshots)
                    and sum(1 for s in snapshots for g in s.groups if g.content_id == content_id) == 3)

        with anyio.fail_after(20):
            while not await anyio.to_thread.run_sync(pictured):
                await anyio.sleep(0.1)
        tracker = observer(nodes[0]).tracker
        assert tracker is not None and tracker.stats.written >= 1 and tracker.stats.failures == 0
    snapshots = latest(url)
    ids = {n.node_id for n in nodes}
    assert {s.node_id for s in snapshots} == ids
    assert all({h.node_id for h in s.hosts} == ids - {s.node_id} for s in snapshots)
    group = next(g for s in snapshots for g in s.groups if g.content_id == content_id)
    assert group.state in ("cold", "goldilocks", "hot") and group.target == 3
    assert any("PcgPersistence" in s.counters for s in snapshots)


async def test_sqlite_file(memory_settings: MakeSettings, tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    await tracked_overlay_leaves_its_picture(memory_settings, f"sqlite:{path}")
    with sqlite3.connect(path) as conn:  # the tables are plain SQL for whoever wants to look
        assert conn.execute("SELECT version FROM butter_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT COUNT(*) FROM butter_links").fetchone() == (6,)
        assert conn.execute("SELECT COUNT(DISTINCT node_id) FROM butter_snapshots").fetchone() == (3,)


async def test_postgresql(memory_settings: MakeSettings, postgres: Postgres) -> None:
    url = await anyio.to_thread.run_sync(postgres.create_database)
    await tracked_overlay_leaves_its_picture(memory_settings, url)
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM butter_links").fetchone() == (6,)


async def test_the_node_keeps_serving_while_the_database_is_dead(
    memory_settings: MakeSettings, postgres: Postgres
) -> None:
    url = await anyio.to_thread.run_sync(postgres.create_database)
    async with overlay(memory_settings, 2, {"tracker_url": url, **FAST}, pcg=False) as (a, b):
        tracker = observer(a).tracker
        assert tracker is not None
        await wait_for(lambda: tracker.stats.written >= 2, "two snapshots written")
        await anyio.to_thread.run_sync(postgres.stop)
        try:
            failures = tracker.stats.failures
            for _ in range(20):  # the node answers at once while its tracker fails and backs off
                with anyio.fail_after(2):
                    await b.request(a.address, "ping")
                await anyio.sleep(0.1)
            await wait_for(lambda: tracker.stats.failures > failures, "a failed write counted")
            written = tracker.stats.written
        finally:
            await anyio.to_thread.run_sync(postgres.start)
        await wait_for(lambda: tracker.stats.written > written, "a write after the restart and the backoff")
        assert tracker.stats.connects >= 2


class Stuck:
    """A database whose writes hang: the queue must stay bounded and count its drops."""

    def __init__(self) -> None:
        self.release = False

    def write(self, snapshot: Snapshot, *, history_expiry: float) -> None:
        import time

        while not self.release:
            time.sleep(0.01)

    def latest(self, *, max_age: float | None = None) -> list[Snapshot]:
        return []

    def close(self) -> None:
        self.release = True


async def test_a_stuck_database_costs_drops_not_memory(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as node:
        stuck = Stuck()
        tracker = Tracker(node, "stuck:", interval=0.02, queue=4, write_timeout=60, connect=lambda url: stuck)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tracker.run)
            await wait_for(lambda: tracker.stats.dropped >= 5, "five snapshots dropped")
            assert len(tracker._queue) == 4
            with anyio.fail_after(2):
                await node.request(node.address, "ping")
            tg.cancel_scope.cancel()
        stuck.release = True
        assert tracker.stats.written == 0 and tracker.stats.taken >= 9


class Slow:
    """A database whose first write runs until ``proceed`` is set; it notes a close that comes while a write
    runs (on a sqlite3 connection that can crash the interpreter)."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.proceed = threading.Event()
        self.closed = threading.Event()
        self.closed_while_writing = False

    def write(self, snapshot: Snapshot, *, history_expiry: float) -> None:
        self.writing.set()
        self.proceed.wait(timeout=60)
        self.writing.clear()

    def latest(self, *, max_age: float | None = None) -> list[Snapshot]:
        return []

    def close(self) -> None:
        self.closed_while_writing |= self.writing.is_set()
        self.closed.set()


async def test_an_abandoned_write_closes_its_connection_only_when_it_returns(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as node:
        slow = Slow()
        tracker = Tracker(node, "slow:", interval=0.05, write_timeout=0.2, connect=lambda url: slow)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tracker.run)
            await wait_for(lambda: tracker.stats.failures >= 1, "the slow write timed out")
            assert slow.writing.is_set() and not slow.closed.is_set()  # still running: not closed under it
            tg.cancel_scope.cancel()
        slow.proceed.set()
        await wait_for(slow.closed.is_set, "closed once the write returned")
        assert not slow.closed_while_writing


async def test_a_bad_url_is_refused_at_start(memory_settings: MakeSettings) -> None:
    with pytest.raises(ButterConfigError, match="tracker_url"):
        async with butter.open_node(memory_settings(plugins={"observe": {"tracker_url": "mysql://x"}})):
            pass


async def test_an_unknown_observer_is_refused(memory_settings: MakeSettings) -> None:
    with pytest.raises(ButterConfigError, match="not installed"):
        async with butter.open_node(memory_settings(plugins={"nosuch": {}})):
            pass
