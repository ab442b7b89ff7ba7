"""The tracker's database: SQLite (a file, no server) or PostgreSQL (psycopg 3), same schema, blocking calls.

URLs: ``sqlite:PATH`` (``sqlite:/var/lib/butter/tracker.db``, ``sqlite:tracker.db``) or
``postgresql://user@host:port/dbname`` (any libpq URL; ``postgres://`` too). :func:`open_database` connects,
then creates or migrates the schema under a lock (many nodes may open one database at once). The calls block:
the tracker makes them from a worker thread, never from the node's event loop.

Tables (schema version 1; ``butter_schema`` holds the version):

* ``butter_nodes``: one row per node, its latest snapshot (``snapshot``: the whole of it as JSON).
* ``butter_links``: ``node_id`` knows ``peer_id`` (at ``peer_address``, with that peer's quality record).
* ``butter_groups``: ``node_id`` keeps ``content_id`` with the group's ``state``, replicas, target, members.
* ``butter_snapshots``: the history, one row per snapshot (known hosts, items, counters as JSON); rows older
  than ``history_expiry`` seconds are deleted as the node writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from butter.errors import ButterConfigError

from ._snapshot import Snapshot

__all__ = ["SCHEMA_VERSION", "Database", "open_database"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        "CREATE TABLE butter_nodes (node_id TEXT PRIMARY KEY, address TEXT NOT NULL, updated_at DOUBLE PRECISION "
        "NOT NULL, uptime DOUBLE PRECISION NOT NULL, storage BIGINT NOT NULL, known_by INTEGER NOT NULL, "
        "items INTEGER NOT NULL, snapshot TEXT NOT NULL)",
        "CREATE TABLE butter_links (node_id TEXT NOT NULL, peer_id TEXT NOT NULL, peer_address TEXT NOT NULL, "
        "peer_uptime DOUBLE PRECISION NOT NULL, peer_storage BIGINT NOT NULL, peer_known_hosts INTEGER NOT NULL, "
        "peer_known_by INTEGER NOT NULL, PRIMARY KEY (node_id, peer_id))",
        "CREATE TABLE butter_groups (node_id TEXT NOT NULL, content_id TEXT NOT NULL, state TEXT NOT NULL, "
        "replicas INTEGER NOT NULL, target INTEGER NOT NULL, members TEXT NOT NULL, PRIMARY KEY (node_id, content_id))",
        "CREATE TABLE butter_snapshots (node_id TEXT NOT NULL, taken_at DOUBLE PRECISION NOT NULL, "
        "known_hosts INTEGER NOT NULL, items INTEGER NOT NULL, counters TEXT NOT NULL)",
        "CREATE INDEX butter_snapshots_node ON butter_snapshots (node_id, taken_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
PG_LOCK = 0x6275_7474  # advisory lock id held while migrating ("butt")


class Database(Protocol):
    """A connected, migrated tracker database (blocking calls; see the module docstring)."""

    def write(self, snapshot: Snapshot, *, history_expiry: float) -> None:
        """Store ``snapshot`` as its node's latest, in one transaction; drop its history older than
        ``history_expiry`` seconds. Raises the driver's error when the database fails."""

    def latest(self, *, max_age: float | None = None) -> list[Snapshot]:
        """Every node's latest snapshot (those written in the last ``max_age`` seconds when given)."""

    def close(self) -> None: ...


class _SqlDatabase:
    """The SQL shared by both backends, written with ``%s`` placeholders (sqlite's ``?`` substituted)."""

    placeholder = "%s"

    def __init__(self, connection: Any) -> None:
        self._conn = connection

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "%s" else text.replace("%s", self.placeholder)

    def _execute(self, cursor: Any, text: str, params: Sequence[Any] = ()) -> None:
        cursor.execute(self._sql(text), params)

    def migrate(self) -> None:
        with self._transaction() as cur:
            self._lock(cur)
            self._execute(cur, "CREATE TABLE IF NOT EXISTS butter_schema (version INTEGER NOT NULL)")
            self._execute(cur, "SELECT version FROM butter_schema")
            row = cur.fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise ButterConfigError(f"tracker database has schema version {version}, newer than this "
                                        f"butter-observe's {SCHEMA_VERSION}")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    self._execute(cur, statement)
            if row is None:
                self._execute(cur, "INSERT INTO butter_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            else:
                self._execute(cur, "UPDATE butter_schema SET version = %s", (SCHEMA_VERSION,))

    def _lock(self, cursor: Any) -> None:
        """Serialise migrations between connections (sqlite: ``BEGIN IMMEDIATE`` already does)."""

    def write(self, snapshot: Snapshot, *, history_expiry: float) -> None:
        s = snapshot
        with self._transaction() as cur:
            self._execute(
                cur,
                "INSERT INTO butter_nodes (node_id, address, updated_at, uptime, storage, known_by, items, snapshot) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (node_id) DO UPDATE SET address = "
                "excluded.address, updated_at = excluded.updated_at, uptime = excluded.uptime, storage = "
                "excluded.storage, known_by = excluded.known_by, items = excluded.items, snapshot = excluded.snapshot",
                (s.node_id, s.address, s.taken_at, s.uptime, s.available_storage, s.known_by, s.items,
                 json.dumps(s.to_wire())),
            )
            self._execute(cur, "DELETE FROM butter_links WHERE node_id = %s", (s.node_id,))
            cur.executemany(self._sql(
                "INSERT INTO butter_links (node_id, peer_id, peer_address, peer_uptime, peer_storage, "
                "peer_known_hosts, peer_known_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"),
                [(s.node_id, h.node_id, h.address, h.uptime, h.available_storage, h.known_hosts, h.known_by)
                 for h in s.hosts],
            )
            self._execute(cur, "DELETE FROM butter_groups WHERE node_id = %s", (s.node_id,))
            cur.executemany(self._sql(
                "INSERT INTO butter_groups (node_id, content_id, state, replicas, target, members) "
                "VALUES (%s, %s, %s, %s, %s, %s)"),
                [(s.node_id, g.content_id, g.state, g.replicas, g.target, json.dumps(g.members)) for g in s.groups],
            )
            self._execute(
                cur, "INSERT INTO butter_snapshots (node_id, taken_at, known_hosts, items, counters) "
                "VALUES (%s, %s, %s, %s, %s)", (s.node_id, s.taken_at, len(s.hosts), s.items, json.dumps(s.counters)),
            )
            self._execute(cur, "DELETE FROM butter_snapshots WHERE node_id = %s AND taken_at < %s",
                          (s.node_id, s.taken_at - history_expiry))

    def latest(self, *, max_age: float | None = None) -> list[Snapshot]:
        with self._transaction() as cur:
            if max_age is None:
                self._execute(cur, "SELECT snapshot FROM butter_nodes ORDER BY node_id")
            else:
                self._execute(cur, "SELECT snapshot FROM butter_nodes WHERE updated_at >= "
                              "(SELECT MAX(updated_at) FROM butter_nodes) - %s ORDER BY node_id", (max_age,))
            return [Snapshot.read(json.loads(row[0]), "snapshot") for row in cur.fetchall()]

    def close(self) -> None:
        self._conn.close()


class SqliteDatabase(_SqlDatabase):
    placeholder = "?"

    def __init__(self, path: Path) -> None:
        # check_same_thread=False: the tracker calls from whichever worker thread anyio gives it, one call at a time
        connection = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")  # readers (butter graph) do not block the writers
        super().__init__(connection)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


class PostgresDatabase(_SqlDatabase):
    def __init__(self, url: str, *, connect_timeout: float) -> None:
        try:
            import psycopg
        except ImportError:
            raise ButterConfigError(
                "a postgresql:// tracker URL needs psycopg: pip install 'butter-observe[postgresql]'"
            ) from None
        super().__init__(psycopg.connect(url, connect_timeout=max(1, round(connect_timeout)), autocommit=True))

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def _lock(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))


def check_url(url: str) -> str:
    """``url`` if it names a backend this module knows, else raise ``ValueError`` saying which ones do."""
    if url.startswith(("sqlite:", "postgresql://", "postgres://")) and url != "sqlite:":
        return url
    raise ValueError(f"tracker URL {url!r}: use sqlite:PATH or postgresql://USER@HOST:PORT/DBNAME")


def open_database(url: str, *, connect_timeout: float = 5.0) -> Database:
    """Connect to the database ``url`` names and create or migrate its schema (blocking).

    Raises ``ValueError`` for a URL of no known backend, :class:`~butter.errors.ButterConfigError` when
    psycopg is missing or the schema is newer than this code, and the driver's own errors
    (``sqlite3.Error``, ``psycopg.Error``) when the database cannot be reached."""
    check_url(url)
    database: _SqlDatabase
    if url.startswith("sqlite:"):
        database = SqliteDatabase(Path(url.removeprefix("sqlite:")))
    else:
        database = PostgresDatabase(url, connect_timeout=connect_timeout)
    try:
        database.migrate()
    except BaseException:
        database.close()
        raise
    return database
