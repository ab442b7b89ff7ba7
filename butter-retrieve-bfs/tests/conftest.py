"""Shared fixtures: small networks of real nodes on the memory transport, with fast timers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

import butter
from butter.capabilities import ItemHolders, KeptItems
from butter.settings import ButterSettings
from butter_retrieve_bfs import BfsRetrieval

MakeSettings = Callable[..., ButterSettings]
# Fast timers, but tolerant ones: a loaded CI machine must not make hosts or group members look dead.
FAST_HOSTS = {"refresh_interval": 0.5, "exchange_interval": 0.2, "quality_timeout": 2.0, "max_failures": 3}
FAST_PCG = {"heartbeat_interval": 0.2, "member_timeout": 3.0, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0}
FAST_BFS = {"digest_interval": 0.3, "digest_max_interval": 1.0, "query_timeout": 1.0, "fetch_timeout": 2.0}


def bfs(node: butter.Node) -> BfsRetrieval:
    assert isinstance(node.retrieval, BfsRetrieval)
    return node.retrieval


def keeps(node: butter.Node, content_id: str) -> bool:
    """Whether ``node``'s persistence driver keeps the item (its :class:`KeptItems` capability)."""
    kept = node.capability(KeptItems)
    return kept is not None and content_id in kept.kept_items()


class Network:
    """Nodes with PCG and bfs on one memory network; ``add`` starts one more."""

    def __init__(self, make: MakeSettings, stack: AsyncExitStack) -> None:
        self.make, self.stack = make, stack
        self.nodes: list[butter.Node] = []

    async def add(self, *, peers: list[butter.Node] | None = None, hosts: dict[str, Any] | None = None,
                  pcg: dict[str, Any] | None = None, retrieval: dict[str, Any] | None = None) -> butter.Node:
        if peers is None:
            peers = self.nodes[:1]
        settings = self.make(
            peers=[str(p.address) for p in peers],
            host_manager={"driver": "diversity", "options": {**FAST_HOSTS, **(hosts or {})}},
            persistence={"driver": "pcg", "options": {**FAST_PCG, **(pcg or {})}},
            retrieval={"driver": "bfs", "options": {**FAST_BFS, **(retrieval or {})}},
        )
        node = await self.stack.enter_async_context(butter.open_node(settings))
        self.nodes.append(node)
        return node

    def holders(self, content_id: str) -> list[butter.Node]:
        return [n for n in self.nodes if not n.closing and keeps(n, content_id)]

    async def replicated(self, content_id: str, replicas: int = 3) -> None:
        """Wait until ``replicas`` nodes hold the item and each knows all the others as group members."""
        def named(node: butter.Node) -> int:
            holders = node.capability(ItemHolders)
            return len(holders.holders(content_id)) if holders is not None else 0

        await self.wait_for(lambda: len(self.holders(content_id)) == replicas and all(
            named(n) == replicas for n in self.holders(content_id)))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.05)


@asynccontextmanager
async def clique(make: MakeSettings, size: int, **kwargs: Any) -> AsyncIterator[Network]:
    """``size`` nodes that all end up knowing each other."""
    async with AsyncExitStack() as stack:
        net = Network(make, stack)
        for _ in range(size):
            await net.add(**kwargs)
        await net.wait_for(lambda: all(len(n.hosts.peers()) >= size - 1 for n in net.nodes))
        yield net


@asynccontextmanager
async def line(make: MakeSettings, size: int) -> AsyncIterator[Network]:
    """Nodes ``0 → 1 → … → size-1``, each knowing only the next one (no known-host gossip), so node
    ``size-1`` is ``size-1`` hops from node 0. Started from the end, so each can name the next as its peer."""
    async with AsyncExitStack() as stack:
        net = Network(make, stack)
        quiet = {"exchange_interval": 3600.0}
        for _ in range(size):
            await net.add(peers=net.nodes[-1:], hosts=quiet, pcg={"replicas": 1})
        net.nodes.reverse()
        await net.wait_for(lambda: all(len(n.hosts.peers()) == 1 for n in net.nodes[:-1]))
        yield net
