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
        await check(PersistenceFactory("pcg", {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0}))

The factory also says what the driver promises: ``replicas`` copies, and whether an item survives the
abrupt death of a holder. A single-copy driver (``single``) says ``PersistenceFactory("single",
replicas=1, survives_holder_death=False)``: the checks that need replication are then skipped, with a
reason naming the promise it does not make.

What the checks hold a driver to, beyond the slot's docstring:

* after ``node.store(data)`` the item is held by at least ``replicas`` live nodes within ``bound``, each
  copy byte for byte;
* (``survives_holder_death``) when a holder dies abruptly (``aclose(graceful=False)``, as a crash) the
  item is still held by a live node, comes back byte for byte (from a survivor's block store, and through
  ``node.retrieve`` on a non-holder when a ``retrieval`` driver is named), and is held by ``replicas``
  live nodes again within ``bound``;
* (``replicas >= 2``) graceful exit (``aclose()``, which calls ``hand_off`` while the node still serves) of a
  holder, ``settle`` seconds after replication, leaves the item held by at least ``replicas`` live nodes
  *when it returns*: the data has moved before the node stops serving;
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

from .._node import Node
from ..blocks import chunk, load_manifest
from ..capabilities import Counters, GroupStatus, ItemHolders, KeptItems
from ..errors import IncompleteItem, StoreFull
from ..peers import PeerAddress
from ..slots import Persistence
from ._kit import not_promised
from .conformance_retrieval import Overlay, RetrievalFactory, _fails, payload

__all__ = ["PERSISTENCE_CHECKS", "Holders", "PersistenceFactory"]

ITEM_SIZE = 10 * 1024 + 100  # bytes: 3 blocks of 4 KiB, the last one short


@dataclass(frozen=True)
class PersistenceFactory:
    """What the kit needs to know about a persistence driver.

    * ``driver``: its entry-point name in ``butter.persistence`` (the value of ``persistence.driver``).
    * ``options``: its ``persistence.options``; they must make it keep ``replicas`` copies and repair within
      ``bound`` (short timers: pcg needs ``heartbeat_interval`` 0.2 s).
    * ``replicas``: copies (>= 1) the driver keeps with these options (default 3).
    * ``survives_holder_death``: whether an item outlives the abrupt death of one holder (default ``True``;
      needs ``replicas >= 2``).
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
    survives_holder_death: bool = True
    size: int = 6
    bound: float = 5.0
    settle: float = 1.0
    retrieval: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugins: tuple[object, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.replicas < self.size or self.bound <= 0 or self.settle < 0:
            raise ValueError(f"need 1 <= replicas < size, a positive bound and settle >= 0, got replicas "
                             f"{self.replicas}, size {self.size}, bound {self.bound}, settle {self.settle}")
        if self.survives_holder_death and self.replicas < 2:
            raise ValueError("an item survives the death of its holder only with replicas >= 2 "
                             "(say survives_holder_death=False)")

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

    async def wait_for_non_holder(self, content_id: str, what: str) -> Node:
        """A live node that does not hold the item, polling within the factory's bound: right after a repair
        a group may hold more replicas than its target (every live node, in a small network) until it sheds."""
        with anyio.move_on_after(self.factory.bound):
            while True:
                holders = await self.holders(content_id)
                others = [n for n in self.alive() if n not in holders]
                if others:
                    return others[0]
                await anyio.sleep(0.02)
        raise AssertionError(f"{what}: every live node still holds the item after {self.factory.bound} s "
                             f"(a group above its target of {self.factory.replicas} must shed)")

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
    if not factory.survives_holder_death:
        not_promised(f"the driver does not promise that an item survives its holder's death "
                     f"(survives_holder_death=False, replicas={factory.replicas})")
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
            reader = await net.wait_for_non_holder(content_id, "after a holder's abrupt death")
            with anyio.fail_after(factory.bound):
                assert await reader.retrieve(content_id) == data, "a non-holder retrieved other bytes"


async def check_graceful_exit_hands_off(factory: PersistenceFactory) -> None:
    """Once the holders have had ``settle`` seconds to learn of each other, a holder that is not the storer
    leaves gracefully: when its ``aclose()`` returns, at least ``replicas`` live nodes hold the item
    (``hand_off`` moved it; failure detection had no time to)."""
    if factory.replicas < 2:
        not_promised(f"replicas={factory.replicas}: no holder besides the storer to leave and hand off")
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


# -- capabilities (butter.capabilities) a driver may offer -------------------------------------------------


async def check_capabilities(factory: PersistenceFactory) -> None:
    """For each optional capability the driver's object offers (``isinstance``; one offering none passes),
    once two stored items are replicated and ``settle`` seconds have passed, every live node agrees with the
    ground truth within ``bound``: ``KeptItems.kept_items()`` lists exactly the items its block store holds
    complete; ``ItemHolders.holders(cid)`` names exactly the nodes holding the item (the node itself
    included) on a holder, ``[]`` elsewhere; ``GroupStatus.group_status(cid)`` on a holder has ``replicas``
    the number of holders, ``members`` (when given) their addresses and the ``state`` its ``replicas`` and
    ``target`` imply, and is ``None`` elsewhere; ``Counters.counters()`` maps names to non-negative ints."""
    async with factory.open_network() as net:
        items = [await net.store(0, payload(ITEM_SIZE, seed=7)), await net.store(1, b"\x2b" * 100)]
        await anyio.sleep(factory.settle)
        problems: list[str] = []
        with anyio.move_on_after(factory.bound):
            while True:
                problems = await _capability_problems(net, items)
                if not problems:
                    break
                await anyio.sleep(0.05)
        assert not problems, "capabilities disagree with the block stores: " + "; ".join(problems[:5])


async def _capability_problems(net: Holders, items: list[str]) -> list[str]:
    truth = {cid: {n.address for n in await net.holders(cid)} for cid in items}
    problems: list[str] = []
    for index, node in enumerate(net.nodes):
        if index in net.gone:
            continue
        persistence, name = net.persistence(index), f"node {index}"
        if isinstance(persistence, KeptItems):
            kept, held = set(persistence.kept_items()), {cid for cid in items if node.address in truth[cid]}
            if kept != held:
                problems.append(f"{name}: kept_items() lists {_short(kept)}, its store holds {_short(held)}")
        for cid in items:
            holds = node.address in truth[cid]
            if isinstance(persistence, ItemHolders):
                named, expected = set(persistence.holders(cid)), truth[cid] if holds else set()
                if named != expected:
                    problems.append(f"{name}: holders({cid[:8]}) names {_where(named)}, not {_where(expected)}")
            if isinstance(persistence, GroupStatus):
                problems += _status_problems(persistence, cid, truth[cid] if holds else None, name)
        if isinstance(persistence, Counters):
            bad = {k: v for k, v in persistence.counters().items() if not isinstance(k, str) or type(v) is not int
                   or v < 0}
            if bad:
                problems.append(f"{name}: counters() must map names to non-negative ints, not {bad}")
    return problems


def _status_problems(status_of: GroupStatus, cid: str, holders: set[PeerAddress] | None, name: str) -> list[str]:
    status = status_of.group_status(cid)
    if holders is None or status is None:
        return [] if holders is None and status is None else [
            f"{name}: group_status({cid[:8]}) is {status}, yet the node {'holds' if holders else 'lacks'} it"]
    state = "cold" if status.replicas < status.target else "hot" if status.replicas > status.target else "goldilocks"
    if status.replicas != len(holders) or status.state != state or status.target < 1:
        return [f"{name}: group_status({cid[:8]}) is {status}; {len(holders)} nodes hold the item"]
    if status.members and set(status.members) != holders:
        return [f"{name}: group_status({cid[:8]}).members names {_where(set(status.members))}, "
                f"not {_where(holders)}"]
    return []


def _short(ids: set[str]) -> str:
    return "{" + ", ".join(sorted(i[:8] for i in ids)) + "}"


def _where(addresses: set[PeerAddress]) -> str:
    return "{" + ", ".join(sorted(str(a) for a in addresses)) + "}"


PERSISTENCE_CHECKS.append(check_capabilities)
