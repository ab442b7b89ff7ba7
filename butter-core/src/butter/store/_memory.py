"""The ``memory`` block store (the default): a dict bounded by a capacity in bytes. Nothing survives the
process; use ``sqlite`` for durability."""

from __future__ import annotations

import logging

from ..blocks import BlockId, verify
from ..errors import StoreError
from ._base import check_block, check_capacity, check_room

__all__ = ["MemoryBlockStore"]

log = logging.getLogger("butter.store")


class MemoryBlockStore:
    """A :class:`~butter.store.BlockStore` in a dict. ``capacity`` is in bytes of block data (>= 0).

    Every method completes without yielding to other tasks, so checks and updates are atomic.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = check_capacity(capacity)
        self._blocks: dict[BlockId, bytes] = {}
        self._used = 0
        self._closed = False

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
        self._check_open()
        data = bytes(data)
        check_block(address, data)
        if address in self._blocks:
            return False
        check_room(len(data), self._capacity, self._used)
        self._blocks[address] = data
        self._used += len(data)
        return True

    async def get(self, address: BlockId) -> bytes | None:
        self._check_open()
        data = self._blocks.get(address)
        if data is None:
            return None
        if not verify(address, data):
            log.warning("block %s is corrupted in the memory store; deleted", address)
            del self._blocks[address]
            # Its length may have changed with its content: recount rather than guess (rare path).
            self._used = sum(len(block) for block in self._blocks.values())
            return None
        return data

    async def has(self, address: BlockId) -> bool:
        self._check_open()
        return address in self._blocks

    async def delete(self, address: BlockId) -> None:
        self._check_open()
        self._remove(address)

    async def block_ids(self) -> list[BlockId]:
        self._check_open()
        return sorted(self._blocks)

    async def aclose(self) -> None:
        self._closed = True
        self._blocks.clear()
        self._used = 0

    async def __aenter__(self) -> MemoryBlockStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _remove(self, address: BlockId) -> None:
        data = self._blocks.pop(address, None)
        if data is not None:
            self._used = max(0, self._used - len(data))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory block store is closed")

    def __repr__(self) -> str:
        return f"MemoryBlockStore(blocks={len(self._blocks)}, used={self._used}, capacity={self._capacity})"
