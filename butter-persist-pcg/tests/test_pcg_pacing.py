"""Pacing: recruits fetching many items from one storer at once keep at most ``peer_window`` block fetches in
flight to it (butter.pacing, shared by every group of the node), and an ``overloaded`` answer only delays a
replica. Real nodes on the memory transport, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import butter
from butter import RouteRequest
from butter.errors import RouteError
from butter.peers import PeerAddress
from butter.wire import decode_payload

from .helpers import MakeSettings, network

pytestmark = pytest.mark.anyio


class WatchedBlocks:
    """Replaces ``node``'s ``fetch-block`` route: counts the fetches in flight from each caller (and the most
    ever seen), answers ``overloaded`` to the first ``refuse``, and makes each answer take ``delay`` seconds."""

    def __init__(self, node: butter.Node, *, delay: float, refuse: int = 0) -> None:
        self.node, self.delay, self.refuse = node, delay, refuse
        self.in_flight: dict[PeerAddress | None, int] = {}
        self.most = self.refused = 0
        node.route("fetch-block", self._serve)

    async def _serve(self, request: RouteRequest) -> bytes:
        caller = request.caller.address
        self.in_flight[caller] = self.in_flight.get(caller, 0) + 1
        self.most = max(self.most, self.in_flight[caller])
        try:
            if self.refused < self.refuse:
                self.refused += 1
                raise RouteError("overloaded", "256 requests already being handled on this connection")
            await anyio.sleep(self.delay)
            data = await self.node.blocks.get(decode_payload(request.body)["block_id"])
            if data is None:
                raise RouteError("not-found", "no such block")
            return data
        finally:
            self.in_flight[caller] -= 1


async def test_recruits_keep_their_fetches_from_one_storer_within_the_window(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 4, peer_window=3, fetch_concurrency=8, overload_retry_interval=0.01) as net:
        storer = WatchedBlocks(net.nodes[0], delay=0.02, refuse=5)
        items = [bytes([i]) * (40_000 + i) for i in range(6)]  # 10 blocks each; each other node recruited for most
        content_ids: list[str] = []

        async def store(data: bytes) -> None:
            content_ids.append(await net.nodes[0].store(data))

        async with anyio.create_task_group() as tg:
            for data in items:
                tg.start_soon(store, data)
        await net.wait_for(lambda: all(len(net.holders(content_id)) == 3 for content_id in content_ids))
        assert storer.refused == 5  # answered overloaded, yet every item reached its three replicas
        assert 2 <= storer.most <= 3  # 6 groups x 8 blocks in parallel would have put up to 48 in flight
