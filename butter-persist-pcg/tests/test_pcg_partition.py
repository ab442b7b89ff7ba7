"""Groups split and merged again (memory transport, fast timers, asyncio and trio): after a partition heals,
the overlay reconnects, the two halves of a group find each other and the group sheds back to its target;
after popularity fades, a group raised above its target sheds back too."""

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

import butter
from butter.errors import RequestTimeout
from butter.peers import PeerAddress
from butter.testing.memory import MemoryTransport

from .helpers import MakeSettings, Network, goldilocks, network, pcg

pytestmark = pytest.mark.anyio


@contextmanager
def partitioned(net: Network, side: list[butter.Node], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Requests between ``side`` and the other nodes are dropped (they time out, as behind a firewall's DROP
    rule) until the context exits: the partition heals."""
    inside = {node.address for node in side}
    where = {id(node.transport): node.address for node in net.nodes}
    request = MemoryTransport.request

    async def dropping(
        self: MemoryTransport, address: PeerAddress, route: str, body: bytes, *, timeout: float
    ) -> bytes:
        if (where.get(id(self)) in inside) != (address in inside):
            await anyio.sleep(timeout)
            raise RequestTimeout(f"no reply from {address} to {route!r} within {timeout} s (partitioned)")
        return await request(self, address, route, body, timeout=timeout)

    with monkeypatch.context() as patch:
        patch.setattr(MemoryTransport, "request", dropping)
        yield


def everyone_knows_everyone(net: Network) -> bool:
    return all(len(node.hosts.peers()) == len(net.nodes) - 1 for node in net.nodes)


async def test_after_a_partition_heals_the_two_halves_of_a_group_merge_and_shed_to_target(
    memory_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with network(memory_settings, 5) as net:
        content_id = await net.nodes[0].store(b"split me" * 100)
        await net.wait_for(lambda: all(goldilocks(h, content_id) for h in net.holders(content_id)) and
                           len(net.holders(content_id)) == 3)
        holders = net.holders(content_id)
        others = [n for n in net.nodes if n not in holders]
        minority = [holders[0], others[0]]  # each side holds a replica and has a node to recruit
        with partitioned(net, minority, monkeypatch):
            # each side recruits on its own: the minority up to its 2 nodes, the majority back to 3
            await net.wait_for(lambda: len(net.holders(content_id)) == 5)
            await anyio.sleep(1.0)  # long enough for each side to forget the other's hosts and members
            assert not any(m.address in pcg(n).holders(content_id) for m in minority for n in net.nodes
                           if n not in minority)
        # healed: within 10 s the overlay is whole again and the group is back at 3 replicas that agree
        await net.wait_for(lambda: everyone_knows_everyone(net))
        await net.wait_for(lambda: len(net.holders(content_id)) == 3 and
                           all(goldilocks(h, content_id) for h in net.holders(content_id)))


async def test_when_popularity_fades_the_group_sheds_back_to_its_target(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 7, popularity_hits=5, max_replicas=5, popularity_window=2.0) as net:
        content_id = await net.nodes[0].store(b"fashionable" * 50)
        await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        holder = net.holders(content_id)[0]
        reader = next(n for n in net.nodes if n not in net.holders(content_id))
        for _ in range(12):  # 12 hits in the window: target 3 + 12 // 5 = 5
            await reader.fetch_block(holder.address, content_id)
        await net.wait_for(lambda: len(net.holders(content_id)) == 5)
        # no more hits: the window slides past them within 2 s, then the leader sheds within hot_ticks + 1 rounds
        await net.wait_for(lambda: len(net.holders(content_id)) == 3 and
                           all(goldilocks(h, content_id) for h in net.holders(content_id)))
