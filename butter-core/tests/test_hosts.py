import random
from collections.abc import Callable

import anyio
import pytest

import butter
from butter.hosts import CLASS_NAMES, capacity_for_budget, classify, decide
from butter.peers import HostQuality, PeerAddress, PeerInfo
from butter.settings import ButterSettings

MakeSettings = Callable[..., ButterSettings]


def peer(n: int, **quality: float) -> PeerInfo:
    return PeerInfo(f"id{n}", PeerAddress("h", n), HostQuality(**quality))  # type: ignore[arg-type]


def test_capacity_from_budget_matches_spec() -> None:
    assert capacity_for_budget(512 * 1024 * 1024) == 8947
    assert capacity_for_budget(2048 * 1024 * 1024) == 35791
    assert capacity_for_budget(1) == 1


@pytest.mark.parametrize("index", range(8))
def test_eight_classes_equal_to_mean_is_high(index: int) -> None:
    means = (10_000.0, 10_000.0, 50.0)
    high, low = (10_000, 10_000, 50), (10, 0, 3)
    u, s, k = ((low if index & bit else high)[i] for i, bit in enumerate((4, 2, 1)))
    quality = HostQuality(uptime=u, available_storage=s, known_hosts=k)
    assert classify(quality, means) == index
    assert CLASS_NAMES[index].startswith("high" if index < 4 else "low")


def test_room_then_already_known() -> None:
    rng = random.Random(0)
    assert decide([], peer(1, known_by=1, known_hosts=1), 2, 0.0, rng).admit
    assert not decide([peer(1)], peer(1), 2, 0.0, rng).admit


def test_diversity_admits_a_missing_class_and_evicts_from_the_biggest() -> None:
    rng = random.Random(0)
    hosts = [peer(i, uptime=100, available_storage=100, known_hosts=5, known_by=3) for i in range(3)]
    hosts.append(peer(3, uptime=1, available_storage=1, known_hosts=1, known_by=3))
    same = peer(10, uptime=100, available_storage=100, known_hosts=5, known_by=3)
    other = peer(11, uptime=1, available_storage=100, known_hosts=1, known_by=3)
    assert not decide(hosts, same, 4, 0.0, rng).admit
    decision = decide(hosts, other, 4, 0.0, rng)
    assert decision.admit and decision.evict in hosts[:3]


def test_otherwise_unknown_candidate_is_admitted_but_never_orphans_a_host() -> None:
    rng = random.Random(0)
    orphan = peer(9, uptime=5, known_hosts=1, known_by=0)
    only_ours = [peer(1, known_by=1, known_hosts=1)]
    assert not decide(only_ours, orphan, 1, 1.0, rng).admit
    shared = [peer(1, known_by=2, known_hosts=1)]
    decision = decide(shared, orphan, 1, 0.0, rng)
    assert decision.admit and decision.evict == shared[0]
    knows_nobody = peer(8, known_hosts=0, known_by=4)
    assert decide(shared, knows_nobody, 1, 0.0, rng).admit


def test_random_factor_admits_regardless_of_class() -> None:
    hosts = [peer(i, uptime=10, known_hosts=2, known_by=2) for i in range(2)]
    candidate = peer(5, uptime=10, known_hosts=2, known_by=2)
    assert not decide(hosts, candidate, 2, 0.0, random.Random(1)).admit
    assert decide(hosts, candidate, 2, 1.0, random.Random(1)).admit


FAST = {"refresh_interval": 0.1, "exchange_interval": 0.1, "quality_timeout": 1.0}


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_three_nodes_capacity_one_end_in_a_ring(memory_settings: MakeSettings, seed: int) -> None:
    """With one slot each, every node must end up known by someone (the ring A→B→C→A)."""
    ports = [101, 102, 103]
    names = [f"{memory_settings().transport.options['network']}:{p}" for p in ports]

    def settings(i: int) -> ButterSettings:
        options = {**FAST, "capacity": 1, "seed": seed * 10 + i}
        return memory_settings(port=ports[i], peers=[n for j, n in enumerate(names) if j != i],
                               host_manager={"driver": "diversity", "options": options})

    async with butter.open_node(settings(0)) as a, butter.open_node(settings(1)) as b, \
            butter.open_node(settings(2)) as c:
        nodes = [a, b, c]

        def known_by_someone() -> bool:
            targets = {p.node_id for n in nodes for p in n.hosts.peers()}
            return targets == {n.node_id for n in nodes}

        with anyio.fail_after(15):
            while not known_by_someone():
                await anyio.sleep(0.05)
        for n in nodes:
            assert len(n.hosts.peers()) == 1
        await anyio.sleep(1.0)  # and it stays a ring
        assert known_by_someone()


@pytest.mark.anyio
async def test_dead_hosts_are_pruned_and_reported_hosts_removed(memory_settings: MakeSettings) -> None:
    hm = {"driver": "diversity", "options": FAST}
    async with butter.open_node(memory_settings(host_manager=hm)) as a:
        async with butter.open_node(memory_settings(peers=[str(a.address)], host_manager=hm)) as b:
            with anyio.fail_after(5):
                while not a.hosts.peers():
                    await anyio.sleep(0.02)
            assert a.hosts.peers()[0].node_id == b.node_id
            async with butter.open_node(memory_settings(peers=[str(a.address)], host_manager=hm)) as c:
                with anyio.fail_after(5):
                    while len(a.hosts.peers()) < 2:
                        await anyio.sleep(0.02)
                a.hosts.report_dead(c.address)
                assert {p.node_id for p in a.hosts.peers()} == {b.node_id}
        with anyio.fail_after(5):  # b left without a word to a; the refresh notices
            while a.hosts.peers():
                await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_exchange_spreads_known_hosts(memory_settings: MakeSettings) -> None:
    """a knows only b, c knows only b; the known-hosts exchange introduces a and c."""
    hm = {"driver": "diversity", "options": FAST}
    async with butter.open_node(memory_settings(host_manager=hm)) as b:
        async with butter.open_node(memory_settings(peers=[str(b.address)], host_manager=hm)) as a, \
                butter.open_node(memory_settings(peers=[str(b.address)], host_manager=hm)) as c:
            with anyio.fail_after(10):
                while c.node_id not in {p.node_id for p in a.hosts.peers()} or \
                        a.node_id not in {p.node_id for p in c.hosts.peers()}:
                    await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_unreachable_candidate_is_not_admitted(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a:
        assert not await a.hosts.offer(PeerAddress(a.address.host, 4242))
        assert not await a.hosts.offer(a.address)
        assert a.hosts.peers() == []
