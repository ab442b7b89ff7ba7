"""The node's document API: create, append to, read and delete multi-writer documents (formats:
:mod:`butter.documents`; the rules: docs/protocol/documents.md).

Every node keeps a :class:`~butter.documents.DocumentBook` (the replicas of the documents it has seen) and
serves two core routes:

* ``get-document``, body ``{"doc": hex, "heads": [hex, ...], "hops": int}``: reply ``{"revisions": [bytes,
  ...], "heads": [hex, ...], "tombstone": bytes | nil}``: the revisions this node has that a replica with
  those ``heads`` lacks (parents first, at most ``REPLY_BYTES`` or half of ``max_frame`` of them: a reader
  asks again with its new heads, up to ``MAX_ROUNDS`` times, while they keep coming), and this node's
  heads; for a deleted document the genesis and the creator's tombstone. With ``hops`` (0 to 2, default 0) above 0 the
  node first asks up to 8 of its own peers.
* ``put-revisions``, body ``{"doc": hex, "revisions": [bytes, ...], "tombstone": bytes | nil}``: offer
  revisions (parents first) and maybe a tombstone (with the genesis among the revisions when the receiver
  may not know the document); reply ``{"outcomes": {outcome: count}, "lacking": bool}``: what the receiver
  did with them (:data:`~butter.documents.Offer`), and whether it still lacks some of their ancestors (then
  the sender pushes every revision it has, once).

Creating signs a genesis revision, keeps it and pushes it to up to ``fanout`` peers. Appending first reads
(so that the new revision follows every head found), signs a revision whose parents are the heads, keeps it
and pushes it. Reading asks up to ``fanout`` peers at once with ``hops`` 1, merges every valid revision
into this node's replica, pushes what each answering peer lacks back to it (read repair), and returns the
merged document with how many peers answered; a read that learns of the creator's tombstone passes it on
to the peers that answered. Deleting signs the creator's tombstone
(:mod:`butter.tombstones`, kept in the node's tombstone book) and pushes it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from .blocks import is_block_id
from .documents import (
    MAX_BODY,
    MAX_PARENTS,
    MAX_REVISION_SIZE,
    Document,
    DocumentBook,
    DocumentState,
    Offer,
    Revision,
    sign_revision,
)
from .errors import ButterError, DocumentDeleted, DocumentNotFound, RevisionRefused, TombstoneRejected
from .peers import PeerAddress
from .records import public_key_bytes
from .tombstones import MAX_TOMBSTONE_SIZE, Tombstone, TombstoneBook, sign_tombstone

if TYPE_CHECKING:
    from ._routes import RouteRequest
    from .slots import NodeServices

__all__ = ["DEFAULT_FANOUT", "Documents"]

DEFAULT_FANOUT = 8  # peers a read asks, and an append pushes to
READ_HOPS = 1  # a read's peers each ask their own peers once: documents are found up to two hops away
MAX_HOPS = 2  # the most hops a get-document may ask for
MAX_HEADS = 256  # heads a get-document may name
MAX_ROUNDS = 8  # get-document rounds a read makes with one peer while the document does not fit in one reply
REPLY_BYTES = 2 * 1024 * 1024  # bytes of revisions in one get-document reply or put-revisions body
DOCUMENT_BOOK_CAPACITY = 1_000  # documents a node keeps replicas of
ROUTE_GET = "get-document"
ROUTE_PUT = "put-revisions"
_REVISIONS = codec.sequence(codec.blob(max_length=MAX_REVISION_SIZE), max_items=REPLY_BYTES // 128)


class Documents:
    """Documents for one node, and the ``get-document`` and ``put-revisions`` routes, which it registers on
    ``node`` when built. Tombstones of deleted documents go to ``tombstones``, the node's tombstone book."""

    def __init__(self, node: NodeServices, owner: Ed25519PrivateKey, tombstones: TombstoneBook) -> None:
        self._node = node
        self._owner = owner
        self._tombstones = tombstones
        self.book = DocumentBook(DOCUMENT_BOOK_CAPACITY)
        node.route(ROUTE_GET, self._serve_get)
        node.route(ROUTE_PUT, self._serve_put)

    # -- the API -----------------------------------------------------------------------------------------------

    async def create(self, body: bytes, *, writers: Iterable[bytes] | None, owner: Ed25519PrivateKey | None,
                     fanout: int, timeout: float | None) -> str:
        """See :meth:`butter.Node.create_document`."""
        key = owner if owner is not None else self._owner
        genesis = sign_revision(key, body, document_id=None, at=int(time.time()),
                                writers=None if writers is None else list(writers))
        self.book.offer(genesis.id, genesis)
        await self._push(genesis.id, [genesis], None, self._sample(fanout), timeout)
        return genesis.id

    async def append(self, document_id: str, body: bytes, *, owner: Ed25519PrivateKey | None, fanout: int,
                     timeout: float | None) -> Revision:
        """See :meth:`butter.Node.append`."""
        key = owner if owner is not None else self._owner
        if len(body) > MAX_BODY:
            raise ValueError(f"a revision's body is at most {MAX_BODY} bytes, got {len(body)}")
        state = (await self._read(document_id, fanout=fanout, timeout=timeout))[0]
        if not state.may_write(public_key_bytes(key)):
            raise RevisionRefused(f"document {document_id}: this key is not on the creator's writers list")
        heads = sorted(state.heads(), key=lambda r: (r.clock, r.author, r.id), reverse=True)[:MAX_PARENTS]
        revision = sign_revision(key, body, document_id=document_id, parents=heads, at=int(time.time()))
        outcome = self.book.offer(document_id, revision)
        if outcome != "accepted":
            raise RevisionRefused(f"document {document_id}: this replica refused the new revision ({outcome})")
        await self._push(document_id, [revision], state, self._sample(fanout), timeout)
        return revision

    async def read(self, document_id: str, *, fanout: int, timeout: float | None) -> Document:
        """See :meth:`butter.Node.read_document`."""
        state, asked, answered = await self._read(document_id, fanout=fanout, timeout=timeout)
        return Document.of(state, asked=asked, answered=answered)

    async def delete(self, document_id: str, *, owner: Ed25519PrivateKey | None, tombstone_expiry: float,
                     fanout: int, timeout: float | None) -> int:
        """See :meth:`butter.Node.delete_document`."""
        key = owner if owner is not None else self._owner
        state = (await self._read(document_id, fanout=fanout, timeout=timeout))[0]
        if state.owner != public_key_bytes(key):
            raise TombstoneRejected(f"document {document_id} belongs to another creator key: only it can delete it")
        now = int(time.time())
        tombstone = sign_tombstone(key, document_id, deleted_at=now, expires_at=now + int(tombstone_expiry))
        self._accept_tombstone(tombstone, state.genesis)
        outcomes = await self._push(document_id, [state.genesis], None, self._sample(fanout), timeout,
                                    tombstone=tombstone)
        return sum(o.get("tombstone") in ("accepted", "duplicate") for o in outcomes.values())

    # -- reading and merging ---------------------------------------------------------------------------------

    def check_deleted(self, document_id: str) -> None:
        """Raise :class:`~butter.errors.DocumentDeleted` when this node keeps the creator's tombstone."""
        tombstone = self._tombstones.get(document_id, now=time.time())
        if tombstone is not None and self.book.genesis(document_id) is not None:
            raise DocumentDeleted(document_id, tombstone.encode())

    async def _read(self, document_id: str, *, fanout: int, timeout: float | None) -> tuple[DocumentState, int, int]:
        """Gather ``document_id`` from up to ``fanout`` peers, repair those that lack revisions; the merged
        replica, how many peers were asked and how many answered. Raises ``ValueError``,
        :class:`~butter.errors.DocumentDeleted` or :class:`~butter.errors.DocumentNotFound`."""
        if not is_block_id(document_id):
            raise ValueError(f"a document id is 64 lowercase hex characters, got {document_id!r:.80}")
        self.check_deleted(document_id)
        peers = self._sample(fanout)
        answers = await self._gather(document_id, peers, timeout, READ_HOPS)
        tombstone = self._tombstones.get(document_id, now=time.time())
        genesis = self.book.genesis(document_id)
        if tombstone is not None and genesis is not None:  # learnt now: the peers that answered learn it too
            await self._push(document_id, [genesis], None, list(answers), timeout, tombstone=tombstone)
            raise DocumentDeleted(document_id, tombstone.encode())
        state = self.book.get(document_id)
        if state is None:
            raise DocumentNotFound(document_id, f"document {document_id} not found on this node or the "
                                                f"{len(answers)} of {len(peers)} peer(s) that answered",
                                   answered=len(answers))
        mine = {r.id for r in state.heads()}
        behind = [address for address, heads in answers.items() if set(heads) != mine]
        async with anyio.create_task_group() as tg:
            for address in behind:
                tg.start_soon(self._repair, state, answers[address], address, timeout)
        return state, len(peers), len(answers)

    async def _repair(self, state: DocumentState, heads: tuple[str, ...], address: PeerAddress,
                      timeout: float | None) -> None:
        lacking = state.lacking(heads)
        if lacking:
            await self._push(state.document_id, lacking, state, [address], timeout)

    async def _gather(self, document_id: str, peers: list[PeerAddress], timeout: float | None, hops: int) -> dict[
            PeerAddress, tuple[str, ...]]:
        """Ask ``peers`` at once for what they have of ``document_id`` beyond this node's heads, each to ask
        its own peers first while ``hops`` is above 0; every revision is offered to the book (the invalid
        ones are counted there) and a tombstone to the tombstone book. Returns the heads each peer that
        answered has; peers that failed or answered malformed bytes are left out."""
        answers: dict[PeerAddress, tuple[str, ...]] = {}

        async def ask(address: PeerAddress) -> None:
            for _ in range(MAX_ROUNDS):  # more rounds only while a large document keeps coming
                state = self.book.get(document_id)
                mine = [r.id for r in state.heads()] if state is not None else []
                body = codec.encode({"doc": document_id, "heads": mine[:MAX_HEADS], "hops": hops})
                try:
                    reply = await self._node.request(address, ROUTE_GET, body, timeout=timeout)
                    fields = codec.Fields.decode(reply, REPLY_BYTES * 2, what="get-document reply")
                    revisions = [Revision.decode(b) for b in fields.value("revisions", _REVISIONS, default=())]
                    heads = fields.sequence("heads", codec.content_id, max_items=MAX_HEADS, default=())
                    stone = fields.blob("tombstone", max_length=MAX_TOMBSTONE_SIZE, default=None)
                    tombstone = Tombstone.decode(stone) if stone is not None else None
                except ButterError:
                    return
                outcomes = self._take(document_id, revisions, tombstone)
                answers[address] = tuple(heads)
                state = self.book.get(document_id)
                if state is None or all(h in state for h in heads) or not outcomes.get("accepted"):
                    return

        async with anyio.create_task_group() as tg:
            for address in peers:
                tg.start_soon(ask, address)
        return answers

    def _take(self, document_id: str, revisions: list[Revision], tombstone: Tombstone | None) -> dict[
            str, int | str]:
        """Offer ``revisions`` (parents first) and ``tombstone`` of ``document_id``: the count of each
        revision outcome, and under ``"tombstone"`` the tombstone's outcome (``"forged"`` for another id)."""
        counts: dict[str, int | str] = {}
        for revision in revisions:
            outcome: Offer = self.book.offer(document_id, revision)
            counts[outcome] = int(counts.get(outcome, 0)) + 1
        if tombstone is not None and tombstone.content_id != document_id:
            counts["tombstone"] = "forged"
        elif tombstone is not None:
            genesis = self.book.genesis(document_id) or next(
                (r for r in revisions if r.genesis and r.id == document_id), None)
            counts["tombstone"] = self._accept_tombstone(tombstone, genesis)
        return counts

    def _accept_tombstone(self, tombstone: Tombstone, genesis: Revision | None) -> str:
        """Offer the creator's ``tombstone`` checked against ``genesis`` (``None``: unknown document); when
        accepted, drop the document's revisions here."""
        try:
            owner = DocumentState(genesis) if genesis is not None else None
        except RevisionRefused:
            owner = None
        outcome = self._tombstones.offer(tombstone, owner, now=time.time())
        if outcome == "accepted" and genesis is not None:
            self.book.drop(genesis)
        return outcome

    def _limit(self) -> int:
        """Bytes of revisions in one message: ``REPLY_BYTES``, or half the frame limit when that is less."""
        return min(REPLY_BYTES, int(self._node.settings.max_frame) // 2)

    # -- pushing -----------------------------------------------------------------------------------------------

    def _sample(self, fanout: int, *, besides: PeerAddress | None = None) -> list[PeerAddress]:
        addresses = [peer.address for peer in self._node.hosts.peers() if peer.address != besides]
        return random.sample(addresses, min(fanout, len(addresses)))

    async def _push(self, document_id: str, revisions: list[Revision], state: DocumentState | None,
                    peers: list[PeerAddress], timeout: float | None, *, tombstone: Tombstone | None = None) -> dict[
            PeerAddress, dict[str, int | str]]:
        """Send ``revisions`` (and ``tombstone``) of ``document_id`` to each of ``peers`` at once; a peer that
        answers that it lacks ancestors gets every revision of ``state`` (once). What each answered
        (failures left out)."""
        outcomes: dict[PeerAddress, dict[str, int | str]] = {}

        async def push(address: PeerAddress) -> None:
            try:
                reply = await self._send(address, document_id, revisions, tombstone, timeout)
                if reply[1] and state is not None:
                    reply = await self._send(address, document_id, list(state.history()), None, timeout)
                outcomes[address] = reply[0]
            except ButterError:
                pass  # a peer that cannot be reached now learns the revisions from a later read

        async with anyio.create_task_group() as tg:
            for address in peers:
                tg.start_soon(push, address)
        return outcomes

    async def _send(self, address: PeerAddress, document_id: str, revisions: list[Revision],
                    tombstone: Tombstone | None, timeout: float | None) -> tuple[dict[str, int | str], bool]:
        body = codec.encode({"doc": document_id, "revisions": _fit([r.encode() for r in revisions], self._limit()),
                             "tombstone": tombstone.encode() if tombstone is not None else None})
        reply = await self._node.request(address, ROUTE_PUT, body, timeout=timeout)
        fields = codec.Fields.decode(reply, 4096, what="put-revisions reply")
        outcomes = fields.submap("outcomes", default=None)
        counts = {str(k): v for k, v in outcomes.raw.items() if type(v) in (int, str)} if outcomes else {}
        return counts, fields.boolean("lacking", default=False)

    # -- routes ------------------------------------------------------------------------------------------------

    async def _serve_get(self, request: RouteRequest) -> bytes:
        """Body ``{"doc": hex, "heads": [hex, ...], "hops": 0 to 2 (default 0)}``; reply ``{"revisions": [bytes,
        ...], "heads": [hex, ...], "tombstone": bytes | nil}``. With ``hops`` above 0 this node first asks up
        to 8 of its peers (but the caller) with ``hops - 1``, each within a quarter of ``request_timeout``."""
        fields = codec.Fields.decode(request.body, 64 * 1024, what="get-document body")
        document_id = fields.value("doc", codec.content_id)
        heads = fields.sequence("heads", codec.content_id, max_items=MAX_HEADS, default=())
        hops = fields.integer("hops", low=0, high=MAX_HOPS, default=0)
        if hops:
            peers = self._sample(DEFAULT_FANOUT, besides=request.caller.address)
            await self._gather(document_id, peers, self._node.settings.request_timeout / 4, hops - 1)
        tombstone = self._tombstones.get(document_id, now=time.time())
        genesis = self.book.genesis(document_id)
        if tombstone is not None and genesis is not None:
            return codec.encode({"revisions": [genesis.encode()], "heads": [], "tombstone": tombstone.encode()})
        state = self.book.get(document_id)
        if state is None:
            return codec.encode({"revisions": [], "heads": [], "tombstone": None})
        return codec.encode({"revisions": _fit([r.encode() for r in state.lacking(heads)], self._limit()),
                             "heads": [r.id for r in state.heads()][:MAX_HEADS], "tombstone": None})

    async def _serve_put(self, request: RouteRequest) -> bytes:
        """Body ``{"doc": hex, "revisions": [bytes, ...], "tombstone": bytes | nil}``; reply ``{"outcomes":
        {outcome: count, "tombstone": outcome}, "lacking": bool}``. Error ``bad-request`` for a malformed
        one."""
        fields = codec.Fields.decode(request.body, REPLY_BYTES * 2, what="put-revisions body")
        document_id = fields.value("doc", codec.content_id)
        revisions = [Revision.decode(b) for b in fields.value("revisions", _REVISIONS, default=())]
        stone = fields.blob("tombstone", max_length=MAX_TOMBSTONE_SIZE, default=None)
        tombstone = Tombstone.decode(stone) if stone is not None else None
        counts = self._take(document_id, revisions, tombstone)
        state = self.book.get(document_id)
        lacking = state.pending > 0 if state is not None else self.book.genesis(document_id) is None
        return codec.encode({"outcomes": counts, "lacking": lacking})


def _fit(encoded: list[bytes], limit: int) -> list[bytes]:
    """The first of ``encoded`` that fit in ``limit`` bytes."""
    total, out = 0, []
    for blob in encoded:
        total += len(blob)
        if total > limit:
            break
        out.append(blob)
    return out

