"""The flooding search and the route that answers it.

A query ``{"q": 16-byte id, "cid": content id, "ttl": hops left}`` goes to every known host at once. A host
that holds the item's manifest answers with its own address; one that does not, and has hops left, floods
its own known hosts with ``ttl - 1`` and passes the first holder back; one that has seen the query id
already answers "no" at once, so each node works on a query once. The first holder found wins: the others
are cancelled. Then the manifest and the blocks are fetched from it, each verified against its address.
A retrieval keeps its deadline (``timeout``): past it, the flood is cancelled and ``ItemNotFound`` says so.

Flooding finds anything within ``ttl`` hops, at the price of a message to every node in range: compare
Butter's default ``bfs``, which asks a random fraction of hosts per ring.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping

import anyio
from anyio.abc import TaskStatus

from butter import RouteRequest
from butter.blocks import aiter_assemble, is_block_id, load_manifest
from butter.errors import BlockCorrupted, ButterError, ItemNotFound
from butter.peers import PeerAddress
from butter.slots import NodeServices

from ._messages import QUERY_ID_BYTES, FloodAnswer, FloodQuery

__all__ = ["ROUTE_FLOOD", "FloodRetrieval"]

ROUTE_FLOOD = "flood-query"


class FloodRetrieval:
    """A :class:`butter.slots.Retrieval` that floods queries up to ``ttl`` hops.

    It uses only what :class:`~butter.slots.NodeServices` offers (routes, requests, blocks, known hosts,
    settings), and offers one capability of :mod:`butter.capabilities`: :class:`~butter.capabilities.Counters`
    (``counters()``: ``queries_answered``, distinct queries this node handled for others).
    """

    def __init__(
        self,
        node: NodeServices,
        *,
        ttl: int,
        hop_timeout: float,
        fetch_timeout: float,
        seen_capacity: int,
        retrieve_timeout: float = 30.0,
    ) -> None:
        self.node = node
        self.ttl = ttl
        self.hop_timeout = hop_timeout
        self.fetch_timeout = fetch_timeout
        self.retrieve_timeout = retrieve_timeout
        self.seen_capacity = seen_capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # query ids handled, oldest first
        self._answered = 0
        node.route(ROUTE_FLOOD, self._serve)  # a plugin registers its routes like any dapp

    # -- the Retrieval protocol -------------------------------------------------------------------------

    def counters(self) -> Mapping[str, int]:
        return {"queries_answered": self._answered}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # nothing to do in the background: searches run when asked
        await anyio.sleep_forever()

    async def retrieve(self, content_id: str, *, timeout: float | None = None) -> bytes:
        """The item's bytes, within ``timeout`` seconds (``None``: ``retrieve_timeout``) in all."""
        timeout = self.retrieve_timeout if timeout is None else timeout
        started = anyio.current_time()
        with anyio.move_on_after(timeout):
            return b"".join([block async for block in self.stream(content_id, timeout=timeout)])
        raise ItemNotFound(content_id=content_id, hosts_asked=len(self.node.hosts.peers()), rings=1,
                           hops=self.ttl + 1, timed_out=True, seconds=anyio.current_time() - started)

    async def stream(self, content_id: str, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        """Find a holder within ``timeout`` seconds (``None``: ``retrieve_timeout``), then yield the item's
        blocks in order, each verified and each within ``timeout``. Raises :class:`~butter.errors.ItemNotFound`
        when no holder is found within ``ttl`` hops or in time, or it fails; ``hops`` is the flood's horizon,
        ``ttl + 1``."""
        if not is_block_id(content_id):
            raise ItemNotFound(f"{content_id!r} is not a content id", content_id=content_id)
        timeout = self.retrieve_timeout if timeout is None else timeout
        started = anyio.current_time()
        asked = len(self.node.hosts.peers())
        holder = None
        with anyio.move_on_after(timeout) as search:
            holder = await self.locate(content_id)

        def not_found(message: str = "", holders: int = 0) -> ItemNotFound:
            return ItemNotFound(message, content_id=content_id, hosts_asked=asked, rings=1, hops=self.ttl + 1,
                                holders=holders, timed_out=search.cancelled_caught,
                                seconds=anyio.current_time() - started)

        if holder is None:
            raise not_found("" if search.cancelled_caught else f"item {content_id} not found within {self.ttl} "
                            f"hops: asked {asked} peer(s)")

        async def get(address: str) -> bytes | None:
            local = await self.node.blocks.get(address)
            if local is not None or holder == self.node.address:
                return local
            try:
                return await self.node.fetch_block(holder, address, timeout=min(self.fetch_timeout, timeout))
            except BlockCorrupted:
                raise  # wrong bytes: discarded, and the search fails saying so
            except ButterError:  # unreachable, timed out, or "not-found"
                return None

        try:
            manifest_block = await get(content_id)
            if manifest_block is None:
                raise not_found(f"holder {holder} of {content_id} did not supply its manifest", 1)
            async for block in aiter_assemble(load_manifest(content_id, manifest_block), get):
                yield block
        except ItemNotFound:
            raise
        except ButterError as exc:  # a block missing or corrupted, an invalid manifest
            raise not_found(f"item {content_id} from {holder}: {exc}", 1) from exc

    async def locate(self, content_id: str) -> PeerAddress | None:
        """An address holding ``content_id``: this node's, or the first found by flooding."""
        if await self.node.blocks.has(content_id):
            return self.node.address
        query_id = os.urandom(QUERY_ID_BYTES)
        self._remember(query_id)
        return await self._flood(query_id, content_id, self.ttl)

    # -- flooding ---------------------------------------------------------------------------------------

    async def _flood(self, query_id: bytes, content_id: str, ttl: int) -> PeerAddress | None:
        """Ask every known host at once; the first holder named wins and the other requests are cancelled."""
        found: list[PeerAddress] = []
        body = FloodQuery(query_id, content_id, ttl).encode()

        async with anyio.create_task_group() as tg:

            async def ask(peer: PeerAddress) -> None:
                try:
                    holder = FloodAnswer.decode(await self.node.request(
                        peer, ROUTE_FLOOD, body, timeout=self.hop_timeout * (ttl + 1))).holder
                except ButterError:  # unreachable, timed out, refused, or a malformed reply (ProtocolError)
                    return
                if holder is not None:
                    found.append(holder)
                    tg.cancel_scope.cancel()

            for peer in self.node.hosts.peers():
                tg.start_soon(ask, peer.address)
        return found[0] if found else None

    async def _serve(self, request: RouteRequest) -> bytes:
        """Route ``flood-query``: reply ``{"holder": [host, port]}`` or ``{"holder": None}``."""
        query = FloodQuery.decode(request.body)  # ProtocolError (bad-request) on a malformed body
        if query.query_id in self._seen:
            return FloodAnswer().encode()
        self._remember(query.query_id)
        self._answered += 1
        holder: PeerAddress | None = None
        if await self.node.blocks.has(query.content_id):
            holder = self.node.address
        elif query.ttl > 0:
            holder = await self._flood(query.query_id, query.content_id, query.ttl - 1)
        return FloodAnswer(holder).encode()

    def _remember(self, query_id: bytes) -> None:
        self._seen[query_id] = None
        while len(self._seen) > self.seen_capacity:
            self._seen.popitem(last=False)
