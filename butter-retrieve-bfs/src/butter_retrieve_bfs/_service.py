"""The ``bfs`` retrieval service: its two routes, the digest pulls, and ``retrieve`` / ``stream`` / ``locate``.

See ``_protocol.py`` for the search rules and this package's README for the messages and the measurements
behind the defaults. What bfs asks of the persistence driver goes through two optional capabilities
(:mod:`butter.capabilities`), found once at start: :class:`~butter.capabilities.ItemHolders` (a hit names
the item's other holders) and :class:`~butter.capabilities.KeptItems` (this node's digest lists the items
it keeps). Without one, bfs says so once in the log and works on without it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from butter.blocks import assemble, is_block_id
from butter.capabilities import ItemHolders, KeptItems
from butter.errors import ButterError, InvalidManifest, ItemNotFound, PeerGone, ProtocolError
from butter.hookspecs import hookimpl
from butter.peers import PeerAddress, PeerInfo

from ._digest import DigestBook, LocalDigest
from ._job import ROUTE_QUERY, Job, Policy
from ._messages import DigestAsk, DigestKept, DigestReply, Miss, Query
from ._options import BfsOptions, Ring
from ._protocol import QueryHandler
from ._stats import QueryStats, RetrievalTotals

if TYPE_CHECKING:
    from butter import RouteRequest
    from butter.slots import NodeServices

__all__ = ["ROUTE_DIGEST", "ROUTE_DIGEST_PUSH", "ROUTE_QUERY", "BfsRetrieval"]

log = logging.getLogger("butter.bfs")

ROUTE_DIGEST = "bfs-digest"
ROUTE_DIGEST_PUSH = "bfs-digest-push"
DIGEST_REBUILD = 1.0  # seconds: this node's own digest is rebuilt (and pushed when it changed) at most this often
MAX_SUBSCRIBERS = 1024  # nodes this node's digest is pushed to, at most (the most recent pullers)


class BfsRetrieval:
    """A :class:`~butter.slots.Retrieval` by iterative random breadth-first search.

    * ``last_query``: the :class:`QueryStats` of the last retrieval that ended (``None`` before any).
    * ``totals``: counters since start (:class:`RetrievalTotals`), digest pulls included.
    * ``handler.stats``: what this node answered to others' queries (handled, duplicates refused, ...).
    * ``counters()`` (:class:`~butter.capabilities.Counters`): both of the above as one snapshot, the
      answering side's names prefixed ``queries_`` (``queries_handled``, ``queries_duplicates``, ...).
    """

    def __init__(self, node: NodeServices, options: BfsOptions) -> None:
        self.node = node
        self.options = options
        self.rng = random.Random(options.seed)
        self.handler = QueryHandler(
            rng=self.rng,
            max_sample=options.max_sample,
            max_hints=options.max_hints,
            seen_capacity=options.seen_capacity,
            seen_expiry=options.seen_expiry,
        )
        self.book = DigestBook(
            options.digest_memory, interval=options.digest_interval, max_interval=options.digest_max_interval
        )
        self.last_query: QueryStats | None = None
        self.totals = RetrievalTotals()
        self._digest: LocalDigest | None = None
        self._digest_built = float("-inf")
        self._pushed: LocalDigest | None = None  # the digest last pushed to the subscribers
        self._pushed_at = float("-inf")  # when (the node's clock)
        # who pulled this node's digest (authenticated node id -> the address it listens on and the tag of the
        # digest it was last sent), oldest first
        self._subscribers: OrderedDict[str, tuple[PeerAddress, bytes]] = OrderedDict()
        self._pulls = anyio.CapacityLimiter(options.max_concurrency)
        self.windows = options.windows(self.rng)
        self._holders: ItemHolders | None = None  # found at start (run)
        self._kept: KeptItems | None = None
        node.route(ROUTE_QUERY, self._serve_query)
        node.route(ROUTE_DIGEST, self._serve_digest)
        node.route(ROUTE_DIGEST_PUSH, self._serve_digest_push)
        node.subscribe(self)  # peer discovered / lost

    # -- Retrieval protocol -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """When hints are on: pull the digests of known hosts as they fall due (checked every
        ``digest_interval`` seconds ± 20 %), and push this node's digest to those that pulled it when what it
        keeps changed (checked every :data:`DIGEST_REBUILD` seconds). First find the capabilities bfs uses, logging once
        what is off without them."""
        self._find_capabilities()
        self._pushed = await self.local_digest()  # what a new node's hosts pull when they admit it
        task_status.started()
        if not self.options.hints:
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._push_loop)
            interval = self.options.digest_interval
            await anyio.sleep(self.rng.uniform(0, interval))
            while True:
                await self.pull_digests()
                await anyio.sleep(interval * self.rng.uniform(0.8, 1.2))

    async def _push_loop(self) -> None:
        await anyio.sleep(self.rng.uniform(0, DIGEST_REBUILD))
        while True:
            await self.push_digest()
            await anyio.sleep(DIGEST_REBUILD)

    async def retrieve(
        self,
        content_id: str,
        *,
        timeout: float | None = None,
        rings: Sequence[Ring] | None = None,
        parallelism: int | None = None,
        hints: bool | None = None,
    ) -> bytes:
        """Find item ``content_id`` (hex) and return its bytes, every block verified, within ``timeout``
        seconds (``None``: the ``retrieve_timeout`` option, 30 s by default), search and fetching together.

        The other keyword arguments override the options for this call (the benchmark compares strategies
        with them). Raises :class:`~butter.errors.ItemNotFound` when the search fails, no holder found can
        supply a block, or the deadline passes; its fields say how many nodes were asked and how far the
        search went.
        """
        job = self._job(content_id, timeout, rings, parallelism, hints)
        error: BaseException | None = None
        try:
            with job.bounded():
                data = await self._fetch_item(job)
            job.stats.found = True
            return data
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(job, error)

    async def _fetch_item(self, job: Job) -> bytes:
        manifest, missing = await job.manifest()
        # block i from holder i mod h, counting from 0 like stream(): holder 0 is the one whose hit answered
        # (known live), so a one-block item is fetched whole from it, not from a member it named that may
        # have died since its group last heard from it
        fetched = await job.many(missing, 0, self.options.fetch_concurrency) if missing else {}
        blocks = {**fetched}
        for address in dict.fromkeys(manifest.blocks):
            if address not in blocks:
                local = await self.node.blocks.get(address)
                blocks[address] = local if local is not None else await job.block(address, 0)
        return assemble(manifest, blocks)

    async def stream(
        self,
        content_id: str,
        *,
        timeout: float | None = None,
        rings: Sequence[Ring] | None = None,
        parallelism: int | None = None,
        hints: bool | None = None,
    ) -> AsyncIterator[bytes]:
        """Like :meth:`retrieve`, but yield the item's blocks in order, each verified. At most
        ``stream_window`` blocks are fetched (in parallel) and held at a time. Finding the item (its holders
        and manifest) takes at most ``timeout`` seconds, and so does each window of blocks; the time the
        consumer takes between blocks does not count."""
        job = self._job(content_id, timeout, rings, parallelism, hints)
        error: BaseException | None = None
        try:
            with job.bounded():
                manifest, _ = await job.manifest()
            window = self.options.stream_window
            for start in range(0, len(manifest.blocks), window):
                addresses = manifest.blocks[start : start + window]
                job.renew()
                with job.bounded():
                    fetched = await job.many(list(dict.fromkeys(addresses)), start, window)
                for offset, address in enumerate(addresses):
                    data = fetched[address]
                    expected = manifest.block_length(start + offset)
                    if len(data) != expected:
                        raise InvalidManifest(
                            f"block {start + offset} ({address}) is {len(data)} bytes, the manifest implies {expected}"
                        )
                    yield data
                del fetched
            job.stats.found = True
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(job, error)

    async def locate(
        self,
        content_id: str,
        *,
        timeout: float | None = None,
        rings: Sequence[Ring] | None = None,
        parallelism: int | None = None,
        hints: bool | None = None,
    ) -> list[PeerAddress]:
        """Search only: the holders of ``content_id`` found by the first successful ring (this node's own
        address when it holds the item), within ``timeout`` seconds as :meth:`retrieve`. Raises
        :class:`~butter.errors.ItemNotFound` (:class:`~butter.errors.ItemDeleted` when a node searched keeps
        the item's tombstone). The :class:`~butter.capabilities.LocateItems` capability."""
        job = self._job(content_id, timeout, rings, parallelism, hints)
        error: BaseException | None = None
        try:
            if await self.node.blocks.has(content_id) or self._keeps(content_id):
                job.stats.local = job.stats.found = True
                return [self.node.address]
            with job.bounded():
                found = await job.find_more(job.generation)
            if not found:
                raise job.not_found()
            job.stats.found = True
            return list(job.holders)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(job, error)

    def _job(
        self,
        content_id: str,
        timeout: float | None,
        rings: Sequence[Ring] | None,
        parallelism: int | None,
        hints: bool | None,
    ) -> Job:
        if not is_block_id(content_id):
            raise ItemNotFound(f"{content_id!r:.80} is not a content id (64 lowercase hex characters)",
                               content_id=content_id)
        timeout = self.options.retrieve_timeout if timeout is None else timeout
        if not timeout > 0:
            raise ValueError(f"a retrieval's timeout must be positive seconds, got {timeout}")
        policy = Policy(
            tuple(rings) if rings is not None else tuple(self.options.rings),
            parallelism if parallelism is not None else self.options.parallelism,
            hints if hints is not None else self.options.hints,
        )
        if not policy.rings or policy.parallelism < 1:
            raise ValueError("a retrieval needs at least one ring and a parallelism of at least 1")
        return Job(self, content_id, policy, timeout)

    def new_query_id(self) -> bytes:
        """A fresh 16-byte query id: drawn from the seeded generator when ``seed`` is set (a reproducible
        simulation), otherwise from the OS, so that no peer can predict it and answer it in advance."""
        return self.rng.randbytes(16) if self.options.seed is not None else secrets.token_bytes(16)

    def _finish(self, job: Job, error: BaseException | None) -> None:
        stats = job.finish(error)
        self.last_query = stats
        self.totals.add(stats)
        log.debug("retrieval %s", stats.summary())

    # -- routes -------------------------------------------------------------------------------------------

    async def _serve_query(self, request: RouteRequest) -> bytes:
        query = Query.decode(request.body)
        tombstone = self.node.tombstones.get(query.content_id, now=time.time())
        holds = tombstone is None and (await self.node.blocks.has(query.content_id) or self._keeps(query.content_id))

        def known() -> list[PeerAddress]:
            return [p.address for p in self.node.hosts.peers()]

        reply = self.handler.handle(
            query,
            anyio.current_time(),
            holds=holds,
            members=lambda: self._members(query.content_id),
            known=known,
            hinted=lambda: self.book.matching(query.content_id, known()),
        )
        if tombstone is not None and isinstance(reply, Miss):
            reply = dataclasses.replace(reply, tombstone=tombstone.encode())
        return reply.encode()

    def _keeps(self, content_id: str) -> bool:
        """Whether persistence keeps ``content_id`` here (:class:`ItemHolders` names holders of it): a signed
        record's name, kept by a group, has no manifest in the store but is held all the same."""
        if self._holders is None:
            return False
        try:
            return bool(self._holders.holders(content_id))
        except Exception:  # a third-party persistence driver: its failure must not fail the query
            log.exception("ItemHolders.holders failed")
            return False

    def _members(self, content_id: str) -> list[PeerAddress]:
        """The item's other holders, as the :class:`ItemHolders` capability names them ([] without it)."""
        if self._holders is None:
            return []
        try:
            addresses = self._holders.holders(content_id)
        except Exception:  # a third-party persistence driver: its failure must not fail the hit
            log.exception("ItemHolders.holders failed")
            return []
        return [a for a in addresses if isinstance(a, PeerAddress) and a != self.node.address]

    def _find_capabilities(self) -> None:
        """Find :class:`ItemHolders` and :class:`KeptItems` among the node's drivers; log (INFO, once) what
        is off for each one missing."""
        self._holders = self.node.capability(ItemHolders)
        self._kept = self.node.capability(KeptItems)
        if self._holders is None:
            log.info("bfs: this node's drivers offer no ItemHolders (a persistence capability): hits will name "
                     "no other holders")
        if self._kept is None:
            log.info("bfs: this node's drivers offer no KeptItems (a persistence capability): its digest lists "
                     "every block in its store, not only the items it keeps")

    def counters(self) -> Mapping[str, int]:
        """Counters since start (:class:`~butter.capabilities.Counters`): :class:`RetrievalTotals` and, prefixed
        ``queries_``, :class:`HandlerStats`."""
        totals = {name: int(value) for name, value in asdict(self.totals).items() if name != "per_query"}
        answered = {f"queries_{name}": value for name, value in asdict(self.handler.stats).items()}
        return {**totals, **answered}

    def _serve_digest_push(self, request: RouteRequest) -> bytes:
        """Keep a pushed digest from a host whose digest this node keeps (found in the digest book by the node
        id the transport authenticated; the book holds only known hosts' digests). An unauthenticated or
        unknown sender's digest is not kept, and the reply ``kept: false`` ends the sender's pushes here."""
        reply = DigestReply.decode(request.body)
        if reply.same:
            raise ProtocolError("a pushed digest must carry its filter")
        sender = request.caller.node_id
        address = self.book.address_of(sender) if sender is not None and self.options.hints else None
        kept = address is not None and self.book.update(address, reply, anyio.current_time(), pushed=True)
        return DigestKept(kept=kept).encode()

    async def _serve_digest(self, request: RouteRequest) -> bytes:
        """Answer with this node's digest; an asker that names its address and whose node id the transport
        authenticated is subscribed: the digest is pushed to it when it changes."""
        ask = DigestAsk.decode(request.body)
        sender = request.caller.node_id
        digest = await self.local_digest()
        if ask.asker is not None and sender is not None and ask.asker != self.node.address:
            self._subscribers[sender] = (ask.asker, digest.tag)
            self._subscribers.move_to_end(sender)
            while len(self._subscribers) > MAX_SUBSCRIBERS:
                self._subscribers.popitem(last=False)
        return digest.reply(ask.have).encode()

    # -- digests ------------------------------------------------------------------------------------------

    async def local_digest(self) -> LocalDigest:
        """This node's digest, rebuilt at most once a second from the items it holds: the kept items when a
        driver offers :class:`KeptItems`, otherwise every block id in its block store."""
        now = anyio.current_time()
        if self._digest is None or now - self._digest_built >= DIGEST_REBUILD:
            self._digest_built = now
            ids = await self._held_ids()
            digest = LocalDigest.build(ids, self.options.digest_fp_rate)
            if self._digest is None or digest.tag != self._digest.tag:
                self._digest = digest
        return self._digest

    async def push_digest(self) -> None:
        """Push this node's digest, when it changed since the last push and the last push is at least
        ``digest_push_interval`` seconds old, to every subscriber (the nodes that pulled it: they know this
        node and use digests) but those that pulled it since it changed and those that are members of every
        group whose item it gained or lost (they answer a query for it themselves, and learn of this node from
        their group): one ``bfs-digest-push`` each, in parallel, at most ``max_concurrency`` at a time. So a
        node that has just gained an item (a new replica) is hinted at once rather than after each of them next
        polls its host-quality record and pulls again, and the changes of one interval go as one push. A
        subscriber that answers ``kept: false`` (it no longer keeps this node's digest) or is gone is dropped.
        Never raises."""
        now = anyio.current_time()
        if now - self._pushed_at < self.options.digest_push_interval:
            return
        digest = await self.local_digest()
        last = self._pushed
        if last is not None and digest.tag == last.tag:
            return
        self._pushed, self._pushed_at = digest, now
        members = self._members_of_all(digest.ids ^ last.ids if last is not None else digest.ids)
        body = digest.reply(None).encode()
        async with anyio.create_task_group() as tg:
            for node_id, (address, tag) in list(self._subscribers.items()):
                if tag != digest.tag and address not in members:
                    self._subscribers[node_id] = (address, digest.tag)
                    tg.start_soon(self._push_to, node_id, address, body)

    def _members_of_all(self, content_ids: set[str] | frozenset[str]) -> set[PeerAddress]:
        """The nodes this node knows as members of the group of every item in ``content_ids`` (none when one
        of them has no group here: an item it lost)."""
        members: set[PeerAddress] | None = None
        for content_id in content_ids:
            named = set(self._members(content_id))
            members = named if members is None else members & named
            if not members:
                return set()
        return members or set()

    async def _push_to(self, node_id: str, address: PeerAddress, body: bytes) -> None:
        async with self._pulls:
            self.totals.digest_pushes += 1
            try:
                reply = await self.windows.call(address, lambda: self.node.request(
                    address, ROUTE_DIGEST_PUSH, body, timeout=self.options.query_timeout))
                kept = DigestKept.decode(reply).kept
            except PeerGone:
                kept = False
            except ButterError as exc:
                log.debug("digest not pushed to %s: %s", address, exc)
                return
        if not kept and self._subscribers.get(node_id, (None,))[0] == address:
            del self._subscribers[node_id]

    async def _held_ids(self) -> list[str]:
        if self._kept is not None:
            return [cid for cid in self._kept.kept_items() if isinstance(cid, str)]
        return await self.node.blocks.block_ids()

    async def pull_digests(self) -> None:
        """Pull the digest of every known host that is due (see :class:`DigestBook`); forget the digests of
        hosts no longer known."""
        known = self.node.hosts.peers()
        self.book.prune({p.address for p in known})
        now = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for peer in known:
                if self.book.due(peer.address, now, advertised(peer), peer.last_seen):
                    tg.start_soon(self.pull_digest, peer)

    async def pull_digest(self, peer: PeerInfo) -> None:
        """Pull one host's digest (conditionally: an unchanged digest costs a few bytes) if it is due, given
        the tag its record advertises (:meth:`DigestBook.due`). Never raises."""
        address = peer.address
        if not self.book.due(address, anyio.current_time(), advertised(peer), peer.last_seen):
            return
        async with self._pulls:
            self.totals.digest_requests += 1
            ask = DigestAsk(self.book.tag(address), self.node.address).encode()
            try:
                body = await self.windows.call(address, lambda: self.node.request(
                    address, ROUTE_DIGEST, ask, timeout=self.options.query_timeout))
            except PeerGone:
                self.book.forget(address)
                self.node.hosts.report_dead(address)
                return
            except ButterError as exc:
                log.debug("no digest from %s: %s", address, exc)
                return
        self.totals.digest_replies += 1
        self.totals.digest_bytes += len(body)
        try:
            reply = DigestReply.decode(body)
        except ProtocolError as exc:
            log.debug("bad digest from %s: %s", address, exc)
            return
        self.book.update(address, reply, anyio.current_time(), node_id=peer.node_id)

    # -- event hooks --------------------------------------------------------------------------------------

    @hookimpl
    def butter_peer_discovered(self, node: NodeServices, peer: PeerInfo) -> Any:
        """Pull a new host's digest at once, so it can be hinted before the next round."""
        if node is self.node and self.options.hints and not node.closing:
            return self.pull_digest(peer)
        return None

    @hookimpl
    def butter_peer_lost(self, node: NodeServices, peer: PeerInfo) -> None:
        if node is self.node:
            self.book.forget(peer.address)


def advertised(peer: PeerInfo) -> bytes | None:
    """The tag of what ``peer`` keeps, from its host-quality record (``None`` when it advertises none)."""
    return bytes.fromhex(peer.quality.kept) if peer.quality.kept else None
