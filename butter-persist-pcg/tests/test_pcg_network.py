"""PCG on real nodes over the memory transport (fast timers), on asyncio and trio."""

import os

import anyio
import pytest

import butter

from .helpers import MakeSettings, goldilocks, network, pcg

pytestmark = pytest.mark.anyio


async def test_a_stored_item_gets_three_replicas_and_agreeing_views(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 6) as net:
        content_id = await net.nodes[0].store(b"hello, group" * 100)
        await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        await net.wait_for(lambda: all(goldilocks(n, content_id) for n in net.holders(content_id)))
        for holder in net.holders(content_id):
            assert set(pcg(holder).holders(content_id)) == {h.address for h in net.holders(content_id)}
        for holder in net.holders(content_id):
            assert len(await holder.blocks.block_ids()) == 2  # the manifest and one 1,200-byte block
        await anyio.sleep(1.0)  # and it stays at three
        assert len(net.holders(content_id)) == 3


async def test_the_item_survives_the_abrupt_death_of_every_first_holder(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 8) as net:
        data = bytes(range(256)) * 40  # 10 KiB: 3 blocks
        content_id = await net.nodes[0].store(data)
        await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        first = net.holders(content_id)
        for holder in first:  # one after another, leaving time to repair
            await net.kill(holder)
            await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        survivors = net.holders(content_id)
        assert not set(survivors) & set(first)
        manifest = await survivors[0].blocks.get(content_id)
        assert manifest is not None


async def test_hot_groups_shed_back_to_target(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 6, replicas=2, hot_ticks=2) as net:
        content_id = await net.nodes[0].store(b"x" * 500)
        await net.wait_for(lambda: len(net.holders(content_id)) == 2)
        view = pcg(net.holders(content_id)[0])._groups[content_id]
        outsiders = [n for n in net.nodes if n not in net.holders(content_id)]
        for extra in outsiders[:2]:  # force the group hot by inviting two more members
            assert await pcg(net.holders(content_id)[0])._invite(view, extra.address, extra.node_id)
        assert len(net.holders(content_id)) == 4
        await net.wait_for(lambda: len(net.holders(content_id)) == 2)


async def test_popular_items_get_more_replicas(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 7, popularity_hits=5, max_replicas=5) as net:
        content_id = await net.nodes[0].store(b"popular" * 50)
        await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        holder = net.holders(content_id)[0]
        reader = next(n for n in net.nodes if n not in net.holders(content_id))
        for _ in range(12):
            await reader.fetch_block(holder.address, content_id)
        await net.wait_for(lambda: len(net.holders(content_id)) == 5)


async def test_graceful_exit_hands_the_replica_off(memory_settings: MakeSettings) -> None:
    async with network(memory_settings, 6, member_timeout=60.0) as net:
        content_id = await net.nodes[0].store(b"hand me off" * 10)
        await net.wait_for(lambda: len(net.holders(content_id)) == 3)
        leaver = next(h for h in net.holders(content_id) if h is not net.nodes[0])
        await leaver.aclose()
        net.nodes.remove(leaver)
        # the member timeout is a minute: only the hand-off can restore three replicas this fast
        await net.wait_for(lambda: len(net.holders(content_id)) == 3, timeout=20)
        await net.wait_for(lambda: all(goldilocks(h, content_id) for h in net.holders(content_id)), timeout=20)
        assert leaver.address not in pcg(net.holders(content_id)[0]).holders(content_id)


async def test_store_without_room_fails_cleanly(memory_settings: MakeSettings) -> None:
    settings = memory_settings(store={"capacity": 10_000}, persistence={"driver": "pcg"})
    async with butter.open_node(settings) as node:
        with pytest.raises(butter.ButterError, match="free"):
            await node.store(os.urandom(20_000))
        assert node.blocks.used == 0
        content_id = await node.store(b"fits")
        assert await node.blocks.has(content_id)


def test_one_heartbeat_per_pair_per_round_keeps_every_view_whole() -> None:
    """On virtual time: in a settled group of three, each pair's higher node id heartbeats and the reply
    carries the lower's view, so the lowest member sends no heartbeat while every member keeps the other two
    in view round after round, and the group's leader (the highest id) one per other member and round."""
    from trio.testing import MockClock

    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[dict[int, int], list[int]]:
        async with network(memory_settings_factory("pcg-pairs-virtual"), 5, seed=3) as net:
            content_id = await net.nodes[0].store(b"pairs" * 100)
            await net.wait_for(lambda: all(goldilocks(n, content_id) for n in net.holders(content_id))
                               and len(net.holders(content_id)) == 3)
            await anyio.sleep(2.0)  # settled
            holders = sorted(net.holders(content_id), key=lambda n: n.node_id)
            before = [pcg(n).counters()["heartbeats_sent"] for n in holders]
            in_view = []
            for _ in range(50):  # 10 s: 50 rounds of 0.2 s
                await anyio.sleep(0.2)
                statuses = [pcg(n).group_status(content_id) for n in holders]
                in_view.append(min(s.replicas if s is not None else 0 for s in statuses))
            sent = {rank: pcg(n).counters()["heartbeats_sent"] - before[rank] for rank, n in enumerate(holders)}
            return sent, in_view

    sent, in_view = anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
    assert min(in_view) == 3
    assert sent[0] <= 2, sent  # the lowest id leaves its heartbeats to the others
    assert 80 <= sent[2] <= 120, sent  # the leader: one to each of the two others per round


@pytest.mark.parametrize("prefer_partners", [True, False])
async def test_a_node_puts_its_items_on_the_hosts_it_already_shares_groups_with(
    memory_settings: MakeSettings, prefer_partners: bool
) -> None:
    """Copysets: with ``prefer_partners`` every item node 0 stores after its first lands on the host that
    already keeps a replica of its first, so node 0 heartbeats one peer however many items it keeps; without
    it, recruits are drawn at random among the seven others (all six items on one host: about 1 in 120,000)."""
    async with network(memory_settings, 8, replicas=2, prefer_partners=prefer_partners) as net:
        storer = net.nodes[0]
        partners = set()
        for i in range(7):
            content_id = await storer.store(bytes([i]) * 2_000)
            await net.wait_for(lambda: len(net.holders(content_id)) == 2)  # noqa: B023 (awaited at once)
            partners |= {n.node_id for n in net.holders(content_id)} - {storer.node_id}
        assert (len(partners) == 1) == prefer_partners, partners
