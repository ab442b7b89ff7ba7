"""Build the node's block store from its settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ButterConfigError
from ._base import BlockStore
from ._memory import MemoryBlockStore
from ._sqlite import DEFAULT_FILENAME, SqliteBlockStore

if TYPE_CHECKING:
    from ..settings import StoreSettings

__all__ = ["open_store"]


def open_store(settings: StoreSettings, *, data_dir: Path | None, default_capacity: int) -> BlockStore:
    """Open the block store ``settings.driver`` names.

    * ``capacity``: ``settings.capacity`` bytes, or ``default_capacity`` bytes when unset.
    * ``memory``: an in-process dict; nothing survives the process.
    * ``sqlite``: the file ``settings.path`` (relative paths are relative to the working directory), by
      default ``<data_dir>/blocks.sqlite3``; durable across restarts and process kills.

    Synchronous, so a node can build its store in its constructor: opening an SQLite store opens the file
    and sums the bytes it holds once, in the caller's thread. Close the store with ``await store.aclose()``.

    Raises :class:`~butter.errors.ButterConfigError` for an unknown driver, an sqlite store with neither
    ``path`` nor ``data_dir``, or a file that cannot be opened.
    """
    capacity = int(settings.capacity) if settings.capacity is not None else int(default_capacity)
    if capacity < 0:
        raise ButterConfigError(f"store.capacity must be at least 0 bytes, got {capacity}")
    if settings.driver == "memory":
        return MemoryBlockStore(capacity)
    if settings.driver == "sqlite":
        if settings.path is not None:
            path = Path(settings.path)
        elif data_dir is not None:
            path = Path(data_dir) / DEFAULT_FILENAME
        else:
            raise ButterConfigError("store.driver sqlite needs store.path or data_dir to know where its file goes")
        return SqliteBlockStore(path, capacity)
    raise ButterConfigError(f"unknown store driver {settings.driver!r}; choose memory or sqlite")
