"""One retrieval: drive the search rings (:class:`~._protocol.Search`) over the network, then fetch the
manifest and the blocks from the holders found, retrying failed blocks on other holders, every request
inside its peer's window (:class:`~butter.pacing.PeerWindows`) and the whole within the retrieval's deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from butter.blocks import BlockId, Manifest, load_manifest
from butter.errors import (
    BlockCorrupted,
    ButterError,
    InvalidManifest,
    ItemDeleted,
    ItemNotFound,
    PeerGone,
    PeerUnreachable,
    ProtocolError,
    RemoteError,
)
from butter.pacing import is_overloaded
from butter.peers import PeerAddress
from butter.tombstones import Tombstone

from ._messages import Miss, QueryReply, decode_reply
from ._options import Ring
from ._protocol import Ask, Search
from ._stats import QueryStats

if TYPE_CHECKING:
    from ._service import BfsRetrieval

__all__ = ["Job", "Policy"]

log = logging.getLogger("butter.bfs")

ROUTE_QUERY = "bfs-query"


@dataclass(frozen=True, slots=True)
class Policy:
    """How one retrieval searches: the rings of the expanding ring, requests in flight, digest hints."""

    rings: tuple[Ring, ...]
    parallelism: int
    hints: bool


@dataclass(frozen=True, slots=True)
class _Failed:
    replied: bool
    unreachable: bool  # not asked again by this search
    why: str
    busy: bool = False  # the peer answered "overloaded"
    gone: bool = False  # nothing listens at the address (PeerGone): reported dead to host management


_Outcomes = MemoryObjectSendStream[tuple[Ask, "QueryReply | _Failed"]]


class Job:
    """The state of one retrieval of ``content_id``: holders found, holders that failed, the current ring,
    and its deadline (``timeout`` seconds from the start, or from the last :meth:`renew`)."""

    def __init__(self, service: BfsRetrieval, content_id: str, policy: Policy, timeout: float) -> None:
        self.service = service
        self.node = service.node
        self.content_id = content_id
        self.policy = policy
        self.timeout = timeout
        self.stats = QueryStats(content_id)
        self.started = anyio.current_time()
        self.deadline = self.started + timeout
        self.timed_out = False
        self.holders: list[PeerAddress] = []
        self.bad: set[PeerAddress] = set()
        self.dead: set[PeerAddress] = set()
        self.generation = 0  # bumped whenever new holders arrive
        self._rings = iter(policy.rings)
        self._search: Search | None = None  # every ring continues it
        self._ring = 0  # rings started
        self._lock = anyio.Lock()
        self.tombstone: Tombstone | None = None  # the item's tombstone, from a miss (its signature checked)

    # -- the deadline -------------------------------------------------------------------------------------

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """Run the block until :attr:`deadline`; if it passes first, cancel the block and raise
        :class:`~butter.errors.ItemNotFound` saying so (``timed_out``)."""
        with anyio.CancelScope(deadline=self.deadline) as scope:
            yield
        if scope.cancelled_caught:
            self.timed_out = True
            raise self.not_found()

    def renew(self) -> None:
        """Move the deadline to ``timeout`` seconds from now (``stream()``: for each window of blocks)."""
        self.deadline = anyio.current_time() + self.timeout

    # -- finding holders ----------------------------------------------------------------------------------

    async def find_more(self, seen_generation: int) -> bool:
        """Search until a holder not known before turns up; ``False`` once every ring is exhausted.

        Concurrent callers share the work: one that waited while another found holders returns at once.
        """
        async with self._lock:
            if self.generation != seen_generation:
                return True
            known = set(self.holders)
            while True:
                search = self._search
                if search is None or search.exhausted:
                    ring = next(self._rings, None)
                    if ring is None:
                        return False
                    search = self._next_ring(ring)
                await self._drive(search, lambda s: any(h not in known for h in s.holders))
                fresh = [h for h in search.holders if h not in known and h not in self.holders]
                if fresh:
                    self.holders.extend(fresh)
                    self.generation += 1
                    return True

    def _next_ring(self, ring: Ring) -> Search:
        """Start the search with its first ring, or widen it to the next (:meth:`Search.widen`)."""
        known = [p.address for p in self.node.hosts.peers()]
        hinted = self.service.book.matching(self.content_id, known) if self.policy.hints else []
        skip = [self.node.address, *self.dead, *self.bad, *self.holders]
        query_id = self.service.new_query_id()
        if self._search is None:
            self._search = Search(
                self.content_id, query_id=query_id, ttl=ring.ttl, fraction=ring.fraction, known=known,
                hinted=hinted, hints=self.policy.hints, rng=self.service.rng, skip=skip,
                max_frontier=self.service.options.max_frontier,
            )
        else:
            self._search.widen(query_id=query_id, ttl=ring.ttl, fraction=ring.fraction, known=known, hinted=hinted,
                               skip=skip)
        self._ring += 1
        self.stats.rings = self._ring
        self.stats.ttl = ring.ttl
        return self._search

    async def _drive(self, search: Search, should_stop: Callable[[Search], bool]) -> None:
        """Send the search's asks, at most ``parallelism`` at once, until ``should_stop(search)`` or exhaustion."""
        send, receive = anyio.create_memory_object_stream[tuple[Ask, QueryReply | _Failed]](self.policy.parallelism)
        try:
            with send, receive:
                async with anyio.create_task_group() as tg:
                    self._fill(search, tg, send)
                    while search.in_flight and not should_stop(search):
                        ask, outcome = await receive.receive()
                        self._feed(search, ask, outcome)
                        if should_stop(search):
                            break
                        self._fill(search, tg, send)
                    tg.cancel_scope.cancel()
        finally:  # the deadline may cancel the search: what it asked still counts
            search.abandon()

    def _fill(self, search: Search, tg: TaskGroup, send: _Outcomes) -> None:
        while (ask := search.next_ask(self.policy.parallelism)) is not None:
            tg.start_soon(self._ask, ask, send)

    async def _ask(self, ask: Ask, send: _Outcomes) -> None:
        outcome: QueryReply | _Failed
        body = ask.query.encode()
        try:
            reply = await self.service.windows.call(ask.address, lambda: self.node.request(
                ask.address, ROUTE_QUERY, body, timeout=self.service.options.query_timeout))
            outcome = decode_reply(reply)
        except PeerUnreachable as exc:
            outcome = _Failed(replied=False, unreachable=True, why=str(exc), gone=isinstance(exc, PeerGone))
        except RemoteError as exc:  # an error reply: "overloaded" is asked again later
            outcome = _Failed(replied=True, unreachable=False, why=str(exc), busy=is_overloaded(exc))
        except ProtocolError as exc:  # a reply we cannot read
            outcome = _Failed(replied=True, unreachable=False, why=str(exc))
        except ButterError as exc:  # timeout, or a request too large to send
            outcome = _Failed(replied=False, unreachable=False, why=str(exc))
        await send.send((ask, outcome))

    def _feed(self, search: Search, ask: Ask, outcome: QueryReply | _Failed) -> None:
        if isinstance(outcome, _Failed) and outcome.busy:
            self.stats.overloaded += 1
            search.on_busy(ask)
        elif isinstance(outcome, _Failed):
            log.debug("query %s to %s failed: %s", self.content_id[:12], ask.address, outcome.why)
            search.on_failure(ask, replied=outcome.replied, unreachable=outcome.unreachable)
            if outcome.gone:
                self._report_dead(ask.address)
        else:
            search.on_reply(ask, outcome)
            if isinstance(outcome, Miss) and outcome.tombstone is not None and self.tombstone is None:
                self._note_tombstone(ask.address, outcome.tombstone)

    def _note_tombstone(self, address: PeerAddress, data: bytes) -> None:
        """Keep a tombstone a miss carried if it is of this item and its signature verifies. Whether its key
        is the owner's only a manifest tells: the search goes on, and the tombstone ends the retrieval only
        when no holder serves the item, or one serves a manifest naming that key as owner."""
        try:
            tombstone = Tombstone.decode(data).check_signature()
        except ProtocolError as exc:
            log.debug("bad tombstone of %s from %s: %s", self.content_id[:12], address, exc)
            return
        if tombstone.content_id == self.content_id and tombstone.expires_at > time.time():
            self.tombstone = tombstone

    def _report_dead(self, address: PeerAddress) -> None:
        if address not in self.dead:
            self.dead.add(address)
            self.stats.dead_reported += 1
            self.node.hosts.report_dead(address)

    # -- fetching -----------------------------------------------------------------------------------------

    async def block(self, address: BlockId, index: int) -> bytes:
        """Block ``address`` (verified), from the local store or a holder; holders are tried in turn,
        starting at ``index`` so that blocks spread over them, and more are searched for when all failed. A
        holder that answers ``overloaded`` is not a failure: it is asked again after the others (its window
        waits out its backoff)."""
        local = await self.node.blocks.get(address)
        if local is not None:
            return local
        while True:
            generation = self.generation
            candidates = [h for h in self.holders if h not in self.bad and h not in self.dead]
            if not candidates:
                if not await self.find_more(generation):
                    raise self.not_found(address)
                continue
            start = index % len(candidates)
            for holder in candidates[start:] + candidates[:start]:
                if holder in self.bad or holder in self.dead:
                    continue
                data = await self._fetch_from(holder, address)
                if data is not None:
                    return data

    async def _fetch_from(self, holder: PeerAddress, address: BlockId) -> bytes | None:
        """The block from ``holder``, or ``None``: then ``holder`` is marked bad, unless it was only busy."""
        self.stats.fetch_requests += 1
        try:
            data = await self.service.windows.call(holder, lambda: self.node.fetch_block(
                holder, address, timeout=self.service.options.fetch_timeout))
        except BlockCorrupted:
            self.stats.fetch_replies += 1
            self.stats.corrupted += 1
            log.warning("block %s from %s failed verification; trying another holder", address[:12], holder)
        except PeerGone:
            self._report_dead(holder)
        except PeerUnreachable as exc:  # busy or a lost connection: bad for this retrieval only
            log.debug("fetching block %s from %s failed: %s", address[:12], holder, exc)
        except RemoteError as exc:
            self.stats.fetch_replies += 1
            if is_overloaded(exc):
                self.stats.overloaded += 1
                return None  # busy, not bad: asked again later
            log.debug("holder %s refused block %s: %s", holder, address[:12], exc)
        except ButterError as exc:
            log.debug("fetching block %s from %s failed: %s", address[:12], holder, exc)
        else:
            self.stats.fetch_replies += 1
            return data
        self.bad.add(holder)
        return None

    async def manifest(self) -> tuple[Manifest, list[BlockId]]:
        """The item's manifest (local or fetched, verified) and the distinct blocks not stored here.

        A node that holds the whole item answers from its own store without a message."""
        data = await self.node.blocks.get(self.content_id)
        if data is None:
            if not await self.find_more(self.generation):
                raise self.not_found()
            data = await self.block(self.content_id, 0)
        try:
            manifest = load_manifest(self.content_id, data)
        except (InvalidManifest, BlockCorrupted) as exc:
            raise ItemNotFound(f"{self.content_id} names a block that is not an item manifest: {exc}") from None
        if self.tombstone is not None and self.tombstone.public_key == manifest.owner:  # a holder missed it
            raise ItemDeleted(self.content_id, self.tombstone.encode(),
                              f"item {self.content_id} was deleted by its owner (a holder found still has it)")
        missing = [a for a in dict.fromkeys(manifest.blocks) if not await self.node.blocks.has(a)]
        self.stats.blocks = len(manifest.blocks)
        self.stats.local = self._search is None and not missing
        return manifest, missing

    async def many(self, addresses: Sequence[BlockId], first_index: int, concurrency: int) -> dict[str, bytes]:
        """Fetch ``addresses`` with at most ``concurrency`` in flight; raises the first failure."""
        out: dict[str, bytes] = {}
        work = iter(enumerate(addresses, first_index))

        async def worker() -> None:
            for index, address in work:
                out[address] = await self.block(address, index)

        with first_error():
            async with anyio.create_task_group() as tg:
                for _ in range(min(concurrency, len(addresses))):
                    tg.start_soon(worker)
        return out

    # -- reporting ----------------------------------------------------------------------------------------

    def not_found(self, block: str | None = None) -> ItemNotFound:
        """The error that ends this retrieval, its fields saying how far the search went; ``block``: the
        block no holder could supply."""
        seconds = anyio.current_time() - self.started
        search = self._search

        def error(message: str = "") -> ItemNotFound:
            return ItemNotFound(message, content_id=self.content_id, hosts_asked=search.asked if search else 0,
                                rings=self._ring, hops=search.max_depth if search else 0, holders=len(self.holders),
                                timed_out=self.timed_out, seconds=seconds)

        if self.tombstone is not None:
            return ItemDeleted(self.content_id, self.tombstone.encode(),
                               f"item {self.content_id} was deleted: a node searched keeps a tombstone signed by "
                               f"key {self.tombstone.public_key.hex()[:16]}, and no holder served it")
        notes = []
        if self._ring:
            last = self.policy.rings[self._ring - 1]
            notes.append(f"last ring: TTL {'no limit' if last.ttl is None else last.ttl}, fraction {last.fraction:g}")
        if self.timed_out:
            notes.append(f"deadline {self.timeout:g} s")
        if block is not None and self.holders:
            notes.append(f"no holder could supply block {block[:16]}")
        return error(f"{error()} ({'; '.join(notes)})" if notes else "")

    def finish(self, error: BaseException | None = None) -> QueryStats:
        stats = self.stats
        if self._search is not None:
            stats.search_requests = self._search.requests
            stats.search_replies = self._search.replies
            stats.duplicates = self._search.duplicates
            stats.nodes_asked = self._search.asked
            stats.max_depth = self._search.max_depth
        stats.holders = len(self.holders)
        stats.timed_out = self.timed_out
        stats.seconds = anyio.current_time() - self.started
        if error is not None:
            stats.found = False
            stats.error = f"{type(error).__name__}: {error}"
        return stats


@contextmanager
def first_error() -> Iterator[None]:
    """Let the first :class:`~butter.ButterError` out of a task group as itself, not in an ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        matched, _ = group.split(ButterError)
        if matched is not None:
            leaves = list(_leaves(matched))
            if leaves:
                raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
