"""The ambassador's index: expiry, bounds per subnetwork and in all, and what a pick returns."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter.peers import PeerAddress
from butter_wider_ambassador import PeerIndex, subnet_key


def addr(i: int) -> PeerAddress:
    return PeerAddress(f"198.51.100.{i % 250}", 7000 + i)


def test_subnet_keys() -> None:
    assert subnet_key("198.51.100.7", "10.1.0.10") == "nat:198.51.100.7"  # behind NAT: its public address
    assert subnet_key("203.0.113.9", "203.0.113.9") == "net:203.0.113.0/24"  # public: its /24
    assert subnet_key("203.0.113.9", "203.0.113.9", 32) == "net:203.0.113.9/32"
    assert subnet_key("2001:db8::1", "2001:db8::1", 24) == "net:2001:db8::/64"


def test_entries_expire_unless_published_again() -> None:
    index = PeerIndex(expiry=10)
    index.add("a", addr(1), "s1", relayed=False, now=0)
    index.add("b", addr(2), "s1", relayed=False, now=0)
    index.add("a", addr(1), "s1", relayed=False, now=8)  # renewed
    assert {e.node_id for e in index.entries(now=12)} == {"a"}
    assert index.expired == 1
    assert index.entries(now=18) == []


def test_per_subnet_and_total_bounds_evict_the_oldest() -> None:
    index = PeerIndex(capacity=3, per_subnet=2, expiry=100)
    index.add("a", addr(1), "s1", relayed=False, now=0)
    index.add("b", addr(2), "s1", relayed=False, now=1)
    index.add("c", addr(3), "s1", relayed=False, now=2)  # s1 full: a (oldest) goes
    assert {e.node_id for e in index.entries(3)} == {"b", "c"}
    index.add("d", addr(4), "s2", relayed=False, now=3)
    index.add("e", addr(5), "s3", relayed=False, now=4)  # full in all: b goes
    assert {e.node_id for e in index.entries(5)} == {"c", "d", "e"}
    assert index.evicted == 2


def test_pick_returns_other_subnets_direct_first_and_spread() -> None:
    index = PeerIndex(per_pick_subnet=2)
    for i in range(6):
        index.add(f"big{i}", addr(i), "big", relayed=False, now=0)
    index.add("r", addr(10), "small", relayed=True, now=0)
    index.add("mine", addr(11), "home", relayed=False, now=0)
    picked = index.pick(3, exclude_subnet="home", now=1, rng=random.Random(1))
    assert [e.subnet for e in picked] == ["big", "big", "small"]  # at most 2 of one subnet; relayed last
    assert all(e.node_id != "mine" for e in index.pick(10, exclude_subnet="home", now=1, rng=random.Random(2)))


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        PeerIndex(capacity=0)
    with pytest.raises(ValueError):
        PeerIndex(expiry=0)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.floats(0, 50)), max_size=80))
def test_bounds_always_hold(ops: list[tuple[int, int, float]]) -> None:
    index = PeerIndex(capacity=10, per_subnet=3, expiry=20)
    now = 0.0
    for node, subnet, step in ops:
        now += step
        index.add(f"n{node}", addr(node), f"s{subnet}", relayed=node % 2 == 0, now=now)
        entries = index.entries(now)
        assert len(entries) <= 10
        assert all(sum(e.subnet == s.subnet for e in entries) <= 3 for s in entries)
        assert all(e.expires > now for e in entries)
        assert len({e.node_id for e in entries}) == len(entries)
