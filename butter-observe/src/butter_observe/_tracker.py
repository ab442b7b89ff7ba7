"""The tracker: every ``interval`` seconds (jittered ±20 %) a snapshot of the node goes to a database.

It never blocks or breaks its node. Snapshots are taken on the node's event loop (no I/O) and put in a
bounded queue (``queue`` snapshots; when full the oldest is dropped and counted); one writer task empties it,
each database call in a worker thread bounded by ``write_timeout`` seconds. A failed connection or write
closes the connection and retries with exponential backoff (1 s doubling to 60 s, jittered); the snapshot
that failed stays first in the queue. Drops and failures are logged at most once per interval, as one
warning with the counts since the last.

A database call that outlives its ``write_timeout``, or the node's stop, is abandoned in its thread (it cannot
be interrupted). The connection is then closed by whichever side is last to use it (:class:`_Connection`):
closing a sqlite3 connection while another thread runs a statement on it can crash the interpreter.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import anyio

from butter.slots import NodeServices

from ._database import Database, open_database
from ._snapshot import Snapshot, take_snapshot

__all__ = ["Tracker", "TrackerStats"]

log = logging.getLogger("butter.observe.tracker")

JITTER = 0.2  # intervals are drawn uniformly within ±20 % of the configured one
INITIAL_BACKOFF = 1.0  # seconds before the first reconnection attempt
MAX_BACKOFF = 60.0  # seconds; the backoff doubles up to this


@dataclass(slots=True)
class TrackerStats:
    """Counts since start: ``taken`` snapshots, ``written``, ``dropped`` (queue full), ``failures`` (failed
    connections or writes) and ``connects`` (successful connections)."""

    taken: int = 0
    written: int = 0
    dropped: int = 0
    failures: int = 0
    connects: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Connection:
    """A connected :class:`Database` used by one worker thread at a time (:meth:`call`, in the thread) and closed
    from the event loop (:meth:`close`, which never waits): if a call is still running (abandoned by a
    timeout or a cancellation), the calling thread closes the connection when the call returns."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()  # held while a call runs, and while closing
        self._closing = False
        self._closed = False

    def call(self, function: Callable[[Database], None]) -> None:
        """Run ``function(database)`` (blocking; in a worker thread). Raises what it raises, or
        ``RuntimeError`` when the connection is being closed."""
        try:
            with self._lock:
                if self._closing:
                    raise RuntimeError("the tracker's database connection is closed")
                function(self.database)
        finally:
            self._close_if_asked()

    def close(self) -> None:
        """Close now if no call runs, else once it returns (then in its thread)."""
        self._closing = True
        self._close_if_asked()

    def _close_if_asked(self) -> None:
        if self._closing and self._lock.acquire(blocking=False):
            try:
                if not self._closed:
                    self._closed = True
                    self.database.close()
            except Exception as exc:
                log.debug("tracker: closing the database connection: %s: %s", type(exc).__name__, exc)
            finally:
                self._lock.release()


class Tracker:
    """Writes ``node``'s snapshots to the database at ``url`` (see the module docstring); :meth:`run` until
    cancelled. ``connect`` opens the database (blocking; tests substitute it)."""

    def __init__(
        self,
        node: NodeServices,
        url: str,
        *,
        interval: float = 10.0,
        queue: int = 16,
        write_timeout: float = 30.0,
        history_expiry: float = 86400.0,
        connect: Callable[[str], Database] = open_database,
    ) -> None:
        self.node = node
        self.url = url
        self.interval = interval
        self.write_timeout = write_timeout
        self.history_expiry = history_expiry
        self.stats = TrackerStats()
        self._connect = connect
        self._queue: deque[Snapshot] = deque(maxlen=queue)
        self._wakeup = anyio.Event()
        self._database: _Connection | None = None
        self._reported = TrackerStats()  # the counts at the last warning

    async def run(self) -> None:
        """Take snapshots and write them until cancelled; the connection is closed then."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_all)
                while True:
                    self.sample()
                    await anyio.sleep(self.interval * random.uniform(1 - JITTER, 1 + JITTER))
                    self._report()
        finally:
            self._close()

    def sample(self) -> None:
        """Take a snapshot now and queue it (dropping the oldest queued one when the queue is full)."""
        if len(self._queue) == self._queue.maxlen:
            self.stats.dropped += 1
        self._queue.append(take_snapshot(self.node))
        self.stats.taken += 1
        self._wakeup.set()

    async def _write_all(self) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            while self._queue:
                snapshot = self._queue[0]
                try:
                    await self._write(snapshot)
                except Exception as exc:
                    self.stats.failures += 1
                    log.debug("tracker %s: %s: %s", self.url, type(exc).__name__, exc)
                    self._close()
                    await anyio.sleep(backoff * random.uniform(1 - JITTER, 1 + JITTER))
                    backoff = min(2 * backoff, MAX_BACKOFF)
                    continue
                backoff = INITIAL_BACKOFF
                self.stats.written += 1
                if self._queue and self._queue[0] is snapshot:
                    self._queue.popleft()

    async def _write(self, snapshot: Snapshot) -> None:
        with anyio.fail_after(self.write_timeout):
            if self._database is None:
                database = await anyio.to_thread.run_sync(self._connect, self.url, abandon_on_cancel=True)
                self._database = _Connection(database)
                self.stats.connects += 1
                log.info("tracker: node %s writes to %s", self.node.node_id[:8], self.url)
            connection = self._database

            def write(database: Database) -> None:
                database.write(snapshot, history_expiry=self.history_expiry)

            await anyio.to_thread.run_sync(connection.call, write, abandon_on_cancel=True)

    def _close(self) -> None:
        connection, self._database = self._database, None
        if connection is not None:
            connection.close()

    def _report(self) -> None:
        """Warn once per interval when snapshots were dropped or writes failed since the last warning."""
        dropped = self.stats.dropped - self._reported.dropped
        failures = self.stats.failures - self._reported.failures
        if dropped or failures:
            log.warning(
                "tracker: node %s: %d snapshot(s) dropped, %d failed connection(s) or write(s) to %s since the "
                "last report; retrying with backoff", self.node.node_id[:8], dropped, failures, self.url,
            )
        self._reported = TrackerStats(**self.stats.as_dict())
