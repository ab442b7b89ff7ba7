"""Local block stores : ``memory`` (default) and ``sqlite`` (durable).

Every store implements :class:`BlockStore`: it verifies blocks against their addresses when they go in and
when they come out, and it counts capacity, ``used`` and ``free`` in bytes of block data, never letting
``free`` go negative or wrap. Open the node's store from its settings with :func:`open_store`.
"""

from ._base import BlockStore as BlockStore
from ._memory import MemoryBlockStore as MemoryBlockStore
from ._open import open_store as open_store
from ._sqlite import DEFAULT_FILENAME as DEFAULT_FILENAME
from ._sqlite import SqliteBlockStore as SqliteBlockStore

__all__ = ["DEFAULT_FILENAME", "BlockStore", "MemoryBlockStore", "SqliteBlockStore", "open_store"]
