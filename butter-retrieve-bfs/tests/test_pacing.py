"""Pacing: a retriever keeps at most ``peer_window`` requests in flight to any one peer, and an ``overloaded``
answer is back-pressure (ask later or elsewhere), never a failure of the item. Real nodes on the memory
transport, the overlay pinned by the retrieval conformance kit's builder; on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import butter
from butter import RouteRequest
from butter.errors import RouteError
from butter.peers import PeerAddress
from butter.testing.conformance_retrieval import RetrievalFactory, line, payload
from butter.wire import decode_payload
from butter_retrieve_bfs import ROUTE_DIGEST, ROUTE_QUERY

from .conftest import bfs

pytestmark = pytest.mark.anyio

PACED = {"peer_window": 4, "overload_retry_interval": 0.01, "query_timeout": 2.0, "fetch_timeout": 5.0}


class Watched:
    """Wraps a node's ``bfs-query``, ``bfs-digest`` and ``fetch-block`` routes: counts the requests in flight
    from each caller (and the most ever seen), answers ``overloaded`` to the first ``refuse`` requests, and
    makes each answer take ``delay`` seconds."""

    def __init__(self, node: butter.Node, *, refuse: int = 0, delay: float = 0.0) -> None:
        self.node, self.refuse, self.delay = node, refuse, delay
        self.in_flight: dict[PeerAddress | None, int] = {}
        self.most = 0
        self.refused = 0
        service = bfs(node)
        for route, handler in ((ROUTE_QUERY, service._serve_query), (ROUTE_DIGEST, service._serve_digest),
                               ("fetch-block", self._fetch_block)):
            node.route(route, self._wrap(handler))

    async def _fetch_block(self, request: RouteRequest) -> bytes:
        data = await self.node.blocks.get(decode_payload(request.body)["block_id"])
        if data is None:
            raise RouteError("not-found", "no such block")
        return data

    def _wrap(self, handler):  # type: ignore[no-untyped-def]
        async def serve(request: RouteRequest) -> bytes:
            caller = request.caller.address
            self.in_flight[caller] = self.in_flight.get(caller, 0) + 1
            self.most = max(self.most, self.in_flight[caller])
            try:
                if self.refused < self.refuse:
                    self.refused += 1
                    raise RouteError("overloaded", "256 requests already in progress on this connection")
                await anyio.sleep(self.delay)
                return bytes(await handler(request))
            finally:
                self.in_flight[caller] -= 1

        return serve


async def test_a_holder_answering_overloaded_at_first_still_serves_the_item() -> None:
    async with RetrievalFactory("bfs", {**PACED, "hints": False}).open_overlay(line(2)) as net:  # no digest pulls
        data = payload(40_000, seed=5)  # 10 blocks
        item = await net.hold(1, data)
        holder = Watched(net.nodes[1], refuse=8)  # the search queries and the first blocks are refused
        with anyio.fail_after(20):
            assert await net.nodes[0].retrieve(item.content_id) == data
        stats = bfs(net.nodes[0]).last_query
        assert holder.refused == 8
        assert stats is not None and stats.found and stats.overloaded == 8 and stats.holders == 1


async def test_no_peer_sees_more_than_the_window_from_one_retriever() -> None:
    async with RetrievalFactory("bfs", PACED).open_overlay(line(2)) as net:
        items = {}
        for i in range(6):
            data = payload(30_000 + 4096 * i, seed=20 + i)  # 8 to 13 blocks each
            items[(await net.hold(1, data)).content_id] = data
        holder = Watched(net.nodes[1], delay=0.02)
        got: dict[str, bytes] = {}

        async def fetch(content_id: str) -> None:
            got[content_id] = await net.nodes[0].retrieve(content_id)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for content_id in items:
                    tg.start_soon(fetch, content_id)  # 6 retrievals x 8 blocks in parallel: 48 would be in flight
        assert got == items
        assert 2 <= holder.most <= PACED["peer_window"]

