"""The retrieval conformance kit: checks every :class:`butter.slots.Retrieval` driver must pass,
like ``trio.testing.check_two_way_stream`` for streams.

The kit builds the overlay itself: real nodes on a private :class:`~butter.testing.MemoryNetwork`, the
driver under test selected by its entry-point name (so it is loaded exactly as a user's setting would load
it), and a host manager of the kit's that pins who knows whom (a line, a star), so "three hops away" means
three hops. Items are put straight into holders' block stores, as persistence would; no persistence driver
runs. A retrieval author only names the driver::

    import pytest
    from butter.testing.conformance_retrieval import RETRIEVAL_CHECKS, RetrievalFactory

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", RETRIEVAL_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check):
        await check(RetrievalFactory("flood"))  # options too, if needed: RetrievalFactory("flood", {"ttl": 5})

What the checks hold a driver to, beyond the slot's docstring:

* an item ``hops`` hops away is found, and ``retrieve`` returns it byte for byte (multi-block, a short last
  block, repeated blocks, the empty item); ``stream`` yields the same bytes in order, no piece longer than a
  block, and may be abandoned early;
* an item nobody holds raises :class:`~butter.errors.ItemNotFound` (from ``stream`` too) within ``bound``,
  its fields saying how far the search went (``content_id``, ``hosts_asked``, ``rings``, ``hops``, ``holders``);
* the deadline holds: with a known host that takes requests and never answers, ``retrieve(cid, timeout=t)``
  and ``stream(cid, timeout=t)`` of an item nobody holds raise ``ItemNotFound`` within ``t`` (plus
  :data:`DEADLINE_SLACK`), never later;
* a string that is not a content id raises ``ItemNotFound`` whose message says "content id", before any
  message is sent;
* bytes that do not match their address are never returned nor yielded: a holder that serves a corrupted
  block on the core ``fetch-block`` route gives :class:`~butter.errors.ItemNotFound` or
  :class:`~butter.errors.BlockCorrupted` when it is the only holder, and the right bytes or one of those
  errors when an honest holder exists too;
* a known host that is unreachable does not stop a retrieval;
* concurrent retrievals (and streams) of different items from several nodes all succeed.

Each check takes well under 2 s with the drivers shipped here; ``bound`` only guards against hangs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._node import Node, open_node
from .._routes import RouteRequest
from ..blocks import Item, chunk, is_block_id, load_manifest
from ..capabilities import Counters, GroupStatus, ItemHolders, KeptItems
from ..errors import BlockCorrupted, IncompleteItem, ItemNotFound, RouteError
from ..hookspecs import hookimpl
from ..peers import PeerAddress, PeerInfo
from ..settings import ButterSettings
from ..slots import NodeServices, Retrieval
from ..wire import Reply, Request, decode_payload
from ._kit import kit_settings, private_network
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["RETRIEVAL_CHECKS", "Overlay", "PinnedHosts", "RetrievalFactory", "line", "pinned"]

ITEM_SIZE = 100 * 1024 + 100  # bytes: 26 blocks of 4 KiB, the last one short
DEADLINE = 1.0  # seconds: the timeout the deadline check gives a retrieval
DEADLINE_SLACK = 1.0  # seconds a retrieval may overrun its timeout in the deadline check (a busy machine)


@dataclass(frozen=True)
class RetrievalFactory:
    """What the kit needs to know about a retrieval driver.

    * ``driver``: its entry-point name in ``butter.retrieval`` (the value of ``retrieval.driver``).
    * ``options``: its ``retrieval.options`` (default: none, the driver's defaults).
    * ``hops``: how far away (hops, >= 1) the far holder sits; the driver must reach that far with these
      options (default 3).
    * ``bound``: seconds any one retrieval may take, found or not (default 10); a guard against hangs, the
      checks themselves take far less.
    * ``settings``: other :class:`~butter.settings.ButterSettings` fields for every node (e.g. ``store``,
      ``request_timeout``, or ``persistence`` when the driver needs one), applied over the kit's.
    * ``plugins``: extra pluggy plugin objects for every node's ``open_node(plugins=...)``; with
      ``driver=""``, one answering ``butter_retrieval`` tests a driver that is not installed as an entry point.
    """

    driver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    hops: int = 3
    bound: float = 10.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    plugins: tuple[object, ...] = ()

    def __post_init__(self) -> None:
        if self.hops < 1 or self.bound <= 0:
            raise ValueError(f"hops must be at least 1 and bound positive, got {self.hops} and {self.bound}")

    def node_settings(self, network: str) -> ButterSettings:
        """One node's settings: memory transport on ``network``, no discovery, no persistence, the kit's host
        manager (passed to ``open_node`` as a plugin), the driver under test."""
        return kit_settings(network, {"host_manager": {"driver": ""}, **self.settings},
                            retrieval={"driver": self.driver, "options": dict(self.options)})

    @asynccontextmanager
    async def open_overlay(self, links: Mapping[int, Iterable[int]]) -> AsyncIterator[Overlay]:
        """Start nodes ``0 .. len(links) - 1`` and make node ``i`` know exactly the nodes ``links[i]`` (the keys
        of ``links`` are ``0 .. n-1``; knowing need not be mutual). Raises ``ValueError`` for other keys."""
        if sorted(links) != list(range(len(links))):
            raise ValueError(f"links must map each of 0 .. {len(links) - 1} to the nodes it knows")
        network = private_network("retrieval")
        async with AsyncExitStack() as stack:
            nodes: list[Node] = []
            for _ in range(len(links)):
                hosts = _PinnedHostsPlugin()
                nodes.append(await stack.enter_async_context(
                    open_node(self.node_settings(network), plugins=(hosts, *self.plugins))))
            for i, known in links.items():
                pinned(nodes[i]).pin([nodes[j].info() for j in known])
            yield Overlay(nodes, self)


def line(size: int) -> dict[int, list[int]]:
    """``0 - 1 - … - size-1``, each node knowing its neighbours: node ``size-1`` is ``size-1`` hops from 0."""
    return {i: [j for j in (i - 1, i + 1) if 0 <= j < size] for i in range(size)}


class PinnedHosts:
    """A :class:`~butter.slots.HostManager` that knows exactly the hosts it is pinned to, so a test fixes the
    overlay's shape. It admits no one (capacity 0: discovery and exchanges cannot change the shape) and
    forgets a host reported dead."""

    capacity = 0

    def __init__(self) -> None:
        self._hosts: dict[PeerAddress, PeerInfo] = {}

    def pin(self, hosts: Sequence[PeerInfo]) -> None:
        self._hosts = {h.address: h for h in hosts}

    def peers(self) -> list[PeerInfo]:
        return list(self._hosts.values())

    def sample(self, k: int) -> list[PeerInfo]:
        return self.peers()[: max(k, 0)]

    async def offer(self, address: PeerAddress) -> bool:
        return address in self._hosts

    def report_dead(self, address: PeerAddress) -> None:
        self._hosts.pop(address, None)

    def known_by(self) -> int:
        return 0  # who pins whom is the test's business, not counted

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()


class _PinnedHostsPlugin:
    @hookimpl
    def butter_host_manager(self, node: Node) -> PinnedHosts:
        return PinnedHosts()


def pinned(node: Node) -> PinnedHosts:
    assert isinstance(node.hosts, PinnedHosts), "the kit's nodes run the kit's host manager"
    return node.hosts


@dataclass
class Overlay:
    """The kit's running nodes, with helpers to place items and to make a holder lie."""

    nodes: list[Node]
    factory: RetrievalFactory

    async def hold(self, index: int, data: bytes) -> Item:
        """Put ``data``'s manifest and blocks in node ``index``'s block store, as persistence would."""
        node = self.nodes[index]
        item = chunk(data, block_size=int(node.settings.store.block_size))
        for address, block in item.all_blocks.items():
            await node.blocks.put(address, block)
        return item

    def corrupt(self, index: int, bad: Iterable[str]) -> list[str]:
        """Make node ``index`` serve the blocks ``bad`` (addresses) on ``fetch-block`` with one byte flipped;
        it serves every other block faithfully. Returns a list that records the address of each corrupted
        block it serves."""
        node, bad = self.nodes[index], set(bad)
        served: list[str] = []

        async def serve(request: RouteRequest) -> bytes:
            body = decode_payload(request.body, node.settings.max_frame)
            address = body.get("block_id") if isinstance(body, dict) else None
            data = await node.blocks.get(address) if isinstance(address, str) and is_block_id(address) else None
            if data is None:
                raise RouteError("not-found", f"no block {address}")
            if address in bad:
                served.append(str(address))
                return bytes([data[0] ^ 0xFF]) + data[1:]
            return data

        node.route("fetch-block", serve)  # replaces the core's route
        return served

    def retrieval(self, index: int) -> Retrieval:
        retrieval = self.nodes[index].retrieval
        assert retrieval is not None, f"driver {self.factory.driver!r} built no retrieval object"
        return retrieval

    @asynccontextmanager
    async def silent_host(self) -> AsyncIterator[PeerInfo]:
        """A listener on the overlay's network that takes every request and never answers (a host that hangs);
        pin it as a known host to make a search wait for it."""
        network = MemoryNetwork.named(self.nodes[0].address.host)
        transport = MemoryTransport(network, max_frame=int(self.nodes[0].settings.max_frame))

        async def never(request: Request) -> Reply:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async with anyio.create_task_group() as tg:
            address = await tg.start(transport.serve, never)
            yield PeerInfo("5" * 32, address)
            tg.cancel_scope.cancel()

    async def retrieve(self, index: int, content_id: str, timeout: float | None = None) -> bytes:
        """``retrieve`` on node ``index`` (with ``timeout`` when given), within the factory's bound."""
        with anyio.fail_after(self.factory.bound):
            return await self.retrieval(index).retrieve(content_id, timeout=timeout)

    async def stream(
        self, index: int, content_id: str, into: list[bytes] | None = None, timeout: float | None = None
    ) -> list[bytes]:
        """Every piece ``stream`` yields on node ``index`` (also appended to ``into`` as they come), within
        the factory's bound."""
        pieces = [] if into is None else into
        stream = self.retrieval(index).stream(content_id, timeout=timeout)
        try:
            with anyio.fail_after(self.factory.bound):
                async for piece in stream:
                    pieces.append(piece)
        finally:
            await _aclose(stream, self.factory.bound)
        return pieces

    async def get(self, index: int, content_id: str, how: str, timeout: float | None = None) -> bytes:
        """The item by ``how``: ``"retrieve"``, or ``"stream"`` (the pieces joined)."""
        if how == "retrieve":
            return await self.retrieve(index, content_id, timeout)
        return b"".join(await self.stream(index, content_id, timeout=timeout))


HOW = ("retrieve", "stream")
REFUSALS = (ItemNotFound, BlockCorrupted)  # what a retrieval may raise instead of returning corrupted bytes


async def _fails(call: Awaitable[object], errors: tuple[type[Exception], ...], what: str) -> Exception:
    """Await ``call``; return the error among ``errors`` it raised, or fail saying ``what`` must raise."""
    try:
        await call
    except errors as exc:
        return exc
    raise AssertionError(f"{what} must raise {' or '.join(e.__name__ for e in errors)}")


async def _aclose(stream: AsyncIterator[bytes], bound: float) -> None:
    """Close a stream (an async generator has ``aclose``; a plain iterator need not), whatever its state,
    shielded from an outer cancellation but within ``bound`` seconds."""
    aclose: Callable[[], Awaitable[None]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        with anyio.fail_after(bound, shield=True):
            await aclose()


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _is_prefix(pieces: list[bytes], item: Item) -> bool:
    """Whether ``pieces``, joined, are the start of the item's bytes (what a stream may yield before failing)."""
    return b"".join(block.data for block in item.ordered_blocks()).startswith(b"".join(pieces))


# -- the checks --------------------------------------------------------------------------------------------


async def check_retrieves_across_hops(factory: RetrievalFactory) -> None:
    """A multi-block item ``hops`` hops away comes back byte for byte; so does it from its holder itself."""
    async with factory.open_overlay(line(factory.hops + 1)) as net:
        assert isinstance(net.retrieval(0), Retrieval), "the slot object must implement butter.slots.Retrieval"
        data = payload(ITEM_SIZE)
        item = await net.hold(factory.hops, data)
        assert len(item.manifest.blocks) > 1
        got = await net.retrieve(0, item.content_id)
        assert got == data, f"retrieved {len(got)} bytes that differ from the {len(data)} held"
        assert await net.retrieve(factory.hops, item.content_id) == data
        assert await net.retrieve(1, item.content_id) == data


async def check_streams_in_order(factory: RetrievalFactory) -> None:
    """``stream`` yields the item's bytes in order, a block at a time at most; abandoning it early is fine."""
    async with factory.open_overlay(line(factory.hops + 1)) as net:
        data = payload(ITEM_SIZE, seed=1)
        item = await net.hold(factory.hops, data)
        pieces = await net.stream(0, item.content_id)
        assert b"".join(pieces) == data, "the streamed pieces, joined, differ from the item"
        block_size = item.manifest.block_size
        assert all(isinstance(p, bytes) and 0 < len(p) <= block_size for p in pieces), (
            f"stream must yield non-empty bytes of at most a block ({block_size} bytes): "
            f"{sorted({len(p) for p in pieces})}")
        with anyio.fail_after(factory.bound):
            stream = net.retrieval(0).stream(item.content_id)
            async for first in stream:
                assert data.startswith(first)
                break
            await _aclose(stream, factory.bound)
        assert await net.retrieve(0, item.content_id) == data, "a retrieval after an abandoned stream failed"


async def check_edge_items(factory: RetrievalFactory) -> None:
    """The empty item, a one-byte item and an item of repeated blocks, retrieved and streamed."""
    async with factory.open_overlay(line(2)) as net:
        block_size = int(net.nodes[0].settings.store.block_size)
        for data in (b"", b"\x1a", b"\0" * (3 * block_size + 7)):
            item = await net.hold(1, data)
            for how in HOW:
                assert await net.get(0, item.content_id, how) == data, f"{how} of an item of {len(data)} bytes"


def _says_how_far(exc: Exception, content_id: str, how: str) -> None:
    """``exc`` is an ItemNotFound for ``content_id`` whose fields say the search asked a host at least."""
    assert isinstance(exc, ItemNotFound)
    fields = {name: getattr(exc, name, None) for name in ("hosts_asked", "rings", "hops", "holders")}
    assert all(type(value) is int and value >= 0 for value in fields.values()), (
        f"{how}: ItemNotFound must carry hosts_asked, rings, hops and holders (non-negative ints): {fields}")
    assert exc.content_id == content_id, f"{how}: ItemNotFound.content_id is {exc.content_id!r}, not the id searched"
    assert exc.hosts_asked >= 1 and exc.rings >= 1 and exc.hops >= 1, (
        f"{how}: the search asked known hosts, but ItemNotFound says it did not: {fields}")
    assert exc.holders == 0, f"{how}: nobody holds the item, but ItemNotFound counts {exc.holders} holder(s)"
    assert isinstance(exc.timed_out, bool) and isinstance(exc.seconds, float), f"{how}: timed_out, seconds"


async def check_missing_item_not_found(factory: RetrievalFactory) -> None:
    """An item nobody holds raises ItemNotFound from ``retrieve`` and from ``stream``, within ``bound``, its
    fields saying how far the search went."""
    async with factory.open_overlay(line(factory.hops + 1)) as net:
        absent = chunk(b"nobody holds this").content_id
        await net.hold(factory.hops, b"something else")
        for how in HOW:
            exc = await _fails(net.get(0, absent, how), (ItemNotFound,), f"{how} of an item nobody holds")
            _says_how_far(exc, absent, how)


async def check_deadline_bounds_a_missing_item(factory: RetrievalFactory) -> None:
    """With a known host that never answers, ``retrieve`` and ``stream`` of an item nobody holds, given
    ``timeout=DEADLINE``, raise ItemNotFound within ``DEADLINE + DEADLINE_SLACK`` seconds, never later,
    its fields saying how far the search went. (The factory's ``bound`` is raised to 10 s here, so that a
    driver that overruns is reported as such, not as a hang.)"""
    factory = replace(factory, bound=max(factory.bound, 10.0))
    async with factory.open_overlay(line(factory.hops + 1)) as net, net.silent_host() as silent:
        pinned(net.nodes[0]).pin([silent, *pinned(net.nodes[0]).peers()])
        absent = chunk(b"nobody holds this either").content_id
        for how in HOW:
            started = anyio.current_time()
            exc = await _fails(net.get(0, absent, how, timeout=DEADLINE), (ItemNotFound,),
                               f"{how} of an item nobody holds, past a host that never answers")
            took = anyio.current_time() - started
            assert took <= DEADLINE + DEADLINE_SLACK, (
                f"{how}(timeout={DEADLINE}) reported ItemNotFound after {took:.1f} s: the deadline was not kept")
            _says_how_far(exc, absent, how)


async def check_invalid_content_id(factory: RetrievalFactory) -> None:
    """A string that is not a content id raises ItemNotFound saying so, before any message is sent."""
    async with factory.open_overlay(line(2)) as net:
        valid = (await net.hold(1, b"real")).content_id
        invalid = ["", "nope", valid.upper(), valid[:-1], valid + "0", f" {valid}", "g" * 64, valid[:32] + "/" * 32]
        sent = net.nodes[0].stats.requests_sent
        for bad in invalid:
            for how in HOW:
                exc = await _fails(net.get(0, bad, how), (ItemNotFound,), f"{how}({bad!r})")
                assert "content id" in str(exc), f"the error for {bad!r} must say it is not a content id: {exc}"
        assert net.nodes[0].stats.requests_sent == sent, "an invalid content id must be refused before searching"


async def check_sole_holder_serving_a_corrupted_block(factory: RetrievalFactory) -> None:
    """The only holder flips a byte of one block: ``retrieve`` and ``stream`` fail with ItemNotFound or
    BlockCorrupted, and ``stream`` yields only correct blocks before it fails."""
    async with factory.open_overlay(line(3)) as net:
        item = await net.hold(2, payload(ITEM_SIZE, seed=2))
        blocks = list(item.manifest.blocks)
        served = net.corrupt(2, [blocks[len(blocks) // 2]])
        why = "although a block could only be had corrupted"
        await _fails(net.retrieve(0, item.content_id), REFUSALS, f"retrieve {why}")
        assert served, "the corrupted block was never fetched: the check proved nothing (the kit lies on fetch-block)"
        pieces: list[bytes] = []
        await _fails(net.stream(0, item.content_id, into=pieces), REFUSALS, f"stream {why}")
        assert _is_prefix(pieces, item), "stream yielded bytes that are not the item's"


async def check_corrupted_holder_beside_an_honest_one(factory: RetrievalFactory) -> None:
    """Two holders, one serving corrupted blocks: the right bytes, or ItemNotFound / BlockCorrupted; never
    wrong bytes."""
    star = {0: [1, 2], 1: [0], 2: [0]}
    async with factory.open_overlay(star) as net:
        data = payload(ITEM_SIZE, seed=3)
        item = await net.hold(1, data)
        await net.hold(2, data)
        net.corrupt(1, item.manifest.blocks[1::2])
        for _ in range(2):
            try:
                got = await net.retrieve(0, item.content_id)
                assert got == data, "retrieve returned bytes that are not the item's"
            except REFUSALS:
                pass
            pieces: list[bytes] = []
            try:
                await net.stream(0, item.content_id, into=pieces)
                assert b"".join(pieces) == data, "stream yielded bytes that are not the item's"
            except REFUSALS:
                assert _is_prefix(pieces, item), "stream yielded bytes that are not the item's"


async def check_unreachable_known_host(factory: RetrievalFactory) -> None:
    """A known host that is gone (an address nobody listens on) does not stop the retrieval."""
    async with factory.open_overlay(line(3)) as net:
        querier = net.nodes[0]
        gone = PeerInfo("0" * 64, PeerAddress(querier.address.host, 65535))
        pinned(querier).pin([gone, *pinned(querier).peers()])
        data = payload(20_000, seed=4)
        item = await net.hold(2, data)
        for how in HOW:
            assert await net.get(0, item.content_id, how) == data, f"{how} past an unreachable host"


async def check_concurrent_retrievals(factory: RetrievalFactory) -> None:
    """Different items held at different nodes, retrieved and streamed at once from two nodes."""
    size = factory.hops + 1
    async with factory.open_overlay(line(size)) as net:
        items: dict[str, bytes] = {}
        for i in range(8):
            data = payload(3000 + 9000 * i, seed=10 + i)
            items[(await net.hold(size - 1 - i % 2, data)).content_id] = data
        results: dict[tuple[int, str, str], bytes] = {}

        async def fetch(index: int, content_id: str, how: str) -> None:
            results[index, content_id, how] = await net.get(index, content_id, how)

        async with anyio.create_task_group() as tg:
            for content_id in items:
                for index in (0, 1):
                    for how in HOW:
                        tg.start_soon(fetch, index, content_id, how)
        wrong = [key for key, got in results.items() if got != items[key[1]]]
        assert len(results) == len(items) * 4 and not wrong, f"{len(wrong)} concurrent retrieval(s) were wrong"


RETRIEVAL_CHECKS: list[Callable[[RetrievalFactory], Awaitable[None]]] = [
    check_retrieves_across_hops,
    check_streams_in_order,
    check_edge_items,
    check_missing_item_not_found,
    check_deadline_bounds_a_missing_item,
    check_invalid_content_id,
    check_sole_holder_serving_a_corrupted_block,
    check_corrupted_holder_beside_an_honest_one,
    check_unreachable_known_host,
    check_concurrent_retrievals,
]


# -- capabilities (butter.capabilities) ---------------------------------------------------------------------


class BarePersistence:
    """A :class:`~butter.slots.Persistence` offering none of the optional capabilities: ``keep`` checks that
    the item is complete in the block store, and that is all (no replicas, nothing to tell)."""

    def __init__(self, node: NodeServices) -> None:
        self.node = node

    def available_storage(self) -> int:
        return self.node.blocks.free

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def keep(self, content_id: str) -> None:
        manifest = await self.node.blocks.get(content_id)
        if manifest is None:
            raise IncompleteItem((content_id,))
        missing = [b for b in load_manifest(content_id, manifest).blocks if not await self.node.blocks.has(b)]
        if missing:
            raise IncompleteItem(tuple(missing))

    async def hand_off(self) -> None:
        return None


class _BarePersistencePlugin:
    @hookimpl
    def butter_persistence(self, node: NodeServices) -> BarePersistence:
        return BarePersistence(node)


async def check_without_persistence_capabilities(factory: RetrievalFactory) -> None:
    """Beside a persistence driver that offers no capability (:class:`BarePersistence`: no
    :class:`~butter.capabilities.ItemHolders`, :class:`~butter.capabilities.KeptItems` nor
    :class:`~butter.capabilities.GroupStatus`), the driver still retrieves and streams an item ``hops`` away:
    a consumer of those capabilities degrades, it does not fail."""
    bare = replace(factory, settings={**factory.settings, "persistence": {"driver": ""}},
                   plugins=(*factory.plugins, _BarePersistencePlugin()))
    async with bare.open_overlay(line(factory.hops + 1)) as net:
        for node in net.nodes:
            assert isinstance(node.persistence, BarePersistence)
            assert not isinstance(node.persistence, ItemHolders | KeptItems | GroupStatus)
        data = payload(ITEM_SIZE, seed=30)
        item = await net.hold(factory.hops, data)
        for how in HOW:
            got = await net.get(0, item.content_id, how)
            assert got == data, f"{how} beside a persistence driver offering no capability"


async def check_counters(factory: RetrievalFactory) -> None:
    """A driver offering :class:`~butter.capabilities.Counters` (``isinstance``; one that does not passes)
    maps counter names to non-negative ints, before and after a retrieval, and hands out a snapshot: changing
    what ``counters()`` returned changes nothing the next call returns."""
    async with factory.open_overlay(line(2)) as net:
        retrieval = net.retrieval(0)
        if not isinstance(retrieval, Counters):
            return
        before = dict(retrieval.counters())
        item = await net.hold(1, payload(5000, seed=31))
        await net.retrieve(0, item.content_id)
        after = retrieval.counters()
        for snapshot in (before, after):
            assert all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in snapshot.items()), (
                f"counters() must map names to non-negative ints, not {dict(snapshot)}")
        if isinstance(after, dict) and after:
            key = next(iter(after))
            after[key] += 1_000_000
            assert retrieval.counters()[key] < after[key], "counters() must return a snapshot, not its own state"


RETRIEVAL_CHECKS.extend([check_without_persistence_capabilities, check_counters])
