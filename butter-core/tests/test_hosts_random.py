"""The ``random`` host manager: the host-manager kit, and its own behaviour (random eviction when full, the
known-hosts exchange, pruning, ``known_by``, mixing with ``diversity``). Asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import pytest

import butter
from butter.settings import ButterSettings
from butter.testing.conformance_hosts import HOST_MANAGER_CHECKS, HostManagerFactory
from butter.testing.overlay import wait_for

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., ButterSettings]
FAST = {"refresh_interval": 0.1, "exchange_interval": 0.1, "quality_timeout": 1.0}


@pytest.mark.parametrize("check", HOST_MANAGER_CHECKS, ids=lambda c: c.__name__)
async def test_random_host_manager_conformance(check: Callable[[HostManagerFactory], Awaitable[None]]) -> None:
    await check(HostManagerFactory("random", {"capacity": 3}))



async def test_a_full_list_evicts_a_random_host_and_tells_it(memory_settings: MakeSettings) -> None:
    hm = {"driver": "random", "options": {"capacity": 2, "seed": 1, "refresh_interval": 0.2,
                                          "exchange_interval": 3600}}
    async with AsyncExitStack() as stack:
        subject = await stack.enter_async_context(butter.open_node(memory_settings(host_manager=hm)))
        others = [await stack.enter_async_context(butter.open_node(memory_settings(host_manager=hm)))
                  for _ in range(4)]
        evicted = set()
        for other in others:
            before = {p.address for p in subject.hosts.peers()}
            assert await subject.hosts.offer(other.address), "a live candidate is always admitted"
            after = {p.address for p in subject.hosts.peers()}
            assert len(after) == min(2, len(before) + 1) and other.address in after
            evicted |= before - after
        assert len(evicted) == 2
        await wait_for(lambda: [o.hosts.known_by() for o in others] == [int(o.address not in evicted) for o in others],
                       "each host knows whether it was evicted")


async def test_dead_hosts_are_pruned(memory_settings: MakeSettings) -> None:
    hm = {"driver": "random", "options": FAST}
    async with butter.open_node(memory_settings(host_manager=hm)) as a:
        async with butter.open_node(memory_settings(peers=[str(a.address)], host_manager=hm)) as b:
            await wait_for(lambda: [p.node_id for p in a.hosts.peers()] == [b.node_id], "a knows b alone")
            await wait_for(lambda: a.hosts.known_by() == 1 and b.hosts.known_by() == 1, "polls: each known by one")
        await wait_for(lambda: not a.hosts.peers(), "a pruned b, who left without a word")


@pytest.mark.parametrize("middle", ["random", "diversity"])
async def test_the_exchange_spreads_known_hosts_across_drivers(memory_settings: MakeSettings, middle: str) -> None:
    """a and c (random) know only b; the known-hosts exchange, served by either driver, introduces them."""
    random_hm = {"driver": "random", "options": FAST}
    async with butter.open_node(memory_settings(host_manager={"driver": middle, "options": FAST})) as b:
        async with butter.open_node(memory_settings(peers=[str(b.address)], host_manager=random_hm)) as a, \
                butter.open_node(memory_settings(peers=[str(b.address)], host_manager=random_hm)) as c:
            await wait_for(lambda: c.node_id in {p.node_id for p in a.hosts.peers()}
                           and a.node_id in {p.node_id for p in c.hosts.peers()}, "a and c introduced")
            assert {p.node_id for p in b.hosts.peers()} == {a.node_id, c.node_id}
