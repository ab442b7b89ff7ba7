"""A few real nodes over TCP on 127.0.0.1 (static discovery only, never multicast): find and fetch an item."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import anyio
import pytest

import butter
from butter.settings import ButterSettings

from .conftest import FAST_BFS, FAST_HOSTS, FAST_PCG, bfs, keeps

pytestmark = pytest.mark.anyio


def tcp_settings(peers: list[str]) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1",
        port=0,
        peers=peers,
        transport={"driver": "tcp"},
        discovery={"drivers": ["static"]},
        host_manager={"driver": "diversity", "options": FAST_HOSTS},
        persistence={"driver": "pcg", "options": FAST_PCG},
        retrieval={"driver": "bfs", "options": FAST_BFS},
        request_timeout=2.0,
        connect_timeout=1.0,
    )


async def test_retrieval_over_loopback_tcp() -> None:
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    with anyio.fail_after(25):
        async with AsyncExitStack() as stack:
            nodes: list[butter.Node] = []
            for _ in range(5):
                peers = [str(nodes[0].address)] if nodes else []
                nodes.append(await stack.enter_async_context(butter.open_node(tcp_settings(peers))))
            while not all(len(n.hosts.peers()) >= 4 for n in nodes):
                await anyio.sleep(0.05)
            data = os.urandom(50 * 1024)
            content_id = await nodes[0].store(data)
            while sum(keeps(n, content_id) for n in nodes) < 3:
                await anyio.sleep(0.05)
            reader = next(n for n in nodes if not keeps(n, content_id))
            assert await reader.retrieve(content_id) == data
            stats = bfs(reader).last_query
            assert stats is not None and stats.found and stats.fetch_requests == 1 + 13
            assert b"".join([p async for p in reader.retrieve_stream(content_id)]) == data
            with pytest.raises(butter.ItemNotFound):
                await reader.retrieve("0f" * 32)
