"""The ``sqlite`` block store: durable across restarts and across the process being killed.

One table, ``blocks(address TEXT PRIMARY KEY, data BLOB NOT NULL)``, in a database in WAL mode. Each ``put``
is its own transaction, committed before ``put`` returns.

Durability: with ``journal_mode=WAL`` a committed transaction is in the WAL file (at least in the OS page
cache) when the commit returns, so it survives the process crashing or being killed with SIGKILL whatever
the ``synchronous`` setting; SQLite's documentation states this ("transactions are durable across
application crashes regardless of the synchronous setting or journal mode"). ``synchronous=NORMAL`` (the
default here) skips the fsync at each commit, so an operating-system crash or power loss may roll back the
last commits (the database stays consistent). ``synchronous=FULL`` fsyncs the WAL at every commit and
survives those too, at the cost of one fsync per block. Blocks are replicated on peers, so
NORMAL is the default.

sqlite3 calls block, so each runs in a worker thread (``anyio.to_thread.run_sync``) under a
``CapacityLimiter(1)``: the one connection is used by one thread at a time, and every check-then-write
(capacity, duplicates) is atomic. The store assumes it is the only writer of its file.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from ..blocks import BlockId, verify
from ..errors import ButterConfigError, StoreError, map_exceptions
from ._base import check_block, check_capacity, check_room

__all__ = ["DEFAULT_FILENAME", "SqliteBlockStore"]

log = logging.getLogger("butter.store")

DEFAULT_FILENAME = "blocks.sqlite3"
Synchronous = Literal["NORMAL", "FULL"]
T = TypeVar("T")

_SCHEMA = "CREATE TABLE IF NOT EXISTS blocks (address TEXT PRIMARY KEY, data BLOB NOT NULL)"
_USED = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM blocks"


class SqliteBlockStore:
    """A :class:`~butter.store.BlockStore` in an SQLite file at ``path``, created (parent directories
    included) when absent.

    ``capacity`` is in bytes of block data (>= 0); ``used`` is computed from the rows when the store opens.
    A capacity below what is already stored refuses new blocks but deletes nothing. ``synchronous`` is
    ``"NORMAL"`` (default: survives process kills) or ``"FULL"`` (also survives OS crashes and power loss),
    see the module docstring.

    Opening runs in the caller's thread (it opens the file and sums the stored bytes once), so a node can
    build its store in its constructor; every later operation runs in a worker thread. Raises
    :class:`~butter.errors.ButterConfigError` when the file cannot be opened or is not a database.
    """

    def __init__(self, path: Path | str, capacity: int, *, synchronous: Synchronous = "NORMAL") -> None:
        self._path = Path(path)
        self._capacity = check_capacity(capacity)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self._conn: sqlite3.Connection | None
        opening = f"cannot open the sqlite block store {self._path}"
        with map_exceptions({(OSError, sqlite3.Error): ButterConfigError}, opening):
            self._conn, self._used = _connect(self._path, synchronous)
        if self._used > self._capacity:
            log.warning(
                "block store %s holds %d bytes, more than its capacity of %d bytes",
                self._path,
                self._used,
                self._capacity,
            )
        # Created on first use: an anyio limiter belongs to the event loop that runs the store.
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def used(self) -> int:
        return self._used

    @property
    def free(self) -> int:
        return max(0, self._capacity - self._used)

    async def put(self, address: BlockId, data: bytes) -> bool:
        return await self._run(self._put, address, bytes(data))

    async def get(self, address: BlockId) -> bytes | None:
        return await self._run(self._get, address)

    async def has(self, address: BlockId) -> bool:
        return await self._run(self._has, address)

    async def delete(self, address: BlockId) -> None:
        await self._run(self._delete, address)

    async def block_ids(self) -> list[BlockId]:
        return await self._run(self._addresses)

    async def aclose(self) -> None:
        """Close the database (WAL checkpointed by SQLite); pending operations finish first."""
        if self._conn is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._get_limiter())

    async def __aenter__(self) -> SqliteBlockStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SqliteBlockStore({str(self._path)!r}, used={self._used}, capacity={self._capacity})"

    # -- worker-thread side: each runs alone, holding the limiter's only token ---------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise StoreError(f"the sqlite block store {self._path} is closed")
        with map_exceptions({sqlite3.Error: StoreError}, f"sqlite block store {self._path}"):
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._get_limiter())

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return self._limiter

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the sqlite block store {self._path} is closed")
        return self._conn

    def _put(self, address: BlockId, data: bytes) -> bool:
        conn = self._connection()
        check_block(address, data)
        if conn.execute("SELECT 1 FROM blocks WHERE address = ?", (address,)).fetchone() is not None:
            return False
        check_room(len(data), self._capacity, self._used)
        conn.execute("INSERT INTO blocks (address, data) VALUES (?, ?)", (address, data))
        self._used += len(data)
        return True

    def _get(self, address: BlockId) -> bytes | None:
        conn = self._connection()
        row = conn.execute("SELECT data FROM blocks WHERE address = ?", (address,)).fetchone()
        if row is None:
            return None
        data = row[0]
        if isinstance(data, bytes) and verify(address, data):
            return data
        log.warning("block %s is corrupted in %s; deleted", address, self._path)
        conn.execute("DELETE FROM blocks WHERE address = ?", (address,))
        # The row's length may have changed with its content: recount rather than guess (rare path).
        self._used = int(conn.execute(_USED).fetchone()[0])
        return None

    def _has(self, address: BlockId) -> bool:
        conn = self._connection()
        return conn.execute("SELECT 1 FROM blocks WHERE address = ?", (address,)).fetchone() is not None

    def _delete(self, address: BlockId) -> None:
        conn = self._connection()
        row = conn.execute("SELECT LENGTH(data) FROM blocks WHERE address = ?", (address,)).fetchone()
        if row is None:
            return
        conn.execute("DELETE FROM blocks WHERE address = ?", (address,))
        self._used = max(0, self._used - int(row[0]))

    def _addresses(self) -> list[BlockId]:
        conn = self._connection()
        return [row[0] for row in conn.execute("SELECT address FROM blocks ORDER BY address")]

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _connect(path: Path, synchronous: Synchronous) -> tuple[sqlite3.Connection, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit, so each statement is its own transaction, committed when it returns.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL could not be enabled")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(_SCHEMA)
        used = int(conn.execute(_USED).fetchone()[0])
    except BaseException:
        conn.close()
        raise
    return conn, used
