"""Shared helpers of the PCG tests: a network of real PCG nodes built from a settings factory (memory or TCP
on 127.0.0.1), and the PCG service of a node."""

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

import butter
from butter.settings import ButterSettings
from butter_persist_pcg import PcgPersistence

MakeSettings = Callable[..., ButterSettings]
FAST_HOSTS = {
    "refresh_interval": 0.5, "exchange_interval": 0.2, "quality_timeout": 1.0, "reprobe_interval": 0.2,
    "reprobe_max_interval": 1.0,
}


def tcp_settings(*, secure: bool) -> MakeSettings:
    """A factory like the ``memory_settings`` fixture's, for nodes over TCP on 127.0.0.1 (static discovery,
    no retrieval); ``secure``: the TLS 1.3 channel with Ed25519 identities, else plaintext."""

    def make(**overrides: Any) -> ButterSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "transport": {"driver": "tcp", "options": {"secure": secure}},
            "discovery": {"drivers": ["static"]},
            "retrieval": {"driver": ""},
            "request_timeout": 3.0,
            "shutdown_timeout": 1.0,
            **overrides,
        }
        return ButterSettings(**values)

    return make


def pcg(node: butter.Node) -> PcgPersistence:
    assert isinstance(node.persistence, PcgPersistence)
    return node.persistence


def goldilocks(node: butter.Node, content_id: str, replicas: int = 3) -> bool:
    """Whether ``node`` sees the item's group at ``replicas`` of ``replicas`` (its ``group_status``)."""
    status = pcg(node).group_status(content_id)
    return status is not None and (status.replicas, status.target, status.state) == (replicas, replicas, "goldilocks")


class Network:
    def __init__(self, make: MakeSettings, stack: AsyncExitStack, **pcg_options: Any) -> None:
        self.make, self.stack, self.pcg_options = make, stack, pcg_options
        self.nodes: list[butter.Node] = []
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def add(self, **overrides: Any) -> butter.Node:
        """Start one more node (told the first node's address), with settings ``overrides``."""
        peers = [str(self.nodes[0].address)] if self.nodes else []
        options = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0, "join_timeout": 3.0,
                   **self.pcg_options}
        settings = self.make(peers=peers, host_manager={"driver": "diversity", "options": FAST_HOSTS},
                             persistence={"driver": "pcg", "options": options}, **overrides)
        node = await self.stack.enter_async_context(butter.open_node(settings))
        self.nodes.append(node)
        return node

    async def kill(self, node: butter.Node) -> None:
        await node.aclose(graceful=False)
        self.nodes.remove(node)

    def holders(self, content_id: str) -> list[butter.Node]:
        return [n for n in self.nodes if content_id in pcg(n).kept_items()]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        """Poll ``predicate`` until true; after ``timeout`` seconds fail with every node's groups, so a rare
        failure on a loaded machine says which state the network was stuck in."""
        try:
            with anyio.fail_after(timeout):
                while not predicate():
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"not reached within {timeout} s; the network:\n{self.describe()}") from None

    def describe(self) -> str:
        """One line per live node: its address, known peers and each group it keeps with that group's status."""
        lines = []
        for node in self.nodes:
            groups = {content_id[:12]: pcg(node).group_status(content_id) for content_id in pcg(node).kept_items()}
            lines.append(f"{node.address} peers={len(node.hosts.peers())} groups={groups}")
        return "\n".join(lines)


@asynccontextmanager
async def network(make: MakeSettings, size: int, **pcg_options: Any) -> AsyncIterator[Network]:
    async with AsyncExitStack() as stack:
        net = Network(make, stack, **pcg_options)
        for _ in range(size):
            await net.add()
        await net.wait_for(lambda: all(len(n.hosts.peers()) >= size - 1 for n in net.nodes))
        yield net
