import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Callable

import anyio
import pytest
from anyio.abc import TaskStatus

import butter
from butter import SENDER_MISMATCH, RemoteError
from butter.hosts import CLASS_NAMES, Backoff, _protocol, classify, decide
from butter.hosts._sweep import Sweep
from butter.peers import HostQuality, PeerAddress, PeerInfo, kept_tag
from butter.settings import ButterSettings
from butter.wire import Request, decode_payload, encode_payload

MakeSettings = Callable[..., ButterSettings]


def peer(n: int, **quality: float) -> PeerInfo:
    return PeerInfo(f"id{n}", PeerAddress("h", n), HostQuality(**quality))  # type: ignore[arg-type]


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


def test_backoff_doubles_up_to_its_cap_then_expires() -> None:
    schedule: Backoff[str] = Backoff(1.0, 4.0, expiry=20.0, capacity=2, rng=random.Random(1))
    schedule.add("a", now=0.0)
    schedule.add("a", now=0.5)  # already scheduled: keeps its schedule
    attempts = [t / 10 for t in range(0, 300) if schedule.due(t / 10)]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
    assert 0.8 <= attempts[0] <= 1.2  # first after ``first`` (± 20 %)
    assert 1.6 <= gaps[0] <= 2.4 and all(3.2 <= gap <= 4.8 for gap in gaps[1:])  # doubling, capped
    assert attempts[-1] < 20.0 and "a" not in schedule  # forgotten after ``expiry``


def test_backoff_capacity_hurry_and_per_key_expiry() -> None:
    schedule: Backoff[str] = Backoff(1.0, 4.0, expiry=10.0, capacity=2, rng=random.Random(2))
    schedule.add("a", now=0.0)
    schedule.add("b", now=0.0, expiry=float("inf"))
    schedule.add("c", now=0.0)  # over capacity: the first added is forgotten
    assert "a" not in schedule and len(schedule) == 2
    assert sorted(schedule.due(1.5)) == ["b", "c"]
    assert schedule.due(1.6) == []
    schedule.hurry(1.6)  # all due at once, backoff started over
    assert sorted(schedule.due(1.6)) == ["b", "c"] and 2.4 <= schedule.next_due() <= 2.8
    schedule.discard("c")
    assert schedule.due(1000.0) == ["b"]  # b never expires


@pytest.mark.anyio
async def test_a_lost_host_is_probed_again_until_it_is_back(memory_settings: MakeSettings) -> None:
    """a knows b and c (it is not lonely, so discovery stays quiet); b dies; a node restarted at b's address
    is admitted again by a's re-probing alone."""
    options = {**FAST, "exchange_interval": 3600.0, "reprobe_interval": 0.1, "reprobe_max_interval": 0.4}
    hm = {"driver": "diversity", "options": options}
    async with butter.open_node(memory_settings(host_manager=hm)) as a, \
            butter.open_node(memory_settings(host_manager=hm)) as c:
        assert await a.hosts.offer(c.address)
        async with butter.open_node(memory_settings(host_manager=hm)) as b:
            assert await a.hosts.offer(b.address)
            port = b.address.port
        with anyio.fail_after(5):  # the refresh finds b gone
            while len(a.hosts.peers()) > 1:
                await anyio.sleep(0.02)
        await anyio.sleep(1.0)  # a keeps probing b's address meanwhile
        async with butter.open_node(memory_settings(host_manager=hm, port=port)) as reborn:
            with anyio.fail_after(5):
                while reborn.node_id not in {p.node_id for p in a.hosts.peers()}:
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


# -- the driver's protocol: host-quality and known-hosts ------------------------------------------------------


def holds(node: butter.Node, holds: bool, hold_timeout: float = 60.0) -> bytes:
    return encode_payload({"id": node.node_id, "holds": holds, "hold_timeout": hold_timeout})


@pytest.mark.anyio
async def test_a_holder_counts_toward_known_by_until_it_releases_or_its_hold_lapses(
    memory_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_protocol, "PRUNE_INTERVAL", 0.0)  # count lapsed holds out at once, not within 1 s
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        info = PeerInfo.from_wire(decode_payload(await b.request(a.address, "host-quality")))  # a plain probe
        assert info.node_id == a.node_id and a.quality().known_by == a.hosts.known_by() == 0
        await b.request(a.address, "host-quality", holds(b, True))
        assert a.quality().known_by == 1
        await b.request(a.address, "host-quality", holds(b, False))  # a release
        assert a.quality().known_by == 0
        await b.request(a.address, "host-quality", holds(b, True, hold_timeout=0.05))
        assert a.quality().known_by == 1
        await anyio.sleep(0.1)
        assert a.quality().known_by == 0
        await b.request(a.address, "host-quality", holds(b, True, hold_timeout=1e12))  # cut to an hour
        assert (await a._route_table.dispatch(Request(1, "host-quality", holds(a, True)))).ok  # unauthenticated
        assert a.quality().known_by == 1  # a node never counts itself
        assert a.quality().known_by == 1


@pytest.mark.anyio
async def test_an_exchange_introduces_the_caller_and_answers_a_sample(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        body = encode_payload({"from": b.info().to_wire(), "sample": []})
        assert decode_payload(await b.request(a.address, "known-hosts", body)) == {"sample": []}
        with anyio.fail_after(5):
            while [p.node_id for p in a.hosts.peers()] != [b.node_id]:
                await anyio.sleep(0.02)
        sample = decode_payload(await b.request(a.address, "known-hosts"))["sample"]
        assert [PeerInfo.from_wire(entry).node_id for entry in sample] == [b.node_id]


HOSTILE = [
    ("known-hosts", {"sample": 1}),
    ("known-hosts", {"sample": [1]}),
    ("known-hosts", {"from": 5}),
    ("known-hosts", {"from": {"id": "x", "addr": "nowhere"}}),
    ("known-hosts", [1, 2]),
    ("host-quality", {"id": 5}),
    ("host-quality", {"id": "x" * 129, "holds": True}),
    ("host-quality", {"id": "x", "holds": "yes"}),
    ("host-quality", {"id": "x", "holds": True, "hold_timeout": -1}),
    ("host-quality", {"id": "x", "holds": True, "hold_timeout": "long"}),
    ("host-quality", {"id": "x", "holds": True, "hold_timeout": float("nan")}),
    ("host-quality", "holds"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("route", "body"), HOSTILE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(HOSTILE)])
async def test_mistyped_host_route_bodies_are_bad_requests(
    memory_settings: MakeSettings, route: str, body: object
) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        with pytest.raises(RemoteError) as info:
            await b.request(a.address, route, encode_payload(body))
        assert info.value.code == "bad-request", info.value
        assert a.quality().known_by == 0 and a.hosts.peers() == []


@pytest.mark.anyio
async def test_an_authenticated_caller_cannot_hold_or_introduce_as_another_node(
    memory_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with butter.open_node(memory_settings()) as a, butter.open_node(memory_settings()) as b:
        posing = encode_payload({"id": "someone-else", "holds": True, "hold_timeout": 60})
        for _ in range(3):
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, "host-quality", posing)
            assert info.value.code == SENDER_MISMATCH and b.node_id in info.value.message
        assert a.quality().known_by == 0 and a.stats.sender_mismatches == 3
        assert len([r for r in caplog.records if "refused route 'host-quality'" in r.getMessage()]) == 1
        other = PeerInfo("someone-else", b.address, HostQuality(), 0.0).to_wire()
        with pytest.raises(RemoteError, match=SENDER_MISMATCH):
            await b.request(a.address, "known-hosts", encode_payload({"from": other, "sample": []}))
        await b.request(a.address, "host-quality", holds(b, True))
        assert a.quality().known_by == 1  # the honest path
        # unauthenticated (no caller known): the body is taken at its word
        reply = await a._route_table.dispatch(Request(2, "host-quality", posing))
        assert reply.ok and a.quality().known_by == 2 and a.stats.sender_mismatches == 4


class Silent:
    """A host manager with no protocol of its own: it registers no routes and knows nobody."""

    capacity = 1

    def peers(self) -> list[PeerInfo]:
        return []

    def sample(self, k: int) -> list[PeerInfo]:
        return []

    async def offer(self, address: PeerAddress) -> bool:
        return False

    def report_dead(self, address: PeerAddress) -> None:
        pass

    def known_by(self) -> int:
        return 7

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    @butter.hookimpl
    def butter_host_manager(self, node: butter.Node) -> "Silent":
        return self


@pytest.mark.anyio
async def test_the_host_protocol_belongs_to_the_driver(memory_settings: MakeSettings) -> None:
    async with butter.open_node(memory_settings(host_manager={"driver": ""}), plugins=(Silent(),)) as a, \
            butter.open_node(memory_settings()) as b:
        assert a.routes == ["delete-item", "fetch-block", "get-document", "get-record", "ping", "put-record",
                            "put-revisions"]
        for route in ("host-quality", "known-hosts"):
            with pytest.raises(RemoteError) as info:
                await b.request(a.address, route)
            assert info.value.code == "unknown-route"
        assert a.quality().known_by == 7  # the node reports what its host manager counts


@pytest.mark.anyio
async def test_a_busy_host_is_kept_until_max_failures_and_a_gone_one_is_removed_at_once(
    memory_settings: MakeSettings,
) -> None:
    """A poll that times out says nothing certain (a busy host, or a busy node, fails so too): the host goes
    after ``max_failures`` in a row. One refused outright (``PeerGone``: nothing listens) goes at once."""
    options = {**FAST, "refresh_interval": 60.0, "quality_timeout": 0.2, "max_failures": 3}  # refreshes by hand
    hm = {"driver": "diversity", "options": options}
    async with butter.open_node(memory_settings(host_manager=hm)) as a:
        async with butter.open_node(memory_settings(peers=[str(a.address)], host_manager=hm)) as busy:
            with anyio.fail_after(10):
                while not a.hosts.peers():
                    await anyio.sleep(0.02)

            async def too_slow(request: butter.RouteRequest) -> bytes:
                await anyio.sleep(1.0)
                return b""

            busy.route("host-quality", too_slow)
            for _ in range(2):
                await a.hosts.refresh()  # type: ignore[attr-defined]
                assert [p.node_id for p in a.hosts.peers()] == [busy.node_id]
            await a.hosts.refresh()  # type: ignore[attr-defined]
            assert a.hosts.peers() == []
        async with butter.open_node(memory_settings(peers=[str(a.address)], host_manager=hm)) as gone:
            with anyio.fail_after(10):
                while [p.node_id for p in a.hosts.peers()] != [gone.node_id]:
                    await anyio.sleep(0.02)
        await a.hosts.refresh()  # type: ignore[attr-defined]
        assert a.hosts.peers() == []


def test_only_a_real_change_restarts_a_hosts_poll_schedule() -> None:
    from butter.hosts._manager import _changed

    base = HostQuality(uptime=100.0, available_storage=1000, known_hosts=50, known_by=40)
    assert not _changed(base, HostQuality(uptime=160.0, available_storage=1000, known_hosts=50, known_by=40))
    assert not _changed(base, HostQuality(uptime=160.0, available_storage=600, known_hosts=90, known_by=25))
    assert _changed(base, HostQuality(uptime=5.0, available_storage=1000, known_hosts=50, known_by=40))  # restart
    # counts that drift, even twofold, do not (a growing overlay moves them all the time)
    assert not _changed(base, HostQuality(uptime=160.0, available_storage=1000, known_hosts=110, known_by=20))
    assert _changed(base, HostQuality(uptime=160.0, available_storage=400, known_hosts=50, known_by=40))  # halved
    assert _changed(base, HostQuality(uptime=160.0, available_storage=1000, known_hosts=0, known_by=40))
    assert _changed(base, HostQuality(uptime=160.0, available_storage=0, known_hosts=50, known_by=40))  # full
    assert _changed(base, HostQuality(uptime=160.0, available_storage=1000, known_hosts=50, known_by=40,
                                      ambassador=True))
    few = HostQuality(uptime=100.0, known_hosts=2, known_by=1)
    assert _changed(few, HostQuality(uptime=160.0, known_hosts=2, known_by=2))  # 0, 1 and 2 are told apart


class Served:
    """Counts the ``host-quality`` requests a node answered."""

    def __init__(self) -> None:
        self.polls = 0

    @butter.hookimpl
    def butter_request_served(self, route: str) -> None:
        self.polls += route == "host-quality"


def test_polls_of_an_unchanged_host_back_off_and_its_hold_lasts() -> None:
    """On virtual time: a host whose record does not change is polled at fourfold intervals up to
    ``refresh_max_interval`` (1, 4, 8, 8, ... s: about 9 polls in 64 s, not 64), stays known, and keeps
    counting its poller in ``known_by``."""
    from trio.testing import MockClock

    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, int, bool]:
        make = memory_settings_factory("backoff-virtual")
        hm = {"driver": "diversity", "options": {"refresh_interval": 1.0, "refresh_max_interval": 8.0,
                                                  "exchange_interval": 1.0, "seed": 1}}
        async with butter.open_node(make(host_manager=hm)) as a, \
                butter.open_node(make(peers=[str(a.address)], host_manager=hm)) as b:
            served = Served()
            a.subscribe(served)
            with anyio.fail_after(30):
                while b.node_id not in {p.node_id for p in a.hosts.peers()} or not b.hosts.peers():
                    await anyio.sleep(0.1)
            before = served.polls
            known_by = []
            for _ in range(64):
                await anyio.sleep(1.0)
                known_by.append(a.hosts.known_by())
            return served.polls - before, min(known_by), a.node_id in {p.node_id for p in b.hosts.peers()}

    polls, least_known_by, still_known = anyio.run(main, backend="trio",
                                                   backend_options={"clock": MockClock(autojump_threshold=0)})
    assert still_known
    assert 6 <= polls <= 16, polls
    assert least_known_by == 1


def test_the_kept_tag_travels_in_the_record_and_anything_else_reads_as_none() -> None:
    tag = kept_tag(["bb" * 32, "aa" * 32, "aa" * 32])
    assert tag == kept_tag(["aa" * 32, "bb" * 32]) != kept_tag(["aa" * 32]) and len(tag) == 16
    assert HostQuality.from_wire(HostQuality(kept=tag).to_wire()).kept == tag
    for lie in ("x" * 16, tag.upper(), tag + "0", b"\x00" * 8, 7):
        assert HostQuality.from_wire({"kept": lie}).kept == ""
    assert HostQuality.from_wire({}).kept == ""  # an older peer


def test_backoff_grows_by_its_factor() -> None:
    schedule: Backoff[str] = Backoff(1.0, 16.0, expiry=float("inf"), capacity=1, rng=random.Random(3), factor=4.0)
    schedule.add("a", now=0.0)
    attempts = [t / 10 for t in range(0, 1000) if schedule.due(t / 10)]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
    assert 3.2 <= gaps[0] <= 4.8 and all(12.8 <= gap <= 19.2 for gap in gaps[1:])  # 1, 4, then the cap
    with pytest.raises(ValueError):
        Backoff(1.0, 16.0, expiry=1.0, capacity=1, factor=1.0)


def test_backoff_can_start_further_along() -> None:
    schedule: Backoff[str] = Backoff(1.0, 16.0, expiry=float("inf"), capacity=3, rng=random.Random(4), factor=4.0)
    schedule.add("later", now=0.0, first=4.0)  # as if already due once at 1 s
    schedule.add("short", now=0.0, first=0.1)  # never sooner than ``first``
    schedule.add("long", now=0.0, first=100.0)  # never later than the cap
    assert 3.2 <= schedule.due_at("later") <= 4.8 and 0.8 <= schedule.due_at("short") <= 1.2
    assert 12.8 <= schedule.due_at("long") <= 19.2
    attempts = [t / 10 for t in range(0, 400) if "later" in schedule.due(t / 10)]
    assert 12.8 <= attempts[1] - attempts[0] <= 19.2  # then on from there: the cap


def test_sweep_visits_every_key_once_a_round_within_its_rate() -> None:
    """A short list is visited every ``interval`` (± 20 %); a long one in rounds of ``len / rate``, never more
    than ``rate`` visits per second (one slot of credit after a lull)."""
    short: Sweep[int] = Sweep(10.0, rate=1.0, rng=random.Random(5))
    for key in range(3):
        short.add(key, now=0.0)
    visits = [(t / 10, key) for t in range(0, 400) for key in short.due(t / 10)]
    assert all(3 <= [k for _, k in visits].count(key) <= 5 for key in range(3))  # 40 s in rounds of 8 to 12 s
    assert all(8.0 <= t <= 12.0 for t, _ in visits[:3])
    long: Sweep[int] = Sweep(10.0, rate=2.0, rng=random.Random(6))
    for key in range(100):
        long.add(key, now=0.0, wait=0.0)  # all due at once
    assert long.round() == 50.0
    per_second = Counter(int(t / 10) for t in range(0, 2000) for _ in long.due(t / 10))
    assert max(per_second.values()) <= 3 and sum(per_second.values()) <= 2 * 200 + 2
    assert sum(per_second.values()) >= 100 * 3  # about 200 s / 50 s = 4 rounds, each key in every one
    long.discard(7)
    assert 7 not in long and len(long) == 99 and long.due_at(7) == float("inf")
    with pytest.raises(ValueError):
        Sweep(10.0, rate=0.0)


def _virtual(main: Callable[[], object]) -> object:
    from trio.testing import MockClock

    return anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})  # type: ignore[arg-type]


def test_the_probe_that_admits_a_host_holds_it_and_counts_as_its_first_poll() -> None:
    """On virtual time: right after ``offer`` the admitted host counts its new holder (``known_by`` 1), and
    its first poll comes at 4 × ``refresh_interval``, not after ``refresh_interval``."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, int, int]:
        make = memory_settings_factory("held-probe")
        hm = {"driver": "diversity", "options": {"refresh_interval": 1.0, "refresh_max_interval": 16.0,
                                                  "exchange_interval": 3600.0, "seed": 2}}
        async with butter.open_node(make(host_manager=hm)) as a, butter.open_node(make(host_manager=hm)) as b:
            served = Served()
            a.subscribe(served)
            assert await b.hosts.offer(a.address)
            known_by, probes = a.hosts.known_by(), served.polls
            await anyio.sleep(3.0)
            early = served.polls - probes
            await anyio.sleep(2.5)
            return known_by, early, served.polls - probes

    known_by, early, by_five = _virtual(main)  # type: ignore[misc]
    assert known_by == 1
    assert early == 0  # the old schedule polled at about 1 s
    assert by_five == 1


def test_a_host_where_nothing_listens_is_reprobed_only_after_reprobe_max_interval() -> None:
    """On virtual time: a host that refused the connection (its process is gone) is not re-probed at 1, 2,
    4 ... s but first after ``reprobe_max_interval`` (30 s): a node restarted at its address 2 s later is
    admitted again only then."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[bool, bool]:
        make = memory_settings_factory("refused-reprobe")
        hm = {"driver": "diversity", "options": {"refresh_interval": 1.0, "exchange_interval": 3600.0,
                                                  "reprobe_interval": 1.0, "reprobe_max_interval": 30.0, "seed": 3}}
        async with butter.open_node(make(host_manager=hm)) as a:
            async with butter.open_node(make(host_manager=hm)) as b:
                assert await a.hosts.offer(b.address)
                port = b.address.port
            await a.hosts.refresh()  # connection refused: removed, lost
            assert a.hosts.peers() == []
            await anyio.sleep(2.0)
            async with butter.open_node(make(host_manager=hm, port=port)) as reborn:
                await anyio.sleep(10.0)
                early = bool(a.hosts.peers())  # the old 1, 2, 4, 8 s re-probes found it by now
                await anyio.sleep(30.0)
                return early, reborn.node_id in {p.node_id for p in a.hosts.peers()}

    early, back = _virtual(main)  # type: ignore[misc]
    assert not early and back


def test_a_node_knowing_few_hosts_introduces_itself_to_the_answer_of_its_exchange() -> None:
    """On virtual time: x knows only b, and b holds x (so x is not lonely); after one exchange with b, whose
    answer names c and d, x has sent its record to c and d too, which admit it. With ``FEW_HOSTS`` hosts or
    more known, the answer's hosts would hear of x only through later exchanges."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, set[str]]:
        make = memory_settings_factory("few-hosts")
        hm = {"driver": "diversity", "options": {"refresh_interval": 1.0, "exchange_interval": 3600.0, "seed": 5}}
        async with butter.open_node(make(host_manager=hm)) as b, butter.open_node(make(host_manager=hm)) as c, \
                butter.open_node(make(host_manager=hm)) as d, butter.open_node(make(host_manager=hm)) as x:
            assert await b.hosts.offer(c.address) and await b.hosts.offer(d.address)
            assert await x.hosts.offer(b.address) and await b.hosts.offer(x.address)
            await anyio.sleep(2.0)  # older than refresh_interval
            known_by = x.hosts.known_by()
            await x.hosts.exchange()  # type: ignore[attr-defined]
            with anyio.move_on_after(10):
                while not all(x.node_id in {p.node_id for p in n.hosts.peers()} for n in (c, d)):
                    await anyio.sleep(0.1)
            return known_by, {n.node_id for n in (c, d) if x.node_id in {p.node_id for p in n.hosts.peers()}}

    known_by, admitted_x = _virtual(main)  # type: ignore[misc]
    assert known_by == 1
    assert len(admitted_x) == 2


def _passive_options(**extra: float) -> dict[str, object]:
    return {"driver": "diversity", "options": {"refresh_interval": 1.0, "refresh_max_interval": 4.0,
                                               "exchange_interval": 3600.0, "active_size": 2,
                                               "passive_interval": 20.0, **extra}}


def test_passive_hosts_are_polled_on_a_budget_and_stay_held() -> None:
    """On virtual time: a node knowing 12 hosts with an active view of 2 polls those 2 on the refresh schedule
    (every 4 s once backed off) and the 10 passive ones once per round (max(20 s, 10 / 0.2 per s) = 50 s,
    ± 20 %): about 50 + 20 polls in 100 s, where polling all 12 on the refresh schedule took about 300. Every
    host stays known, and keeps counting its poller in ``known_by`` between its rare polls."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, list[int], int, int]:
        make = memory_settings_factory("passive-budget")
        quiet = {"driver": "diversity", "options": {"exchange_interval": 3600.0}}
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(butter.open_node(make(
                host_manager=_passive_options(passive_rate=0.2, seed=6))))
            hosts = [await stack.enter_async_context(butter.open_node(make(host_manager=quiet))) for _ in range(12)]
            served = []
            for host in hosts:
                served.append(Served())
                host.subscribe(served[-1])
                assert await a.hosts.offer(host.address)
            least_known_by = [1] * len(hosts)
            for _ in range(100):
                await anyio.sleep(1.0)
                least_known_by = [min(k, h.hosts.known_by()) for k, h in zip(least_known_by, hosts, strict=True)]
            passive_polls = min(sorted(s.polls for s in served)[:10])
            return sum(s.polls for s in served), least_known_by, passive_polls, len(a.hosts.peers())

    polls, least_known_by, passive_polls, known = _virtual(main)  # type: ignore[misc]
    assert known == 12
    assert least_known_by == [1] * 12
    assert passive_polls >= 2  # the admission probe and at least one poll in 100 s: still checked
    assert 12 + 50 <= polls <= 12 + 90, polls


def test_a_dead_passive_host_goes_at_its_slow_poll_and_a_lost_active_one_is_replaced() -> None:
    """On virtual time, active view 2 of 5 hosts: an active host that dies is removed at its next poll and a
    passive host takes its place in the active view (polled on the refresh schedule from then on); a passive
    host that dies is removed at its slow poll, within a round (20 s ± 20 %)."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, int, bool, bool]:
        make = memory_settings_factory("passive-prune")
        quiet = {"driver": "diversity", "options": {"exchange_interval": 3600.0}}
        async with contextlib.AsyncExitStack() as outer:
            a = await outer.enter_async_context(butter.open_node(make(host_manager=_passive_options(seed=7))))
            hosts = {}
            for _ in range(5):
                host = await outer.enter_async_context(butter.open_node(make(host_manager=quiet)))
                hosts[host.address] = host
                assert await a.hosts.offer(host.address)
            manager = a.hosts
            active = [address for address in hosts if address in manager._polls]  # type: ignore[attr-defined]
            passive = [address for address in hosts if address in manager._passive]  # type: ignore[attr-defined]
            await hosts[active[0]].aclose(graceful=False)  # dies without a word, as under churn
            await hosts[passive[0]].aclose(graceful=False)
            await anyio.sleep(6.0)  # the active host's next poll (4 s ± 20 %)
            known = {p.address for p in a.hosts.peers()}
            active_after = sum(address in manager._polls for address in known)  # type: ignore[attr-defined]
            active_gone, passive_kept = active[0] not in known, passive[0] in known
            await anyio.sleep(20.0)  # the passive host's slow poll (20 s ± 20 % after its admission)
            return len(a.hosts.peers()), active_after, active_gone, passive_kept

    known, active_after, active_gone, passive_kept = _virtual(main)  # type: ignore[misc]
    assert active_gone and passive_kept
    assert active_after == 2
    assert known == 3


def test_an_address_reported_dead_that_was_never_known_is_not_reprobed() -> None:
    """On virtual time: other modules report the dead members and search answers they met, mostly
    addresses host management never knew; those are not lost hosts, so nothing is re-probed (the old driver
    probed each at 1, 2, 4 ... s). A known host reported dead still is, and is admitted again once it answers."""
    from butter.testing.pytest_plugin import memory_settings_factory

    async def main() -> tuple[int, bool]:
        make = memory_settings_factory("unknown-dead")
        hm = {"driver": "diversity", "options": {"exchange_interval": 3600.0, "seed": 8}}
        async with butter.open_node(make(host_manager=hm)) as a, butter.open_node(make(host_manager=hm)) as b, \
                butter.open_node(make(host_manager=hm)) as c:
            served = Served()
            b.subscribe(served)
            a.hosts.report_dead(b.address)  # never known to a
            assert await a.hosts.offer(c.address)
            a.hosts.report_dead(c.address)  # known: lost, and re-probed
            assert a.hosts.peers() == []
            await anyio.sleep(10.0)
            return served.polls, c.node_id in {p.node_id for p in a.hosts.peers()}

    probes_of_b, c_back = _virtual(main)  # type: ignore[misc]
    assert probes_of_b == 0
    assert c_back
