from butter.peers import PeerAddress
from butter_persist_pcg import GroupView

CID = "ab" * 32
HERE = PeerAddress("m", 1)


def view(self_id: str = "m5", replicas: int = 3) -> GroupView:
    return GroupView(CID, 100, self_id, HERE, replicas)


def test_states_and_leader() -> None:
    v = view("m5")
    assert v.count == 1 and v.state(3) == "cold" and v.is_leader
    v.heard("m9", PeerAddress("m", 9), now=0.0)
    assert not v.is_leader and v.leader == "m9"
    v.heard("m1", PeerAddress("m", 2), now=0.0)
    assert v.state(3) == "goldilocks"
    v.heard("m2", PeerAddress("m", 3), now=0.0)
    assert v.state(3) == "hot"
    assert v.shed_candidates(3) == ["m1"]


def test_silent_members_expire_but_self_never_does() -> None:
    v = view()
    v.heard("a", PeerAddress("m", 2), now=0.0)
    v.heard("b", PeerAddress("m", 3), now=4.0)
    assert v.expire(now=6.0, timeout=5.0) == {"a": PeerAddress("m", 2)}
    assert set(v.members) == {"m5", "b"}
    assert not v.drop("m5", 6.0)


def test_merge_adopts_fresh_entries_only() -> None:
    v = view()
    added = v.merge([("x", PeerAddress("m", 7), 1.0), ("y", PeerAddress("m", 8), 9.0), ("m5", HERE, 0.0)],
                    now=100.0, timeout=5.0)
    assert added == ["x"]
    assert v.members["x"].last_heard == 99.0
    assert "y" not in v.members  # stale gossip does not resurrect a dead member


def test_popularity_raises_the_target_with_a_cap() -> None:
    v = view()
    v.heard("a", PeerAddress("m", 2), now=0.0, hits=30)
    assert v.target(own_hits=10, popularity_hits=20, max_replicas=8) == 5
    assert v.target(own_hits=1000, popularity_hits=20, max_replicas=8) == 8
    assert v.target(own_hits=1000, popularity_hits=0, max_replicas=8) == 3


def test_tombstones_stop_stale_gossip_until_heard_directly() -> None:
    v = view()
    v.heard("x", PeerAddress("m", 7), now=10.0)
    assert v.drop("x", now=11.0)
    assert v.merge([("x", PeerAddress("m", 7), 0.5)], now=11.2, timeout=5.0) == []  # heard 10.7 < 11.0
    assert v.merge([("x", PeerAddress("m", 7), 0.1)], now=11.2, timeout=5.0) == ["x"]  # fresher than the drop
    v.drop("x", now=12.0)
    v.heard("x", PeerAddress("m", 7), now=12.5)
    assert "x" in v.members and "x" not in v.departed


def test_lost_members_are_probed_on_a_backoff_for_their_groups_until_found() -> None:
    import random

    from butter_persist_pcg._lost import LostMembers

    lost = LostMembers(interval=1.0, expiry=30.0, rng=random.Random(3))
    lost.lost("x", PeerAddress("m", 7), "cid1", now=0.0)
    lost.lost("x", PeerAddress("m", 8), "cid2", now=0.5)  # same member, another group, a new address
    assert lost.due(0.5) == {}
    due = lost.due(1.5)
    assert list(due) == ["x"] and due["x"].groups == {"cid1", "cid2"} and due["x"].address == PeerAddress("m", 8)
    assert lost.due(2.0) == {}  # the next probe is further out
    assert lost.get("x") is not None
    lost.found("x")
    assert lost.get("x") is None and lost.due(100.0) == {} and len(lost) == 0
    lost.lost("y", PeerAddress("m", 9), "cid1", now=0.0)
    assert lost.due(31.0) == {} and len(lost) == 0  # forgotten after the expiry


def test_partners_tally_counts_every_member_of_the_attached_views() -> None:
    partners: dict[str, int] = {}
    a, b = view("m5"), GroupView("cd" * 32, 100, "m5", HERE, 3)
    a.heard("x", PeerAddress("m", 7), now=0.0)
    a.attach(partners)
    b.attach(partners)
    b.merge([("x", PeerAddress("m", 7), 0.0), ("y", PeerAddress("m", 8), 0.0)], now=1.0, timeout=5.0)
    b.heard("z", PeerAddress("m", 9), now=1.0)
    assert partners == {"m5": 2, "x": 2, "y": 1, "z": 1}
    b.drop("y", now=2.0)
    assert b.expire(now=6.5, timeout=5.0) == {"x": PeerAddress("m", 7), "z": PeerAddress("m", 9)}
    assert partners == {"m5": 2, "x": 1}  # a node counted nowhere leaves the tally
    b.detach()
    b.heard("w", PeerAddress("m", 10), now=7.0)  # a detached view (a forgotten group) counts nothing
    assert partners == {"m5": 1, "x": 1}
    a.drop("x", now=8.0)
    assert partners == {"m5": 1}
