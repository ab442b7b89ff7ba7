"""The discovery conformance kit (:mod:`butter.testing.conformance_discovery`) checked against itself: a small
reference driver passes every check, and each flawed variant of it fails the check meant to catch the flaw
(a kit that cannot fail proves nothing); and run for the ``static`` driver on loopback. Asyncio and trio."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter.errors import ButterError
from butter.peers import PeerAddress
from butter.testing import conformance_discovery as kit
from butter.testing.conformance_discovery import DISCOVERY_CHECKS, DiscoveryFactory

pytestmark = pytest.mark.anyio
Check = Callable[[DiscoveryFactory], Awaitable[None]]
INTERVAL = 0.1  # seconds between the reference driver's rounds
LEAKED: list[socket.socket] = []  # the leaky reference's sockets, closed after each test


def told_earlier_nodes(index: int, earlier: Sequence[PeerAddress]) -> Mapping[str, Any]:
    """Node ``index`` is configured with the addresses of the nodes started before it."""
    return {"peers": [str(a) for a in earlier]}


@pytest.mark.parametrize("check", DISCOVERY_CHECKS, ids=lambda c: c.__name__)
async def test_static_discovery_conformance(check: Check) -> None:
    await check(DiscoveryFactory("static", {"interval": 0.2}, configure=told_earlier_nodes, settle=0.5, window=1.0))


@dataclass(frozen=True)
class Flaws:
    deaf: bool = False  # never offers what it finds
    chatty: bool = False  # keeps calling its peers once it knows some
    narcissist: bool = False  # offers its own node's address
    haunted: bool = False  # offers again every peer it ever found that is not known, dead or alive
    leaky: bool = False  # opens a socket it never closes


class RollCall:
    """A reference driver: while the node knows nobody, every round it calls each configured address on
    route ``ping`` and offers those that answer to host management."""

    def __init__(self, node: butter.Node, peers: list[PeerAddress], flaws: Flaws) -> None:
        self.node, self.peers, self.flaws = node, peers, flaws

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self.flaws.leaky:
            LEAKED.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        task_status.started()
        found: set[PeerAddress] = set()
        while True:
            known = {p.address for p in self.node.hosts.peers()}
            for address in self.peers if not known or self.flaws.chatty else []:
                try:
                    await self.node.request(address, "ping", timeout=1.0)
                except ButterError:
                    continue
                found.add(address)
                if address not in known and not self.flaws.deaf:
                    await self.node.hosts.offer(address)
            if self.flaws.narcissist:
                await self.node.hosts.offer(self.node.address)
            for address in found - known if self.flaws.haunted else set():
                await self.node.hosts.offer(address)
            await anyio.sleep(INTERVAL)


class RollCallPlugin:
    def __init__(self, options: Mapping[str, Any], flaws: Flaws) -> None:
        self.peers, self.flaws = [PeerAddress.parse(p) for p in options["peers"]], flaws

    @butter.hookimpl
    def butter_discovery(self, node: butter.Node) -> RollCall:
        return RollCall(node, self.peers, self.flaws)


def factory(flaws: Flaws = Flaws()) -> DiscoveryFactory:
    """The kit's factory for the reference driver: not an entry point, so ``driver=""`` and a plugin."""
    return DiscoveryFactory("", configure=told_earlier_nodes, bound=3.0, settle=0.3, window=0.6,
                            plugin=lambda options: RollCallPlugin(options, flaws))


@pytest.fixture(autouse=True)
def close_leaked_sockets() -> Iterator[None]:
    yield
    while LEAKED:
        LEAKED.pop().close()


@pytest.mark.parametrize("check", DISCOVERY_CHECKS, ids=lambda c: c.__name__)
async def test_the_reference_driver_passes(check: Check) -> None:
    await check(factory())


@pytest.mark.parametrize(("flaws", "check", "match"), [
    (Flaws(deaf=True), kit.check_lonely_node_finds_a_peer, "found no peer"),
    (Flaws(chatty=True), kit.check_quiet_once_a_peer_is_known, "must stop looking"),
    (Flaws(narcissist=True), kit.check_never_offers_the_node_itself, "its own address"),
    (Flaws(haunted=True), kit.check_dead_peer_is_not_offered_forever, "dead peer"),
    (Flaws(leaky=True), kit.check_stops_with_the_node, "socket"),
], ids=["deaf", "chatty", "narcissist", "haunted", "leaky"])
async def test_a_flawed_driver_fails_the_check_for_its_flaw(flaws: Flaws, check: Check, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        await check(factory(flaws))


def test_the_factory_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="plugin"):
        DiscoveryFactory("")
    with pytest.raises(ValueError, match="positive"):
        DiscoveryFactory("static", window=0)
