"""This node's replicas in its block store: which group uses which block, the scan that resumes groups after a
restart, and the rolling scrub that finds blocks gone from the store.

* Blocks shared by several items are stored once and deleted only when no group on this node uses them.
* :meth:`LocalReplicas.scan` reads the whole store in batches (:meth:`~butter.store.BlockStore.get_many`:
  one worker-thread hop per ``SCAN_BATCH`` blocks rather than two per block), so resuming thousands of items
  takes a fraction of a second; every block is verified as it is read, and a corrupted one is deleted by the
  store, so it shows up as missing.
* :meth:`LocalReplicas.scrub` re-reads the next ``count`` blocks in use, round after round (a pass over all
  of them, then the next pass): a block deleted because it was found corrupted when read (by a peer's
  ``fetch-block``, say) or by the scrub itself, or gone for any other reason, is reported so that it is
  repaired.
* :class:`Fetcher` gets blocks from the other members (a recruit's download, a repair), each verified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import anyio

from butter.blocks import Manifest
from butter.errors import BlockCorrupted, ButterError, RouteError
from butter.pacing import PeerWindows
from butter.peers import PeerAddress
from butter.slots import NodeServices
from butter.store import BlockStore

__all__ = ["Fetcher", "LocalReplicas", "StoredItem"]

log = logging.getLogger("butter.pcg")

SCAN_BATCH = 256  # blocks read per store call while scanning (1 MiB with 4 KiB blocks)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item found in the store: its ``content_id``, ``manifest``, ``size`` in bytes (manifest included) and
    the ids of its blocks that are not in the store (``missing``; empty when the item is whole)."""

    content_id: str
    manifest: Manifest
    size: int
    missing: frozenset[str]


class LocalReplicas:
    """The blocks of this node's groups in ``store`` (module docstring)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        # block id -> the content id using it, or the set of them when several do (most blocks have one user:
        # a set per block cost 216 bytes beside each 4 KiB block)
        self._users: dict[str, str | set[str]] = {}
        self._blocks: dict[str, tuple[str, ...]] = {}  # content id -> its distinct block ids, manifest first
        self._pass: list[str] = []  # block ids still to scrub in this pass, the next one last

    def users(self, block_id: str) -> set[str]:
        """The content ids of this node's groups that use ``block_id``."""
        found = self._users.get(block_id)
        if found is None:
            return set()
        return {found} if isinstance(found, str) else set(found)

    def add(self, content_id: str, manifest: Manifest) -> None:
        """Count the manifest and blocks of ``content_id`` as used by its group."""
        if content_id in self._blocks:
            return
        block_ids = tuple(dict.fromkeys([content_id, *manifest.blocks]))
        self._blocks[content_id] = block_ids
        for block_id in block_ids:
            found = self._users.get(block_id)
            if found is None:
                self._users[block_id] = content_id
            elif isinstance(found, str):
                self._users[block_id] = {found, content_id}
            else:
                found.add(content_id)

    async def remove(self, content_id: str) -> None:
        """The group of ``content_id`` is gone: delete its blocks that no other group uses."""
        for block_id in self._blocks.pop(content_id, ()):
            found = self._users.get(block_id)
            if isinstance(found, set):
                found.discard(content_id)
                if len(found) == 1:
                    self._users[block_id] = next(iter(found))
            elif found == content_id:
                del self._users[block_id]
                await self.store.delete(block_id)

    async def scan(self) -> list[StoredItem]:
        """Every item whose manifest is in the store (each block read and verified once)."""
        block_ids = await self.store.block_ids()
        present: set[str] = set()
        manifests: list[tuple[str, Manifest, int]] = []
        for start in range(0, len(block_ids), SCAN_BATCH):
            for block_id, data in (await self.store.get_many(block_ids[start : start + SCAN_BATCH])).items():
                present.add(block_id)
                try:
                    manifests.append((block_id, Manifest.decode(data), len(data)))
                except ButterError:
                    continue  # a data block
        return [
            StoredItem(cid, manifest, length + manifest.size, frozenset(b for b in manifest.blocks if b not in present))
            for cid, manifest, length in manifests
        ]

    async def scrub(self, count: int) -> list[str]:
        """Read the next ``count`` blocks in use; returns those gone from the store (corrupted ones included:
        the store deletes them as it reads them)."""
        if count <= 0 or not self._users:
            return []
        if not self._pass:
            self._pass = list(reversed(self._users))
        batch = [self._pass.pop() for _ in range(min(count, len(self._pass)))]
        found = await self.store.get_many(batch)
        return [block_id for block_id in batch if block_id not in found and block_id in self._users]


class Fetcher:
    """Blocks from other members through ``node``: ``timeout`` seconds per block and source, ``concurrency``
    blocks at once per job, and each request inside its source's window (``windows``, shared by every job)."""

    def __init__(self, node: NodeServices, windows: PeerWindows, timeout: float, concurrency: int) -> None:
        self.node, self.windows, self.timeout, self.concurrency = node, windows, timeout, concurrency

    async def blocks(self, block_ids: list[str], sources: list[PeerAddress]) -> dict[str, bytes]:
        """The blocks (each verified) that some source could provide; the others are left out. At most
        ``concurrency`` tasks run, each taking the next block id when done with one: a job over thousands of
        blocks holds ``concurrency`` tasks, not one per block waiting its turn."""
        fetched: dict[str, bytes] = {}
        work = iter(block_ids)

        async def worker() -> None:
            for block_id in work:
                try:
                    fetched[block_id] = await self.block(block_id, sources)
                except RouteError:
                    pass

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, len(block_ids))):
                tg.start_soon(worker)
        return fetched

    async def block(self, block_id: str, sources: list[PeerAddress]) -> bytes:
        """The block from the first source that has it, verified. Raises :class:`~butter.errors.RouteError`
        ``fetch-failed`` when none could provide it."""
        for source in sources:
            try:
                return await self.windows.call(
                    source, partial(self.node.fetch_block, source, block_id, timeout=self.timeout))
            except BlockCorrupted:
                log.warning("block %s from %s failed verification; trying another member", block_id[:12], source)
            except ButterError:
                continue
        raise RouteError("fetch-failed", f"no member could provide block {block_id[:12]}")
