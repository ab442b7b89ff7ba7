"""The ``single`` persistence driver (entry point ``butter.persistence:single``): one copy per item.

An item stays in the block store of the node that stored it, and only there: nothing is replicated,
repaired or handed off, so the item is lost when that node goes: the naive baseline the churn simulator
compares PCG with. It sends no message of its own; peers fetch the item's blocks from it
on the core ``fetch-block`` route, as from any holder.

Capabilities (:mod:`butter.capabilities`): :class:`~butter.capabilities.ItemHolders` (a kept item's only
holder is this node), :class:`~butter.capabilities.KeptItems` and :class:`~butter.capabilities.Counters`
(``items_kept``, ``keeps_refused``). After a restart with a durable store, every complete item found in the
store is kept again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import anyio
from anyio.abc import TaskStatus

from .blocks import Manifest, load_manifest
from .errors import ButterError, IncompleteItem
from .hookspecs import hookimpl
from .peers import PeerAddress
from .slots import NodeServices
from .store import BlockStore

__all__ = ["SinglePersistence", "SinglePersistencePlugin"]

log = logging.getLogger("butter.persistence.single")


async def _missing_blocks(store: BlockStore, manifest: Manifest) -> tuple[str, ...]:
    """The item's block ids that ``store`` lacks, in manifest order, each once."""
    return tuple([b for b in dict.fromkeys(manifest.blocks) if not await store.has(b)])


class SinglePersistence:
    """A :class:`~butter.slots.Persistence` keeping each item only where it was stored."""

    def __init__(self, node: NodeServices) -> None:
        self.node = node
        self._kept: set[str] = set()
        self._refused = 0

    # -- Persistence ---------------------------------------------------------------------------------------

    def available_storage(self) -> int:
        """Free bytes of the node's block store."""
        return self.node.blocks.free

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the complete items already in the store (a durable store after a restart), then idle until
        cancelled: there is nothing to maintain."""
        for block_id in await self.node.blocks.block_ids():
            data = await self.node.blocks.get(block_id)
            try:
                manifest = load_manifest(block_id, data) if data is not None else None
            except ButterError:
                continue  # a block that is not a manifest
            if manifest is not None and not await _missing_blocks(self.node.blocks, manifest):
                self._kept.add(block_id)
        if self._kept:
            log.info("keeping %d items found in the store", len(self._kept))
        task_status.started()
        await anyio.sleep_forever()

    async def keep(self, content_id: str) -> None:
        """Keep the item whose manifest and blocks are in the node's store. Raises
        :class:`~butter.errors.IncompleteItem` when the manifest or a block is missing."""
        data = await self.node.blocks.get(content_id)
        missing = (content_id,) if data is None else await _missing_blocks(
            self.node.blocks, load_manifest(content_id, data))
        if missing:
            self._refused += 1
            raise IncompleteItem(missing, f"item {content_id} is not complete in the store")
        self._kept.add(content_id)

    async def hand_off(self) -> None:
        """Nothing: a single copy leaves with its node."""

    # -- capabilities --------------------------------------------------------------------------------------

    def holders(self, content_id: str) -> list[PeerAddress]:
        """``[this node's address]`` for a kept item, else ``[]``."""
        return [self.node.address] if content_id in self._kept else []

    def kept_items(self) -> Collection[str]:
        return frozenset(self._kept)

    def counters(self) -> Mapping[str, int]:
        return {"items_kept": len(self._kept), "keeps_refused": self._refused}


class SinglePersistencePlugin:
    """Entry point ``butter.persistence:single``. It takes no options."""

    @hookimpl
    def butter_persistence(self, node: NodeServices) -> SinglePersistence:
        return SinglePersistence(node)
