"""The beacon state machine, driven by hand on a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import itertools
import random

import pytest

from butter.peers import PeerAddress
from butter_discover_multicast import Beacon, Dropped, Ignored, PeerFound, Ping, State, encode_ping

from .helpers import NODE_IDS, room

ME = PeerAddress("10.0.0.1", 7000)


def beacon(**kwargs: object) -> Beacon:
    return Beacon(NODE_IDS[0], ME, rng=random.Random(0), **kwargs)  # type: ignore[arg-type]


def ping_from(i: int, port: int | None = None) -> bytes:
    return encode_ping(Ping(NODE_IDS[i], PeerAddress("10.0.0.2", port or 7000 + i)))


def test_a_lonely_node_pings_at_once_then_every_interval_with_jitter() -> None:
    b = beacon(interval=1.0, jitter=0.25)
    first = b.tick(0.0, lonely=True)
    assert first.datagram is not None and b.state is State.PINGING
    assert b.tick(0.0, lonely=True).datagram is None  # not twice at the same time
    sent_at = [0.0]
    now = 0.0
    while now < 100:
        tick = b.tick(now, lonely=True)
        if tick.datagram is not None:
            sent_at.append(now)
        assert tick.wake_at > now
        now = tick.wake_at
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(0.75 - 1e-9 <= gap <= 1.25 + 1e-9 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.2  # really jittered, not in step
    assert 80 <= b.stats.pings_sent <= 125


def test_pings_stop_once_the_node_knows_someone_and_resume_when_lonely_again() -> None:
    b = beacon()
    assert b.tick(0.0, lonely=True).datagram is not None
    quiet = b.tick(0.3, lonely=False)
    assert quiet.datagram is None and b.state is State.QUIET
    assert quiet.wake_at == pytest.approx(0.3 + b.check_interval)  # keeps checking for loneliness
    assert all(b.tick(t, lonely=False).datagram is None for t in (1.0, 2.0, 50.0))
    assert b.tick(60.0, lonely=True).datagram is not None  # lonely again: ping at once
    assert b.stats.pings_sent == 2


def test_wake_up_is_never_later_than_the_next_ping_nor_the_loneliness_check() -> None:
    b = beacon(interval=10.0, jitter=0.0)
    b.tick(0.0, lonely=True)
    assert b.tick(0.0, lonely=True).wake_at == pytest.approx(2.5)  # check_interval = interval / 4
    b.tick(9.0, lonely=True)
    assert b.tick(9.0, lonely=True).wake_at == pytest.approx(10.0)


def test_a_ping_from_another_node_is_answered() -> None:
    b = beacon()
    assert b.receive(ping_from(1), 0.0) == PeerFound(NODE_IDS[1], PeerAddress("10.0.0.2", 7001))
    assert (b.stats.pings_received, b.stats.answers_due) == (1, 1)


def test_own_echo_is_ignored_by_node_id_even_from_another_address() -> None:
    b = beacon()
    echo = b.tick(0.0, lonely=True).datagram
    assert echo is not None
    assert b.receive(echo, 0.0) == Ignored("own-echo", NODE_IDS[0])
    assert b.receive(encode_ping(Ping(NODE_IDS[0], PeerAddress("10.9.9.9", 1))), 0.0) == Ignored(
        "own-echo", NODE_IDS[0]
    )
    assert b.receive(encode_ping(Ping(NODE_IDS[5], ME)), 0.0) == Ignored("own-address", NODE_IDS[5])
    assert b.stats.own_echoes == 2 and b.stats.answers_due == 0


def test_answers_are_rate_limited_per_pinger() -> None:
    b = beacon(answer_interval=0.5)
    assert isinstance(b.receive(ping_from(1), 10.0), PeerFound)
    assert b.receive(ping_from(1), 10.2) == Ignored("rate-limited", NODE_IDS[1])
    assert isinstance(b.receive(ping_from(2), 10.2), PeerFound)  # another pinger is not held back
    assert isinstance(b.receive(ping_from(1), 10.5), PeerFound)
    assert b.stats.rate_limited == 1


def test_answers_are_capped_in_total() -> None:
    b = beacon(answer_rate=5.0)
    answered = [isinstance(b.receive(ping_from(i), 0.0), PeerFound) for i in range(1, 20)]
    assert sum(answered) == 5
    assert isinstance(b.receive(ping_from(30), 0.2), PeerFound)  # refilled at 5 per second
    assert b.receive(ping_from(31), 0.2) == Ignored("rate-limited", NODE_IDS[31])


def test_the_rate_limit_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from butter_discover_multicast import _protocol

    monkeypatch.setattr(_protocol, "MAX_TRACKED_PINGERS", 8)
    b = beacon(answer_rate=1e9)
    for i in range(50):
        b.receive(encode_ping(Ping(f"n{i}", PeerAddress("10.0.0.3", 1))), 0.0)
    assert len(b._answered) <= 8
    assert b.stats.answers_due == 50


def test_bad_datagrams_are_counted_not_raised() -> None:
    b = beacon(max_datagram=128)
    assert b.receive(b"\xc1garbage", 0.0) == Dropped("malformed", b.receive(b"\xc1garbage", 0.0).detail)  # type: ignore[union-attr]
    assert isinstance(b.receive(b"x" * 129, 0.0), Dropped)
    assert isinstance(b.receive(encode_ping(Ping("n", PeerAddress("h" * 120, 1))), 0.0), Dropped)
    assert (b.stats.malformed, b.stats.oversized, b.stats.dropped) == (2, 2, 4)
    assert b.stats.as_dict()["dropped"] == 4


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        beacon(interval=0)
    with pytest.raises(ValueError, match="jitter"):
        beacon(jitter=1.0)
    with pytest.raises(ValueError, match="max_datagram"):
        Beacon("n", PeerAddress("h" * 200, 1), max_datagram=128)


def test_a_room_started_together_finds_each_other_on_the_first_round() -> None:
    r = room(8)
    events = r.step(0.0)
    found = {(sender, receiver) for sender, receiver, event in events if isinstance(event, PeerFound)}
    assert found == {(s, t) for s in range(8) for t in range(8) if s != t}  # every listener answers every pinger
    echoes = [(s, t) for s, t, event in events if isinstance(event, Ignored)]
    assert sorted(echoes) == [(i, i) for i in range(8)]


def test_a_room_drifts_out_of_step() -> None:
    r = room(8)
    r.step(0.0)
    first_repeat: dict[int, float] = {}
    now = 0.0
    while len(first_repeat) < 8:
        now += 0.01
        for sender, _, _ in r.step(now):
            first_repeat.setdefault(sender, now)
    assert len({round(t, 2) for t in first_repeat.values()}) >= 6


def test_only_lonely_nodes_ping() -> None:
    r = room(4)
    r.lonely = [True, False, False, False]
    senders = {sender for sender, _, _ in r.step(0.0)}
    assert senders == {0}
