"""The node's naming API: publish signed records and resolve names (formats: :mod:`butter.records`).

Every node keeps a :class:`~butter.records.RecordBook` (the newest valid record of each name it has seen)
and serves two core routes:

* ``get-record``, body ``{"name": hex, "hops": int}``: reply ``{"record": bytes | nil}``, the newest
  unexpired record of the name this node keeps, after asking its own peers first when ``hops`` (0 to 2,
  default 0) is above 0.
* ``put-record``, body ``{"record": bytes}``: offer a record; reply ``{"outcome": str}``, one of
  :data:`~butter.records.Offer`'s (a forged, expired or older record is refused and counted, never kept).

Publishing and resolving both ask, at the same time, up to ``fanout`` peers that host management knows
with ``hops`` 1 (each asks up to 8 of its own peers before answering) and up to ``fanout`` of the name's
holders that a search finds (:class:`~butter.capabilities.LocateItems`, offered by bfs) with ``hops`` 0, and
verify every answer. Publishing then signs a record with a sequence above every one found, keeps it and
pushes it to those peers and holders; when no holder took it, it hands it to persistence
(:class:`~butter.capabilities.KeepRecords`, offered by pcg), which starts the name's group: holders that
converge on its newest record through their heartbeats and count as holders of the name for a search.
Resolving returns the highest valid sequence among the answers and this node's own; it keeps that record,
and pushes it back to each peer or holder that answered an older one or none (read repair).

With ``KeepRecords``, a node that does not hold a name's group only caches a record of it that it received
or resolved: for ``RECORD_CACHE_TTL`` seconds, after which it neither serves nor uses it, so a stale copy
does not outlive an update or a deletion by long. Without ``KeepRecords`` or ``LocateItems`` a record lives on
the nodes that published, received or resolved it, and a resolve finds it up to two hops from any of them.

Deleting a name (:meth:`Naming.publish` with ``deleted``) publishes its deletion record
(:func:`~butter.records.sign_deletion`) the same way: it replaces the older records everywhere it reaches,
holders refuse them from then on (they are ``stale``), and a resolve that finds it raises
:class:`~butter.errors.RecordDeleted`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from ._spread import each_peer, sample_peers
from .blocks import is_block_id
from .capabilities import ItemHolders, KeepRecords, LocateItems
from .errors import ButterError, RecordDeleted, RecordNotFound
from .peers import PeerAddress
from .records import (
    MAX_RECORD_SIZE,
    ROUTE_GET_RECORD,
    Offer,
    RecordBook,
    RecordValue,
    SignedRecord,
    public_key_bytes,
    record_name,
    sign_record,
)

if TYPE_CHECKING:
    from ._routes import RouteRequest
    from .slots import NodeServices

__all__ = ["DEFAULT_FANOUT", "DEFAULT_RECORD_EXPIRY", "Naming"]

log = logging.getLogger("butter.node")

DEFAULT_FANOUT = 8  # peers asked by a resolve, and pushed to by a publish
DEFAULT_RECORD_EXPIRY = 86_400.0  # seconds a published record stays valid
RESOLVE_HOPS = 1  # a resolve's peers each ask their own peers once: records are found up to two hops away
MAX_HOPS = 2  # the most hops a get-record may ask for
RECORD_BOOK_CAPACITY = 1_000  # names a node keeps records of (each record is at most 4 KiB)
RECORD_CACHE_TTL = 5.0  # seconds a node outside a name's group keeps a record of it, when persistence keeps names


class Naming:
    """Publish and resolve for one node, and the ``get-record`` and ``put-record`` routes, which it registers
    on ``node`` when built."""

    def __init__(self, node: NodeServices, owner: Ed25519PrivateKey) -> None:
        self._node = node
        self._owner = owner
        self.book = RecordBook(RECORD_BOOK_CAPACITY)
        self._said_no_keeper = False  # the missing KeepRecords is logged once
        self._taken_at: dict[str, float] = {}  # name -> when its record was last taken (anyio clock, seconds)
        node.route(ROUTE_GET_RECORD, self._serve_get)
        node.route("put-record", self._serve_put)

    async def publish(
        self,
        label: str,
        value: RecordValue,
        *,
        owner: Ed25519PrivateKey | None,
        record_expiry: float,
        fanout: int,
        timeout: float | None,
        deleted: bool = False,
    ) -> SignedRecord:
        """See :meth:`butter.Node.publish`; with ``deleted`` (``value`` is then ``b""``),
        :meth:`butter.Node.unpublish`."""
        key = owner if owner is not None else self._owner
        name = record_name(public_key_bytes(key), label)
        peers, holders = await self._ask(name, fanout, timeout)
        now = time.time()
        current = self._get(name)
        # Above every sequence seen, and above the clock in milliseconds, so that a user moving to a machine
        # that reaches none of the old records still publishes a newer one (as long as the clocks roughly agree).
        sequence = max(int(now * 1000), current.sequence + 1 if current is not None else 0)
        record = sign_record(key, label, value, sequence=sequence, expires_at=int(now + record_expiry),
                             deleted=deleted)
        self._offer(record)
        took = await self._push(record, [*peers, *holders], timeout)
        keeper = self._node.capability(KeepRecords)
        if keeper is not None:
            if not took & set(holders) or not self._cache_only(name):  # no group took it, or this node's did
                await keeper.keep_record(record)
        elif not self._said_no_keeper:
            self._said_no_keeper = True
            log.info("no driver of this node offers KeepRecords (a persistence capability): published records "
                     "live only on the nodes that receive or resolve them")
        return record

    async def resolve(self, name: str, *, fanout: int, timeout: float | None) -> SignedRecord:
        """See :meth:`butter.Node.resolve`."""
        if not is_block_id(name):
            raise ValueError(f"a record name is 64 lowercase hex characters, got {name!r}")
        peers, holders = await self._ask(name, fanout, timeout)
        found = {**peers, **holders}
        best = self._get(name)
        if best is None:
            raise RecordNotFound(name, f"no valid record of name {name} on this node or the {len(found)} peer(s) "
                                       "and holder(s) asked")
        behind = [address for address, record in found.items() if record is None or best.replaces(record)]
        await self._push(best, behind, timeout)
        if best.deleted:
            raise RecordDeleted(name, best)
        return best

    # -- the book -------------------------------------------------------------------------------------------

    def _offer(self, record: SignedRecord, name: str | None = None) -> Offer:
        """Offer ``record`` (as the record of ``name`` when given) to the book; remember when it was taken (or
        given again: a cached copy that a peer or holder still answers is fresh)."""
        outcome = self.book.offer(record, now=time.time(), name=name)
        if outcome in ("accepted", "duplicate"):
            self._taken_at[record.name] = anyio.current_time()
        return outcome

    def _get(self, name: str) -> SignedRecord | None:
        """The newest record of ``name`` this node may use: unexpired and, when persistence keeps names
        (:class:`~butter.capabilities.KeepRecords`) but not this one here, taken within ``RECORD_CACHE_TTL``
        seconds (an older cached copy is dropped)."""
        record = self.book.get(name, now=time.time())
        if record is None or not self._cache_only(name):
            return record
        if anyio.current_time() - self._taken_at.get(name, float("-inf")) <= RECORD_CACHE_TTL:
            return record
        self.book.discard(name)
        self._taken_at.pop(name, None)
        return None

    def _cache_only(self, name: str) -> bool:
        """Whether persistence keeps names in groups and this node holds no group of ``name``."""
        holders = self._node.capability(ItemHolders)
        return self._node.capability(KeepRecords) is not None and holders is not None and not holders.holders(name)

    # -- talking to peers ---------------------------------------------------------------------------------

    async def _ask(self, name: str, fanout: int, timeout: float | None) -> tuple[
            dict[PeerAddress, SignedRecord | None], dict[PeerAddress, SignedRecord | None]]:
        """Ask, at the same time, up to ``fanout`` peers (``hops`` 1) and up to ``fanout`` of the holders that
        a search finds (``hops`` 0) for their record of ``name``; every valid answer is offered to the book.
        Returns what the peers and what the holders answered (:meth:`_gather`)."""
        holders: dict[PeerAddress, SignedRecord | None] = {}

        async def ask_holders() -> None:
            found = await self._holders(name, timeout)
            holders.update(await self._gather(name, random.sample(found, min(fanout, len(found))), timeout, 0))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask_holders)
            peers = await self._gather(name, sample_peers(self._node, fanout), timeout, RESOLVE_HOPS)
        return peers, holders

    async def _holders(self, name: str, timeout: float | None) -> list[PeerAddress]:
        """The holders of ``name`` that retrieval's search finds (but this node); ``[]`` when none is found or
        no driver offers :class:`~butter.capabilities.LocateItems`."""
        locate = self._node.capability(LocateItems)
        if locate is None:
            return []
        try:
            found = await locate.locate(name, timeout=timeout)
        except ButterError:
            return []
        return [address for address in dict.fromkeys(found) if address != self._node.address]

    async def _gather(self, name: str, peers: list[PeerAddress], timeout: float | None, hops: int) -> dict[
            PeerAddress, SignedRecord | None]:
        """Ask ``peers`` at once for their record of ``name``, each to ask its own peers first while ``hops``
        is above 0; every valid answer is offered to the book (the invalid ones are counted there). Returns
        what each peer that answered gave (``None``: no record or a refused one); peers that failed are left
        out."""
        body = codec.encode({"name": name, "hops": hops})

        async def ask(address: PeerAddress) -> SignedRecord | None:
            reply = await self._node.request(address, ROUTE_GET_RECORD, body, timeout=timeout)
            blob = codec.Fields.decode(reply, MAX_RECORD_SIZE * 2, what="get-record reply").blob(
                "record", max_length=MAX_RECORD_SIZE, default=None)
            record = SignedRecord.decode(blob) if blob is not None else None
            if record is not None and self._offer(record, name) not in (
                    "accepted", "duplicate", "stale"):
                return None
            return record

        return await each_peer(peers, ask)

    async def _push(self, record: SignedRecord, peers: Iterable[PeerAddress], timeout: float | None) -> set[
            PeerAddress]:
        """Send ``record`` to ``peers`` at once; returns those that took it (``accepted`` or ``duplicate``)."""
        body = codec.encode({"record": record.encode()})

        async def push(address: PeerAddress) -> str:
            reply = await self._node.request(address, "put-record", body, timeout=timeout)
            outcome: str = codec.Fields.decode(reply, 1024, what="put-record reply").string("outcome", max_length=16)
            return outcome

        # a peer that cannot be reached now learns the record from a later resolve
        outcomes = await each_peer(peers, push)
        return {address for address, outcome in outcomes.items() if outcome in ("accepted", "duplicate")}

    # -- routes ---------------------------------------------------------------------------------------------

    async def _serve_get(self, request: RouteRequest) -> bytes:
        """Body ``{"name": hex, "hops": 0 to 2 (default 0)}``; reply ``{"record": bytes | nil}``. With ``hops``
        above 0 this node first asks up to 8 of its peers (but the caller) with ``hops - 1``, each within a
        quarter of ``request_timeout``."""
        fields = codec.Fields.decode(request.body, MAX_RECORD_SIZE, what="get-record body")
        name = fields.value("name", codec.content_id)
        hops = fields.integer("hops", low=0, high=MAX_HOPS, default=0)
        if hops:
            peers = sample_peers(self._node, DEFAULT_FANOUT, besides=request.caller.address)
            await self._gather(name, peers, self._node.settings.request_timeout / 4, hops - 1)
        record = self._get(name)
        return codec.encode({"record": record.encode() if record is not None else None})

    async def _serve_put(self, request: RouteRequest) -> bytes:
        """Body ``{"record": bytes}``; reply ``{"outcome": str}``. Error ``bad-request`` for a malformed one."""
        fields = codec.Fields.decode(request.body, MAX_RECORD_SIZE * 2, what="put-record body")
        record = SignedRecord.decode(fields.blob("record", max_length=MAX_RECORD_SIZE))
        return codec.encode({"outcome": self._offer(record)})

