"""The persistence conformance kit (:mod:`butter.testing.conformance_persistence`) checked against itself: a
small reference driver passes every check, and each flawed variant of it fails the check meant to catch the
flaw (a kit that cannot fail proves nothing); and run for the ``single`` driver, which promises one copy
only. Runs on asyncio and trio."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter import RouteRequest
from butter.blocks import load_manifest
from butter.errors import ButterError, IncompleteItem, PeerUnreachable, RouteError, StoreFull
from butter.peers import PeerAddress
from butter.testing import conformance_persistence as kit
from butter.testing.conformance_persistence import PERSISTENCE_CHECKS, PersistenceFactory
from butter.wire import decode_payload, encode_payload

pytestmark = pytest.mark.anyio
Check = Callable[[PersistenceFactory], Awaitable[None]]
REPLICAS, INTERVAL, GRACE = 3, 0.05, 0.3  # copies; seconds between maintenance rounds; before a new copy counts


@dataclass(frozen=True)
class Flaws:
    lonely: bool = False  # never copies an item anywhere
    no_repair: bool = False  # copies at keep time only, never repairs
    idle_hand_off: bool = False  # hand_off does nothing
    lax_keep: bool = False  # keeps whatever it is asked to, complete or not
    inflated: bool = False  # available_storage counts the bytes stored as free


class CopyPersistence:
    """A reference driver: ``keep`` pushes the item to ``REPLICAS - 1`` known hosts (route ``copy-item``: the
    receiver fetches the manifest and blocks from the sender); every round the holder with the highest node
    id probes every known host for the manifest and pushes a copy when too few hold it; ``hand_off`` pushes
    each item to one host that does not hold it."""

    def __init__(self, node: butter.Node, flaws: Flaws) -> None:
        self.node, self.flaws = node, flaws
        self.kept: dict[str, float] = {}  # content id -> when this node got it
        node.route("copy-item", self._serve_copy)

    def available_storage(self) -> int:
        return self.node.blocks.free + (2 * self.node.blocks.used if self.flaws.inflated else 0)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(INTERVAL)
            if not (self.flaws.lonely or self.flaws.no_repair):
                for content_id, since in list(self.kept.items()):
                    if anyio.current_time() - since >= GRACE:
                        await self._maintain(content_id)

    async def keep(self, content_id: str) -> None:
        if not self.flaws.lax_keep:
            data = await self.node.blocks.get(content_id)
            if data is None:
                raise IncompleteItem((content_id,))
            missing = tuple([a for a in load_manifest(content_id, data).blocks if not await self.node.blocks.has(a)])
            if missing:
                raise IncompleteItem(missing)
        self.kept[content_id] = anyio.current_time()
        if not self.flaws.lonely:
            await self._push(content_id, REPLICAS - 1, holders=set())

    async def hand_off(self) -> None:
        if not self.flaws.idle_hand_off:
            for content_id in list(self.kept):
                await self._push(content_id, 1, holders=await self._holders(content_id))

    async def _holders(self, content_id: str) -> set[PeerAddress]:
        holders = set()
        for peer in self.node.hosts.peers():
            try:
                await self.node.fetch_block(peer.address, content_id, timeout=0.5)
                holders.add(peer.address)
            except PeerUnreachable:
                self.node.hosts.report_dead(peer.address)
            except ButterError:
                pass
        return holders

    async def _maintain(self, content_id: str) -> None:
        holders = await self._holders(content_id)
        ids = {p.node_id for p in self.node.hosts.peers() if p.address in holders} | {self.node.node_id}
        if len(ids) < REPLICAS and max(ids) == self.node.node_id:
            await self._push(content_id, REPLICAS - len(ids), holders)

    async def _push(self, content_id: str, wanted: int, holders: set[PeerAddress]) -> None:
        peers = [p.address for p in self.node.hosts.peers() if p.address not in holders]
        random.shuffle(peers)
        body = encode_payload({"cid": content_id, "from": str(self.node.address)})
        for address in peers:
            if wanted <= 0:
                return
            try:
                await self.node.request(address, "copy-item", body, timeout=2)
                wanted -= 1
            except ButterError:
                pass

    async def _serve_copy(self, request: RouteRequest) -> bytes:
        body = decode_payload(request.body)
        content_id, source = body["cid"], body["from"]
        manifest = await self.node.fetch_block(source, content_id, timeout=1)
        blocks = {a: await self.node.fetch_block(source, a, timeout=1)
                  for a in dict.fromkeys(load_manifest(content_id, manifest).blocks)}
        if len(manifest) + sum(len(b) for b in blocks.values()) > self.node.blocks.free:
            raise RouteError("store-full", "no room")
        try:
            for address, data in {**blocks, content_id: manifest}.items():
                await self.node.blocks.put(address, data)
        except StoreFull as exc:
            raise RouteError("store-full", str(exc)) from None
        self.kept[content_id] = anyio.current_time()
        return b""


class CopyPlugin:
    def __init__(self, flaws: Flaws = Flaws()) -> None:
        self.flaws = flaws

    @butter.hookimpl
    def butter_persistence(self, node: butter.Node) -> CopyPersistence:
        return CopyPersistence(node, self.flaws)


def factory(flaws: Flaws = Flaws(), bound: float = 5.0) -> PersistenceFactory:
    """The kit's factory for the reference driver: not an entry point, so ``driver=""`` and a plugin object."""
    return PersistenceFactory("", replicas=REPLICAS, bound=bound, settle=0.2, plugins=(CopyPlugin(flaws),))


@pytest.mark.parametrize("check", PERSISTENCE_CHECKS, ids=lambda c: c.__name__)
async def test_the_reference_driver_passes(check: Check) -> None:
    await check(factory())


@pytest.mark.parametrize(("flaws", "check", "match"), [
    (Flaws(lonely=True), kit.check_store_replicates, "1 live node"),
    (Flaws(lonely=True), kit.check_abrupt_death_of_a_holder, "after store"),
    (Flaws(no_repair=True), kit.check_abrupt_death_of_a_holder, "abrupt death"),
    (Flaws(idle_hand_off=True), kit.check_graceful_exit_hands_off, "hand_off"),
    (Flaws(lax_keep=True), kit.check_keep_refuses_incomplete_items, "must raise IncompleteItem"),
    (Flaws(inflated=True), kit.check_available_storage, "grew"),
], ids=["lonely-store", "lonely-death", "no-repair", "idle-hand-off", "lax-keep", "inflated-storage"])
async def test_a_flawed_driver_fails_the_check_for_its_flaw(flaws: Flaws, check: Check, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        await check(factory(flaws, bound=1.0))


@pytest.mark.parametrize("check", PERSISTENCE_CHECKS, ids=lambda c: c.__name__)
async def test_single_persistence_conformance(check: Check) -> None:
    await check(PersistenceFactory("single", replicas=1, survives_holder_death=False))


async def test_a_check_the_driver_does_not_promise_is_skipped_naming_the_promise() -> None:
    with pytest.raises(pytest.skip.Exception, match="survives_holder_death=False"):
        await kit.check_abrupt_death_of_a_holder(PersistenceFactory("single", replicas=1, survives_holder_death=False))
    with pytest.raises(pytest.skip.Exception, match="replicas=1"):
        await kit.check_graceful_exit_hands_off(PersistenceFactory("single", replicas=1, survives_holder_death=False))


def test_the_factory_refuses_a_network_too_small_to_replicate() -> None:
    with pytest.raises(ValueError, match="replicas"):
        PersistenceFactory("pcg", replicas=6, size=6)
    with pytest.raises(ValueError, match="replicas"):
        PersistenceFactory("pcg", replicas=0)
    with pytest.raises(ValueError, match="survives_holder_death=False"):
        PersistenceFactory("single", replicas=1)
    with pytest.raises(ValueError, match="settle"):
        PersistenceFactory("pcg", settle=-1)
