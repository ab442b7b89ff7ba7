"""The :class:`BlockStore` protocol every local block store implements, and checks they share.

A block store keeps blocks on this node, bounded by a capacity in bytes (counted in
bytes of block data and never allowed to wrap). It verifies every block on the way in and on the way out,
and does no reference counting: which blocks to keep is the persistence layer's decision.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..blocks import BlockId, verify
from ..errors import BlockCorrupted, StoreFull

__all__ = ["BlockStore"]


@runtime_checkable
class BlockStore(Protocol):
    """Local storage for blocks, keyed by address (hex SHA-256 of the data).

    * ``put(address, data)``: verify ``data`` against ``address``, then keep it. Returns ``True`` when the
      block was added, ``False`` when it was already there (nothing changes, nothing is counted twice).
      Raises :class:`~butter.errors.BlockCorrupted` on a mismatch and :class:`~butter.errors.StoreFull`
      when ``len(data)`` exceeds :attr:`free`; either way nothing is stored. Once ``put`` returns, the block
      is stored (for a durable store: it survives the process being killed).
    * ``get(address)``: the verified bytes, or ``None`` when absent. A block that no longer matches its
      address is deleted, logged as a warning and reported as ``None``: corrupted data is never returned.
    * ``has(address)``, ``delete(address)`` (absent: no-op), ``block_ids()`` (every stored block id, sorted).
    * ``capacity``, ``used`` and ``free`` (``max(0, capacity - used)``), in bytes of block data.
    * ``aclose()``: release resources; calling it twice is harmless. Other methods then raise
      :class:`~butter.errors.StoreError`, as they do for I/O failures.
    """

    @property
    def capacity(self) -> int: ...

    @property
    def used(self) -> int: ...

    @property
    def free(self) -> int: ...

    async def put(self, address: BlockId, data: bytes) -> bool: ...

    async def get(self, address: BlockId) -> bytes | None: ...

    async def has(self, address: BlockId) -> bool: ...

    async def delete(self, address: BlockId) -> None: ...

    async def block_ids(self) -> list[BlockId]: ...

    async def aclose(self) -> None: ...


def check_block(address: BlockId, data: bytes) -> None:
    """Raise :class:`BlockCorrupted` unless ``data`` hashes to ``address``."""
    if not verify(address, data):
        raise BlockCorrupted(address, f"refusing to store block: data does not match address {address!r:.80}")


def check_room(needed: int, capacity: int, used: int) -> None:
    """Raise :class:`StoreFull` unless ``needed`` more bytes fit in ``capacity`` with ``used`` taken."""
    free = max(0, capacity - used)
    if needed > free:
        raise StoreFull(needed=needed, free=free)


def check_capacity(capacity: int) -> int:
    """A capacity must be a non-negative number of bytes; returns it as an ``int``."""
    capacity = int(capacity)
    if capacity < 0:
        raise ValueError(f"store capacity must be at least 0 bytes, got {capacity}")
    return capacity
