"""The retrieval conformance kit (:mod:`butter.testing.conformance_retrieval`) checked against itself: a small
reference driver passes every check, and each flawed variant of it fails the check meant to catch the flaw
(a kit that cannot fail proves nothing). Runs on asyncio and trio."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter.blocks import aiter_assemble, is_block_id, load_manifest
from butter.errors import BlockCorrupted, ButterError, ItemNotFound, PeerUnreachable
from butter.peers import PeerAddress, PeerInfo
from butter.testing import conformance_retrieval as kit
from butter.testing.conformance_retrieval import RETRIEVAL_CHECKS, RetrievalFactory
from butter.wire import decode_payload, encode_payload

pytestmark = pytest.mark.anyio
Check = Callable[[RetrievalFactory], Awaitable[None]]


@dataclass(frozen=True)
class Flaws:
    trusting: bool = False  # takes fetched bytes without checking them against their address
    whole: bool = False  # streams the whole item as one piece
    lax_ids: bool = False  # searches for anything, content id or not
    near: bool = False  # looks one hop away only
    hangs: bool = False  # never gives up on an item nobody holds
    fragile: bool = False  # gives up at the first host it cannot reach
    lingers: bool = False  # ignores the timeout it is given
    vague: bool = False  # says "not found", not how far it searched


class WalkRetrieval:
    """A reference driver: breadth first over its own ``walk-hosts`` route (each host's known hosts),
    asking each host for the manifest on ``fetch-block``, then fetching each block from a holder that has
    not lied yet."""

    def __init__(self, node: butter.Node, flaws: Flaws) -> None:
        self.node, self.flaws = node, flaws
        node.route("walk-hosts", self._serve_hosts)

    async def _serve_hosts(self, request: butter.RouteRequest) -> bytes:
        return encode_payload({"sample": [p.to_wire() for p in self.node.hosts.sample(16)]})

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def retrieve(self, content_id: str, *, timeout: float | None = None) -> bytes:
        return b"".join([piece async for piece in self.stream(content_id, timeout=timeout)])

    async def stream(self, content_id: str, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        if not self.flaws.lax_ids and not is_block_id(content_id):
            raise ItemNotFound(f"{content_id!r} is not a content id")
        walk = Walk()
        with anyio.move_on_after(math.inf if self.flaws.lingers or timeout is None else timeout) as search:
            await self._holders(content_id, walk)
        holders = walk.holders
        manifest = None
        for holder in list(holders):
            data = await self._fetch(holder, content_id, holders)
            if data is not None:
                manifest = load_manifest(content_id, data)
                break
        if manifest is None:
            if self.flaws.hangs:
                await anyio.sleep_forever()
            if self.flaws.vague:
                raise ItemNotFound(f"item {content_id} not found")
            raise ItemNotFound(content_id=content_id, hosts_asked=len(walk.asked), rings=1, hops=walk.hops,
                               holders=len(holders), timed_out=search.cancelled_caught)

        async def get(address: str) -> bytes | None:
            local = await self.node.blocks.get(address)
            for holder in list(holders) if local is None else []:
                local = await self._fetch(holder, address, holders)
                if local is not None:
                    break
            return local

        if self.flaws.trusting:
            pieces = [await get(address) or b"" for address in manifest.blocks]
        else:
            try:
                pieces = None
                async for piece in aiter_assemble(manifest, get):
                    if not self.flaws.whole:
                        yield piece
                    else:
                        pieces = [*(pieces or []), piece]
            except ButterError as exc:
                raise ItemNotFound(f"item {content_id}: {exc}") from exc
        if pieces is not None:
            yield b"".join(pieces)

    async def _fetch(self, holder: PeerAddress, address: str, holders: list[PeerAddress]) -> bytes | None:
        if holder == self.node.address:
            return await self.node.blocks.get(address)
        try:
            if self.flaws.trusting:
                return await self.node.request(holder, "fetch-block", encode_payload({"block_id": address}), timeout=2)
            return await self.node.fetch_block(holder, address, timeout=2)
        except BlockCorrupted:
            holders.remove(holder)  # a liar is not asked again
        except ButterError:
            pass
        return None

    async def _holders(self, content_id: str, walk: Walk) -> None:
        """Find the holders, filling in ``walk`` as it goes (a deadline may cut it short)."""
        if await self.node.blocks.has(content_id):
            walk.holders.append(self.node.address)
            return
        seen, holders = walk.asked, walk.holders
        frontier = [(p.address, 1) for p in self.node.hosts.peers()]
        while frontier and len(seen) < 64:
            address, hops = frontier.pop(0)
            if address in seen or address == self.node.address:
                continue
            seen.add(address)
            walk.hops = max(walk.hops, hops)
            try:
                await self.node.request(address, "fetch-block", encode_payload({"block_id": content_id}), timeout=2)
                holders.append(address)
                continue
            except PeerUnreachable as exc:
                if self.flaws.fragile:
                    raise ItemNotFound(f"item {content_id}: {exc}") from exc
            except ButterError:
                pass
            if self.flaws.near and hops >= 1:
                continue
            try:
                reply = decode_payload(await self.node.request(address, "walk-hosts", b"", timeout=2))
            except ButterError:
                continue
            frontier += [(PeerInfo.from_wire(entry).address, hops + 1) for entry in reply["sample"]]


@dataclass
class Walk:
    """How far one search went: the hosts asked, the farthest hop, the holders found."""

    asked: set[PeerAddress] = field(default_factory=set)
    hops: int = 0
    holders: list[PeerAddress] = field(default_factory=list)


class WalkPlugin:
    def __init__(self, flaws: Flaws = Flaws()) -> None:
        self.flaws = flaws

    @butter.hookimpl
    def butter_retrieval(self, node: butter.Node) -> WalkRetrieval:
        return WalkRetrieval(node, self.flaws)


def factory(flaws: Flaws = Flaws(), bound: float = 10.0) -> RetrievalFactory:
    """The kit's factory for the reference driver: not an entry point, so ``driver=""`` and a plugin object."""
    return RetrievalFactory("", plugins=(WalkPlugin(flaws),), bound=bound)


@pytest.mark.parametrize("check", RETRIEVAL_CHECKS, ids=lambda c: c.__name__)
async def test_the_reference_driver_passes(check: Check) -> None:
    await check(factory())


@pytest.mark.parametrize(("flaws", "check", "error", "match"), [
    (Flaws(trusting=True), kit.check_sole_holder_serving_a_corrupted_block, AssertionError, "corrupted"),
    (Flaws(trusting=True), kit.check_corrupted_holder_beside_an_honest_one, AssertionError, "not the item's"),
    (Flaws(whole=True), kit.check_streams_in_order, AssertionError, "at most a block"),
    (Flaws(lax_ids=True), kit.check_invalid_content_id, AssertionError, "not a content id"),
    (Flaws(near=True), kit.check_retrieves_across_hops, ItemNotFound, "not found"),
    (Flaws(near=True), kit.check_concurrent_retrievals, ItemNotFound, "not found"),
    (Flaws(hangs=True), kit.check_missing_item_not_found, TimeoutError, None),
    (Flaws(fragile=True), kit.check_unreachable_known_host, ItemNotFound, "no peer listening"),
    (Flaws(lingers=True), kit.check_deadline_bounds_a_missing_item, AssertionError, "deadline was not kept"),
    (Flaws(vague=True), kit.check_missing_item_not_found, AssertionError, "not the id searched"),
], ids=["unverified-sole", "unverified-beside", "whole-stream", "lax-ids", "near-hops", "near-concurrent", "hangs",
        "fragile", "lingers", "vague"])
async def test_a_flawed_driver_fails_the_check_for_its_flaw(
    flaws: Flaws, check: Check, error: type[BaseException], match: str | None
) -> None:
    with pytest.raises(error, match=match):
        try:
            await check(factory(flaws, bound=1.0))
        except BaseExceptionGroup as group:  # concurrent retrievals fail in a task group
            raise group.exceptions[0] from None


async def test_the_kit_pins_the_overlay_shape() -> None:
    async with factory().open_overlay(kit.line(4)) as net:
        known = [{p.address for p in n.hosts.peers()} for n in net.nodes]
        addresses = [n.address for n in net.nodes]
        assert known == [{addresses[1]}, {addresses[0], addresses[2]}, {addresses[1], addresses[3]}, {addresses[2]}]
        assert not await net.nodes[0].hosts.offer(addresses[3])  # admits no one
        net.nodes[1].hosts.report_dead(addresses[0])
        assert {p.address for p in net.nodes[1].hosts.peers()} == {addresses[2]}
