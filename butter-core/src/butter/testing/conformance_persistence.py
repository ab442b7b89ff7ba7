"""The persistence conformance kit: checks every :class:`butter.slots.Persistence` driver must pass.

The kit builds the overlay itself, as the retrieval kit does (its :class:`~.conformance_retrieval.Overlay`):
``size`` real nodes on a private :class:`~butter.testing.MemoryNetwork`, every one knowing every other (the
kit's pinned host manager), all running the driver under test, selected by its entry-point name. "Held" is
ground truth, as in the churn simulator: a node holds an item when its block store has the manifest and
every block, whatever the driver says. No retrieval runs unless one is named. A persistence author only
names the driver, with options that make its timers short (the checks use real time, on asyncio and trio;
none needs trio's ``MockClock``)::

    import pytest
    from butter.testing.conformance_persistence import PERSISTENCE_CHECKS, PersistenceFactory

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", PERSISTENCE_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check):
        await check(PersistenceFactory("pcg", {"heartbeat_interval": 0.2, "request_timeout": 1.0}))

What the checks hold a driver to, beyond the slot's docstring:

* after ``node.store(data)`` the item is held by at least ``replicas`` live nodes within ``bound``, each
  copy byte for byte;
* when a holder dies abruptly (``aclose(graceful=False)``, as a crash) the item is still held by a live
  node, comes back byte for byte (from a survivor's block store, and through ``node.retrieve`` on a
  non-holder when a ``retrieval`` driver is named), and is held by ``replicas`` live nodes again within
  ``bound``;
* graceful exit (``aclose()``, which calls ``hand_off`` while the node still serves) of a holder, ``settle``
  seconds after replication, leaves the item held by at least ``replicas`` live nodes *when it returns*:
  the data has moved before the node stops serving;
* ``keep`` of an item whose manifest or a block is missing raises :class:`~butter.errors.IncompleteItem`
  and replicates nothing; once the block is there, ``keep`` succeeds;
* ``available_storage()`` is a non-negative ``int`` that does not grow when the node stores an item;
* on a node whose store has no room (``store.capacity``), ``store`` raises :class:`~butter.errors.StoreFull`
  and nothing is stored anywhere, while an item that fits is still replicated.

Each check takes well under 2 s (the graceful-exit check: ``settle`` more) with pcg at a 0.2 s heartbeat;
``bound`` only guards against hangs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..blocks import chunk, load_manifest
from ..errors import IncompleteItem, StoreFull
from ..node import Node
from ..slots import Persistence
from .conformance_retrieval import Overlay, RetrievalFactory, _fails, payload

__all__ = ["PERSISTENCE_CHECKS", "Holders", "PersistenceFactory"]

ITEM_SIZE = 10 * 1024 + 100  # bytes: 3 blocks of 4 KiB, the last one short


@dataclass(frozen=True)
class PersistenceFactory:
    """What the kit needs to know about a persistence driver.

    * ``driver``: its entry-point name in ``butter.persistence`` (the value of ``persistence.driver``).
    * ``options``: its ``persistence.options``; they must make it keep ``replicas`` copies and repair within
      ``bound`` (short timers: pcg needs ``heartbeat_interval`` 0.2 s).
    * ``replicas``: copies (>= 2) the driver keeps with these options (default 3).
    * ``size``: nodes in the kit's network (default 6, more than ``replicas``).
    * ``bound``: seconds replication, or repair after a death, may take (default 5); a guard against hangs.
    * ``settle``: seconds the driver needs, once the replicas exist, before every holder knows the others
      (default 1.0: five pcg heartbeats of 0.2 s); the graceful-exit check waits that long before a holder
      leaves, as a holder that just joined may not yet know whom to hand off to.
    * ``retrieval``: a retrieval driver's entry-point name, to also check that a non-holder retrieves the item
      after a holder's death (default ``""``: none, the kit reads holders' block stores only).
    * ``settings``: other :class:`~butter.settings.ButterSettings` fields for every node, over the kit's.
    * ``plugins``: extra pluggy plugin objects for every node's ``open_node(plugins=...)``; with
      ``driver=""``, one answering ``butter_persistence`` tests a driver not installed as an entry point.
    """

    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    replicas: int = 3
    size: int = 6
    bound: float = 5.0
    settle: float = 1.0
    retrieval: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugins: tuple[object, ...] = ()

    def __post_init__(self) -> None:
        if not 2 <= self.replicas < self.size or self.bound <= 0 or self.settle < 0:
            raise ValueError(f"need 2 <= replicas < size, a positive bound and settle >= 0, got replicas "
                             f"{self.replicas}, size {self.size}, bound {self.bound}, settle {self.settle}")

    @asynccontextmanager
    async def open_network(self, **settings: Any) -> AsyncIterator[Holders]:
        """Start ``size`` nodes that all know each other; ``settings`` go over the factory's (e.g. ``store``)."""
        persistence = {"driver": self.driver, "options": dict(self.options)}
        overlay = RetrievalFactory(self.retrieval, bound=self.bound, plugins=self.plugins,
                                   settings={**self.settings, **settings, "persistence": persistence})
        mesh = {i: [j for j in range(self.size) if j != i] for i in range(self.size)}
        async with overlay.open_overlay(mesh) as net:
            yield Holders(net, self)


@dataclass
class Holders:
    """The kit's running nodes, with ground truth about who holds what and ways to make nodes leave."""

    overlay: Overlay
    factory: PersistenceFactory
    gone: set[int] = field(default_factory=set)

    @property
    def nodes(self) -> list[Node]:
        return self.overlay.nodes

    def alive(self) -> list[Node]:
        return [n for i, n in enumerate(self.nodes) if i not in self.gone]

    def persistence(self, index: int) -> Persistence:
        persistence = self.nodes[index].persistence
        assert persistence is not None, f"driver {self.factory.driver!r} built no persistence object"
        return persistence

    async def read(self, node: Node, content_id: str) -> bytes | None:
        """The item's bytes from ``node``'s block store, each block verified; ``None`` unless it is complete."""
        manifest = await node.blocks.get(content_id)
        if manifest is None:
            return None
        blocks = [await node.blocks.get(a) for a in load_manifest(content_id, manifest).blocks]
        return None if any(b is None for b in blocks) else b"".join(b for b in blocks if b is not None)

    async def holders(self, content_id: str) -> list[Node]:
        """Live nodes whose block store holds the item complete."""
        return [n for n in self.alive() if await self.read(n, content_id) is not None]

    async def wait_for_holders(self, content_id: str, at_least: int, what: str) -> list[Node]:
        """Poll (every 20 ms, within the factory's bound) until ``at_least`` live nodes hold the item."""
        holders: list[Node] = []
        with anyio.move_on_after(self.factory.bound):
            while True:
                holders = await self.holders(content_id)
                if len(holders) >= at_least:
                    break
                await anyio.sleep(0.02)
        assert len(holders) >= at_least, (
            f"{what}: {len(holders)} live node(s) hold the item after {self.factory.bound} s, "
            f"at least {at_least} must")
        return holders

    async def store(self, index: int, data: bytes) -> str:
        """``store`` on node ``index``, then wait until ``replicas`` live nodes hold the item byte for byte."""
        content_id = await self.nodes[index].store(data)
        for holder in await self.wait_for_holders(content_id, self.factory.replicas, "after store"):
            assert await self.read(holder, content_id) == data, "a holder's copy differs from the item"
        return content_id

    async def kill(self, node: Node) -> None:
        """``node`` stops abruptly, as a crash would: no hand-off."""
        self.gone.add(self.nodes.index(node))
        await node.aclose(graceful=False)

    async def leave(self, node: Node) -> None:
        """``node`` leaves gracefully: ``hand_off`` runs while it still serves."""
        self.gone.add(self.nodes.index(node))
        await node.aclose()


# -- the checks --------------------------------------------------------------------------------------------


async def check_store_replicates(factory: PersistenceFactory) -> None:
    """A stored item is held, byte for byte, by at least ``replicas`` live nodes within ``bound``; so are the
    empty item and a one-block item."""
    async with factory.open_network() as net:
        assert isinstance(net.persistence(0), Persistence), "the slot object must implement the Persistence slot"
        for index, data in ((0, payload(ITEM_SIZE)), (1, b""), (2, b"\x1a" * 100)):
            await net.store(index, data)


async def check_abrupt_death_of_a_holder(factory: PersistenceFactory) -> None:
    """The storing node dies abruptly: a live node still holds the item, it comes back byte for byte (and
    through ``retrieve`` on a non-holder when ``retrieval`` is named), and ``replicas`` live nodes hold it
    again within ``bound``."""
    async with factory.open_network() as net:
        data = payload(ITEM_SIZE, seed=1)
        content_id = await net.store(0, data)
        await net.kill(net.nodes[0])
        survivors = await net.holders(content_id)
        assert survivors, "no live node holds the item once its first holder died"
        assert await net.read(survivors[0], content_id) == data
        holders = await net.wait_for_holders(content_id, factory.replicas, "after a holder's abrupt death")
        for holder in holders:
            assert await net.read(holder, content_id) == data, "a repaired copy differs from the item"
        if factory.retrieval:
            reader = next(n for n in net.alive() if n not in holders)
            with anyio.fail_after(factory.bound):
                assert await reader.retrieve(content_id) == data, "a non-holder retrieved other bytes"


async def check_graceful_exit_hands_off(factory: PersistenceFactory) -> None:
    """Once the holders have had ``settle`` seconds to learn of each other, a holder that is not the storer
    leaves gracefully: when its ``aclose()`` returns, at least ``replicas`` live nodes hold the item
    (``hand_off`` moved it; failure detection had no time to)."""
    async with factory.open_network() as net:
        data = payload(ITEM_SIZE, seed=2)
        content_id = await net.store(0, data)
        await anyio.sleep(factory.settle)
        leaver = next(h for h in await net.holders(content_id) if h is not net.nodes[0])
        await net.leave(leaver)
        holders = await net.holders(content_id)
        assert len(holders) >= factory.replicas, (
            f"{len(holders)} live node(s) hold the item right after a holder left gracefully: its hand_off "
            f"must move the data while the node still serves")
        for holder in holders:
            assert await net.read(holder, content_id) == data


async def check_keep_refuses_incomplete_items(factory: PersistenceFactory) -> None:
    """``keep`` raises IncompleteItem for an unknown content id and for an item missing a block, replicating
    nothing; once the block is there, ``keep`` succeeds and the item is replicated."""
    async with factory.open_network() as net:
        node, persistence = net.nodes[0], net.persistence(0)
        await _fails(persistence.keep(chunk(b"nobody stored this").content_id), (IncompleteItem,),
                     "keep of an item whose manifest is not in the store")
        item = chunk(payload(ITEM_SIZE, seed=3), block_size=int(node.settings.store.block_size))
        missing = item.manifest.blocks[1]
        for address, block in item.all_blocks.items():
            if address != missing:
                await node.blocks.put(address, block)
        await _fails(persistence.keep(item.content_id), (IncompleteItem,), "keep of an item missing a block")
        await anyio.sleep(0.2)
        assert [await n.blocks.has(item.content_id) for n in net.nodes[1:]] == [False] * (factory.size - 1), (
            "an item keep refused was replicated")
        await node.blocks.put(missing, item.all_blocks[missing])
        await persistence.keep(item.content_id)
        await net.wait_for_holders(item.content_id, factory.replicas, "after keep of the completed item")


async def check_available_storage(factory: PersistenceFactory) -> None:
    """``available_storage()`` is a non-negative int, on every node, that does not grow when one stores."""
    async with factory.open_network() as net:
        before = [net.persistence(i).available_storage() for i in range(factory.size)]
        assert all(type(free) is int and free >= 0 for free in before), f"available_storage() gave {before}"
        await net.store(0, payload(ITEM_SIZE, seed=4))
        after = [net.persistence(i).available_storage() for i in range(factory.size)]
        assert all(type(free) is int and free >= 0 for free in after), f"available_storage() gave {after}"
        assert after[0] <= before[0], f"the storing node's available storage grew: {before[0]} -> {after[0]}"


async def check_store_full(factory: PersistenceFactory) -> None:
    """With 64 KiB stores, a 100 KiB item raises StoreFull and is stored nowhere; a small one is replicated."""
    async with factory.open_network(store={**factory.settings.get("store", {}), "capacity": 64 * 1024}) as net:
        node, free = net.nodes[0], net.persistence(0).available_storage()
        data = payload(100 * 1024, seed=5)
        await _fails(node.store(data), (StoreFull,), "store of an item larger than the store")
        assert node.blocks.used == 0 and net.persistence(0).available_storage() == free, "a refused item took room"
        assert not await net.holders(chunk(data).content_id), "a refused item is held somewhere"
        await net.store(0, payload(ITEM_SIZE, seed=6))


PERSISTENCE_CHECKS: list[Callable[[PersistenceFactory], Awaitable[None]]] = [
    check_store_replicates,
    check_abrupt_death_of_a_holder,
    check_graceful_exit_hands_off,
    check_keep_refuses_incomplete_items,
    check_available_storage,
    check_store_full,
]
