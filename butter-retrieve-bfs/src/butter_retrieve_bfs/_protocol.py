"""BFS query handling, sans-IO: the answering side (:class:`QueryHandler`) and the asking side (:class:`Search`).

Rules these classes keep (iterative model, random BFS, digest hints; in prose: docs/protocol/bfs.md):

* **Iterative.** The querier asks each node itself; a node answers and never forwards. A node that holds the
  item answers :class:`~._messages.Hit` with the other holders it knows; one that does not answers
  :class:`~._messages.Miss` with a random sample, without replacement, of ``⌈fraction × known⌉`` of its
  known hosts (at most ``max_sample``), plus the known hosts whose digest says they may hold the item.
* **TTL per hop.** The querier's own known hosts are hop 1; an address learnt from a hop-``d`` node is hop
  ``d + 1``. A hop-``d`` node is sent ``ttl - d``, the hops still allowed beyond it; at 0 it is on the
  horizon and returns no addresses, so nothing beyond ``ttl`` hops is ever asked.
* **Duplicate suppression, twice.** The querier asks an address at most once per search (its visited set),
  and a node handles a query id at most once: a repeat within ``seen_expiry`` seconds is answered
  :class:`~._messages.Seen` and counted, never handled again (a bounded cache of ``seen_capacity`` ids).
* **Order.** Hinted addresses first (their digest says they may hold the item), then by hop, then by how
  many replies of this search named the address (more first), then at random: breadth-first; within a hop,
  the nodes most others know first. A node many know is long-lived and well connected: it knows more hosts
  and holds more of their digests, so its miss is the likelier to hint a holder (high-degree seeking,
  Adamic, Lukose, Puniyani & Huberman, "Search in power-law networks", Phys. Rev. E 64, 2001).
* **Rings continue.** A wider ring (:meth:`Search.widen`) goes on from the earlier ring's frontier with a
  fresh query id, asking again only the nodes that must say more: those on the old horizon in hop order,
  those asked with a smaller fraction or that gave no answer after every node not asked yet.
* **Busy is not a failure.** A node that answers ``overloaded`` is asked again later, behind the addresses
  of its hop not asked yet (so the search goes elsewhere first), as often as it takes: the driver's per-peer
  backoff spaces the asks, and the retrieval's deadline ends them.
* Counting: every ask is a request; every answer, error replies included, is a reply; asks abandoned when
  the search stops early are requests without replies.

Times are seconds on any monotonic clock; randomness comes from the ``rng`` the caller passes.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from butter.peers import PeerAddress

from ._messages import MAX_ADDRESSES, MAX_TTL, Hit, Miss, Query, QueryReply, Seen

__all__ = ["Ask", "HandlerStats", "QueryHandler", "Search"]


# -- the answering side -----------------------------------------------------------------------------------


@dataclass(slots=True)
class HandlerStats:
    """What a node answered: ``handled`` distinct queries (``hits`` + ``misses``) and ``duplicates``
    refused because their query id was already handled."""

    handled: int = 0
    hits: int = 0
    misses: int = 0
    duplicates: int = 0
    addresses_sent: int = 0
    hints_sent: int = 0


class QueryHandler:
    """Answers ``bfs-query`` requests from a snapshot of the node's state; holds only the seen-id cache."""

    def __init__(
        self,
        *,
        rng: random.Random,
        max_sample: int = 64,
        max_hints: int = 8,
        seen_capacity: int = 4096,
        seen_expiry: float = 120.0,
    ) -> None:
        self.rng = rng
        self.max_sample = min(max_sample, MAX_ADDRESSES)
        self.max_hints = min(max_hints, MAX_ADDRESSES)
        self.seen_capacity = seen_capacity
        self.seen_expiry = seen_expiry
        self.stats = HandlerStats()
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # query id -> when it was first handled

    def first_time(self, query_id: bytes, now: float) -> bool:
        """Record ``query_id``; ``False`` when it was already handled within ``seen_expiry`` seconds."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.seen_expiry and len(self._seen) < self.seen_capacity:
                break
            del self._seen[oldest]
        if query_id in self._seen:
            return False
        self._seen[query_id] = now
        return True

    def handle(
        self,
        query: Query,
        now: float,
        *,
        holds: bool,
        members: Callable[[], Sequence[PeerAddress]],
        known: Callable[[], Sequence[PeerAddress]],
        hinted: Callable[[], Sequence[PeerAddress]],
    ) -> QueryReply:
        """The answer to ``query``. ``holds``: whether this node has the item; the callables are only called
        when their answer is needed: ``members`` (other holders) on a hit, ``known`` (known hosts) and
        ``hinted`` (known hosts whose digest matches) on a miss with ``ttl > 0``."""
        if not self.first_time(query.query_id, now):
            self.stats.duplicates += 1
            return Seen()
        self.stats.handled += 1
        if holds:
            self.stats.hits += 1
            return Hit(tuple(dict.fromkeys(members()))[:MAX_ADDRESSES])
        self.stats.misses += 1
        if query.ttl <= 0:
            return Miss()
        hosts = list(dict.fromkeys(known()))
        size = min(self.max_sample, len(hosts), math.ceil(query.fraction * len(hosts)))
        sample = tuple(self.rng.sample(hosts, size))
        hints: tuple[PeerAddress, ...] = ()
        if query.hints and self.max_hints:
            matches = list(dict.fromkeys(hinted()))
            hints = tuple(self.rng.sample(matches, min(self.max_hints, len(matches))))
        self.stats.addresses_sent += len(sample)
        self.stats.hints_sent += len(hints)
        return Miss(sample, hints)


# -- the asking side ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """One request the driver must send: ``query`` to ``address``, a node ``depth`` hops away."""

    address: PeerAddress
    query: Query
    depth: int
    hinted: bool


class Search:
    """An iterative breadth-first search for ``content_id``: its first ring, then each wider one (:meth:`widen`).

    ``known`` are the querier's known hosts (hop 1; a random ``fraction`` of them is asked) and ``hinted``
    those of them whose digest matches (all asked, first). ``ttl`` is the hop limit (``None``: no limit, sent
    as :data:`~._messages.MAX_TTL`). ``skip`` are addresses never to ask (the querier itself, hosts found
    dead). At most ``max_frontier`` addresses wait in the queue; further unhinted ones are dropped.

    Drive it: ``ask = search.next_ask(parallelism)`` (``None``: nothing to start now), send it, then feed the outcome
    with :meth:`on_reply` or :meth:`on_failure`; stop when the caller has the holders it wants or
    :attr:`exhausted` is true (then :meth:`widen` it, or give up).
    """

    def __init__(
        self,
        content_id: str,
        *,
        query_id: bytes,
        ttl: int | None,
        fraction: float,
        known: Sequence[PeerAddress],
        hinted: Sequence[PeerAddress] = (),
        hints: bool = True,
        rng: random.Random,
        skip: Sequence[PeerAddress] = (),
        max_frontier: int = 10_000,
    ) -> None:
        self.content_id = content_id
        self.query_id = query_id
        self.ttl = MAX_TTL if ttl is None else max(0, min(ttl, MAX_TTL))
        self.fraction = fraction
        self.hints = hints
        self.rng = rng
        self.max_frontier = max_frontier
        self.holders: list[PeerAddress] = []
        self.dead: list[PeerAddress] = []
        self.requests = 0
        self.replies = 0
        self.hits = 0
        self.duplicates = 0  # "seen" answers: a node had already handled this query id
        self.dropped = 0  # addresses not queued because the frontier was full
        self.busy = 0  # "overloaded" answers (each node asked again later)
        self.max_depth = 0  # deepest hop asked
        self.in_flight = 0
        self.hinted_in_flight = 0
        self._skip = set(skip)
        self.visited: set[PeerAddress] = set()  # addresses asked (read-only for callers)
        self._queued: dict[PeerAddress, tuple[int, int, int]] = {}  # best (class, depth, -named) per address
        self._named: dict[PeerAddress, int] = {}  # replies of this search that named the address
        self._retries: dict[PeerAddress, int] = {}  # "overloaded" answers per address
        self._retry: set[PeerAddress] = set()  # visited addresses queued to be asked again
        # class, depth, retries, -named, random, n, address
        self._heap: list[tuple[int, int, int, int, float, int, PeerAddress]] = []
        self._counter = 0
        self._asked: dict[PeerAddress, Ask] = {}  # the last ask sent to each address
        self._missed: set[PeerAddress] = set()  # addresses whose last query was answered with a miss
        self._first_hop(known, hinted)

    def _first_hop(self, known: Sequence[PeerAddress], hinted: Sequence[PeerAddress]) -> None:
        """Queue ``⌈fraction × known⌉`` of the querier's hosts (those asked already count toward it) and every
        hinted one."""
        hosts = [a for a in dict.fromkeys(known) if a not in self._skip]
        fresh = [a for a in hosts if a not in self.visited]
        wanted = math.ceil(self.fraction * len(hosts)) - (len(hosts) - len(fresh))
        for address in self.rng.sample(fresh, max(0, min(wanted, len(fresh)))):
            self._discover(address, 1, hinted=False)
        for address in hinted:
            self._discover(address, 1, hinted=True)

    def widen(
        self,
        *,
        query_id: bytes,
        ttl: int | None,
        fraction: float,
        known: Sequence[PeerAddress],
        hinted: Sequence[PeerAddress] = (),
        skip: Sequence[PeerAddress] = (),
    ) -> None:
        """Go on as the next, wider ring (``ttl`` and ``fraction`` at least this ring's; a fresh ``query_id``,
        since every node asked has handled the old one): continue from this ring's frontier instead of
        starting over (Lv, Cao, Cohen, Li & Shenker, "Search and replication in unstructured peer-to-peer
        networks", ICS 2002, restart the whole flood with a larger TTL; an iterative querier keeps what it
        learnt). Nodes asked already are asked again only when the wider ring needs them to say more: first
        those on the old horizon (they returned no addresses), in hop order with the rest of the querier's
        hosts (``known``, sampled to the new ``fraction``) and ``hinted``; after everything else, those asked
        with a smaller fraction and those that gave no answer (a timeout, an error, ``seen``). Hosts found
        dead, holders and ``skip`` are never asked again. Call it only when :attr:`exhausted`."""
        self.query_id = query_id
        self.ttl = MAX_TTL if ttl is None else max(0, min(ttl, MAX_TTL))
        self.fraction = fraction
        self._skip.update(skip)
        for address, ask in self._asked.items():
            if address in self._skip or address in self.dead or address in self.holders:
                continue
            if address not in self._missed:
                klass = 2  # no answer to use
            elif ask.query.ttl == 0 and ask.depth < self.ttl:
                klass = 1  # on the old horizon
            elif ask.query.ttl > 0 and fraction > ask.query.fraction:
                klass = 2  # named a smaller sample of its hosts
            else:
                continue
            self._retry.add(address)
            self._queue(address, (klass, ask.depth, -self._named.get(address, 0)))
        self._first_hop(known, hinted)
    @property
    def asked(self) -> int:
        """Distinct nodes asked so far."""
        return len(self.visited)

    @property
    def queued(self) -> int:
        return len({entry[-1] for entry in self._heap if entry[-1] not in self.visited or entry[-1] in self._retry})

    @property
    def exhausted(self) -> bool:
        """Nothing left to ask and nothing in flight: the current ring is over."""
        return self.in_flight == 0 and self._peek() is None

    def _discover(self, address: PeerAddress, depth: int, *, hinted: bool, named: bool = False) -> None:
        """Queue ``address`` (``named``: a reply named it, which counts toward its rank within its hop); an
        address queued already moves up when its rank improves."""
        if depth > self.ttl or address in self.visited or address in self._skip:
            return
        if named:
            self._named[address] = self._named.get(address, 0) + 1
        rank = (0 if hinted else 1, depth, -self._named.get(address, 0))
        best = self._queued.get(address)
        if best is not None and best <= rank:
            return
        if best is None and not hinted and len(self._queued) >= self.max_frontier:
            self.dropped += 1
            return
        self._queue(address, rank)

    def _queue(self, address: PeerAddress, rank: tuple[int, int, int]) -> None:
        self._queued[address] = rank
        self._counter += 1
        retries = self._retries.get(address, 0)
        heapq.heappush(self._heap, (rank[0], rank[1], retries, rank[2], self.rng.random(), self._counter, address))

    def _peek(self) -> tuple[int, int, int, int, float, int, PeerAddress] | None:
        while self._heap and self._heap[0][-1] in self.visited and self._heap[0][-1] not in self._retry:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def next_ask(self, parallelism: int = 1) -> Ask | None:
        """The next request to send, or ``None`` when none should start now: the queue is empty (answers in
        flight may refill it), ``parallelism`` asks are in flight, or a hinted ask is. A hinted ask is an
        expected hit, so nothing else starts until it is answered: that saves ``parallelism - 1`` requests
        per search for one round trip when the hint was wrong."""
        if self.hinted_in_flight or self.in_flight >= parallelism or self._peek() is None:
            return None
        klass, depth, _, _, _, _, address = heapq.heappop(self._heap)
        self.visited.add(address)
        self._retry.discard(address)
        self._queued.pop(address, None)
        self.in_flight += 1
        self.hinted_in_flight += klass == 0
        self.requests += 1
        self.max_depth = max(self.max_depth, depth)
        query = Query(self.query_id, self.content_id, self.ttl - depth, self.fraction, self.hints)
        ask = self._asked[address] = Ask(address, query, depth, klass == 0)
        self._missed.discard(address)
        return ask

    def on_reply(self, ask: Ask, reply: QueryReply) -> None:
        """Feed the answer to ``ask``."""
        self._landed(ask)
        self.replies += 1
        if isinstance(reply, Hit):
            self.hits += 1
            for address in (ask.address, *reply.members):
                if address not in self._skip and address not in self.dead and address not in self.holders:
                    self.holders.append(address)
        elif isinstance(reply, Miss):
            self._missed.add(ask.address)
            for address in reply.hints:
                self._discover(address, ask.depth + 1, hinted=True, named=True)
            for address in reply.peers:
                self._discover(address, ask.depth + 1, hinted=False, named=address not in reply.hints)
        elif isinstance(reply, Seen):
            self.duplicates += 1

    def on_busy(self, ask: Ask) -> None:
        """``ask`` was answered ``overloaded``: not a failure; queue its address again, behind the addresses
        of its hop not asked yet (and behind those answered ``overloaded`` fewer times)."""
        self.busy += 1
        self._retries[ask.address] = self._retries.get(ask.address, 0) + 1
        self._landed(ask)
        self.replies += 1
        self._retry.add(ask.address)
        self._queue(ask.address, (1 if not ask.hinted else 0, ask.depth, -self._named.get(ask.address, 0)))

    def on_failure(self, ask: Ask, *, replied: bool, unreachable: bool) -> None:
        """``ask`` failed: with an error reply (``replied``), or none at all; ``unreachable`` marks the
        address dead (it is not asked again by this search)."""
        self._landed(ask)
        if replied:
            self.replies += 1
        if unreachable and ask.address not in self.dead:
            self.dead.append(ask.address)

    def _landed(self, ask: Ask) -> None:
        self.in_flight -= 1
        self.hinted_in_flight -= ask.hinted

    def abandon(self) -> None:
        """Forget the asks still in flight (the driver cancelled them): they stay requests without replies."""
        self.in_flight = self.hinted_in_flight = 0
