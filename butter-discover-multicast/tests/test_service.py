"""The discovery loop with real nodes on the in-process memory transport and a fake LAN (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from ipaddress import IPv4Address
from typing import Any

import anyio
import pytest

import butter
from butter import Node
from butter.capabilities import Counters
from butter.peers import PeerAddress
from butter.slots import NodeServices
from butter_discover_multicast import MulticastDiscovery, MulticastOptions, Ping, encode_ping

from .helpers import FakeLan

pytestmark = pytest.mark.anyio

MakeSettings = Callable[..., butter.ButterSettings]
FAST = {"interval": 0.05, "jitter": 0.2}


class FakeLanDiscovery:
    """A pluggy plugin answering the discovery hook with a MulticastDiscovery on ``lan``."""

    def __init__(self, lan: FakeLan, **options: Any) -> None:
        self.lan = lan
        self.options = MulticastOptions(**{**FAST, **options})
        self.made: list[MulticastDiscovery] = []

    @butter.hookimpl
    def butter_discovery(self, node: NodeServices) -> MulticastDiscovery:
        discovery = MulticastDiscovery(node, self.options, open_link=self.lan.join)
        self.made.append(discovery)
        return discovery


@asynccontextmanager
async def nodes_on(
    lan: FakeLan, settings: butter.ButterSettings, count: int, **options: Any
) -> AsyncIterator[list[tuple[Node, MulticastDiscovery]]]:
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            plugin = FakeLanDiscovery(lan, **options)
            node = await stack.enter_async_context(butter.open_node(settings, plugins=(plugin,)))
            out.append((node, plugin.made[0]))
        yield out


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.01)


def ids(node: Node) -> set[str]:
    return {p.node_id for p in node.hosts.peers()}


async def test_nodes_on_one_lan_find_each_other(memory_settings: MakeSettings) -> None:
    lan = FakeLan()
    settings = memory_settings(discovery={"drivers": []})
    async with nodes_on(lan, settings, 5) as pairs:
        everyone = {node.node_id for node, _ in pairs}
        await wait_until(lambda: all(ids(node) == everyone - {node.node_id} for node, _ in pairs))
        await anyio.sleep(0.3)  # nobody is lonely now: pinging has stopped
        sent = len(lan.sent)
        await anyio.sleep(0.3)
        assert len(lan.sent) == sent
        stats = [d.stats for _, d in pairs]
        assert sum(s.pings_sent for s in stats) == sent
        assert sum(s.own_echoes for s in stats) == sent  # each ping came back to its sender, and was ignored
        assert sum(s.answers_sent for s in stats) >= 4
        assert all(s.dropped == 0 and s.answers_failed == 0 for s in stats)
        assert all(d.counters() == d.stats.as_dict() and isinstance(d, Counters) for _, d in pairs)


async def test_a_lonely_node_pings_until_it_is_found_then_stops(memory_settings: MakeSettings) -> None:
    lan = FakeLan()
    settings = memory_settings(discovery={"drivers": []})
    async with nodes_on(lan, settings, 1) as [(first, d1)]:
        await wait_until(lambda: d1.stats.pings_sent >= 3)  # alone: keeps pinging, nobody answers
        assert not first.hosts.peers()
        async with nodes_on(lan, settings, 1) as [(second, _)]:
            await wait_until(lambda: ids(first) == {second.node_id} and ids(second) == {first.node_id})
            await anyio.sleep(0.2)
            pings = d1.stats.pings_sent
            await anyio.sleep(0.3)
            assert d1.stats.pings_sent == pings
        # the second node left; once host management drops it, the first is lonely and pings again
        first.hosts.report_dead(second.address)
        await wait_until(lambda: d1.stats.pings_sent > pings)


async def test_garbage_on_the_group_is_counted_and_harmless(memory_settings: MakeSettings) -> None:
    lan = FakeLan()
    settings = memory_settings(discovery={"drivers": []})
    async with nodes_on(lan, settings, 2, max_datagram=256) as pairs:
        for datagram in (b"\xc1", b"x" * 300, encode_ping(Ping("stranger", PeerAddress("nowhere", 1)))):
            lan.deliver(datagram)
        await wait_until(lambda: all(d.stats.malformed == 1 and d.stats.oversized == 1 for _, d in pairs))
        # the stranger's address is unreachable: the answer fails, is counted, and nothing breaks
        await wait_until(lambda: all(d.stats.answers_failed >= 1 for _, d in pairs))
        await wait_until(lambda: all(len(node.hosts.peers()) == 1 for node, _ in pairs))


async def test_the_link_closes_with_the_node(memory_settings: MakeSettings) -> None:
    lan = FakeLan()
    async with nodes_on(lan, memory_settings(discovery={"drivers": []}), 2) as pairs:
        await wait_until(lambda: len(lan.links) == 2)
        links = list(lan.links)
        assert all(d.interface == IPv4Address("0.0.0.0") for _, d in pairs)
    assert lan.links == [] and all(link.closed for link in links)


async def test_no_multicast_route_falls_back_to_loopback(memory_settings: MakeSettings) -> None:
    lan = FakeLan(fail_interfaces=(IPv4Address("0.0.0.0"),))
    async with nodes_on(lan, memory_settings(discovery={"drivers": []}), 1) as [(_, discovery)]:
        assert discovery.interface == IPv4Address("127.0.0.1")


async def test_a_configured_interface_that_fails_stops_the_node_from_starting(
    memory_settings: MakeSettings,
) -> None:
    lan = FakeLan(fail_interfaces=(IPv4Address("10.1.2.3"),))
    with pytest.raises(butter.ButterError, match="No such device"):
        async with nodes_on(lan, memory_settings(discovery={"drivers": []}), 1, interface="10.1.2.3"):
            pass


async def test_a_node_without_an_ip_address_stays_idle(memory_settings: MakeSettings) -> None:
    # the memory transport's addresses are not IP addresses: the real multicast driver has nothing to announce
    async with butter.open_node(memory_settings(discovery={"drivers": ["multicast"]})) as node:
        [discovery] = node.discoveries
        assert isinstance(discovery, MulticastDiscovery)
        await anyio.sleep(0.05)
        assert discovery.beacon is None and discovery.stats.pings_sent == 0
