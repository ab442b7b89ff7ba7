"""The search and the query handler, driven by hand over a fake overlay: no sockets, no clock."""

from __future__ import annotations

import random

import pytest

from butter_retrieve_bfs import Hit, Miss, Query, QueryHandler, Search, Seen

from .helpers import CID, Overlay, addr, line


def query(ttl: int = 3, fraction: float = 1.0, qid: bytes = b"q" * 16, hints: bool = True) -> Query:
    return Query(qid, CID, ttl, fraction, hints)


def handle(handler: QueryHandler, q: Query, *, holds: bool = False, known: int = 10, hinted: int = 0,
           now: float = 0.0) -> Hit | Miss | Seen:
    return handler.handle(
        q, now, holds=holds,
        members=lambda: [addr(100), addr(101)],
        known=lambda: [addr(i) for i in range(known)],
        hinted=lambda: [addr(i) for i in range(hinted)],
    )


def test_a_holder_answers_hit_with_the_members_it_knows() -> None:
    reply = handle(QueryHandler(rng=random.Random(0)), query(), holds=True)
    assert reply == Hit((addr(100), addr(101)))


def test_a_miss_returns_a_random_fraction_of_known_hosts_without_replacement() -> None:
    handler = QueryHandler(rng=random.Random(0))
    reply = handle(handler, query(fraction=0.5), known=9)
    assert isinstance(reply, Miss)
    assert len(reply.peers) == 5  # ceil(0.5 x 9)
    assert len(set(reply.peers)) == 5
    assert set(reply.peers) <= {addr(i) for i in range(9)}
    other = handle(handler, query(fraction=0.5, qid=b"r" * 16), known=9)
    assert isinstance(other, Miss) and other.peers != reply.peers  # random, not the same half every time


def test_the_sample_is_capped_and_hints_are_named() -> None:
    handler = QueryHandler(rng=random.Random(0), max_sample=4, max_hints=2)
    reply = handle(handler, query(), known=50, hinted=5)
    assert isinstance(reply, Miss)
    assert len(reply.peers) == 4 and len(reply.hints) == 2
    no_hints = handle(handler, query(qid=b"h" * 16, hints=False), known=50, hinted=5)
    assert isinstance(no_hints, Miss) and no_hints.hints == ()


def test_a_node_on_the_horizon_returns_no_addresses() -> None:
    reply = handle(QueryHandler(rng=random.Random(0)), query(ttl=0), known=10, hinted=3)
    assert reply == Miss()


def test_a_query_id_is_handled_once_then_refused_as_seen() -> None:
    handler = QueryHandler(rng=random.Random(0), seen_expiry=10.0)
    assert isinstance(handle(handler, query(), now=0.0), Miss)
    assert handle(handler, query(), now=1.0) == Seen()
    assert handle(handler, query(), holds=True, now=2.0) == Seen()  # not even a holder answers twice
    assert (handler.stats.handled, handler.stats.duplicates) == (1, 2)
    assert isinstance(handle(handler, query(), now=11.0), Miss)  # forgotten after seen_expiry seconds


def test_the_seen_cache_is_bounded() -> None:
    handler = QueryHandler(rng=random.Random(0), seen_capacity=16)
    for i in range(100):
        assert handler.first_time(i.to_bytes(16, "big"), 0.0)
    assert len(handler._seen) <= 16


def test_search_finds_an_item_several_hops_away_and_counts_hops() -> None:
    overlay = Overlay(line(6), holders=[5])
    search = overlay.search(0, ttl=None)
    assert search.holders[0] == addr(5)
    assert search.max_depth == 5 and search.asked == 5
    assert search.requests == search.replies == 5


def test_ttl_is_a_hop_limit() -> None:
    overlay = Overlay(line(6), holders=[5])
    short = overlay.search(0, ttl=4)
    assert not short.holders and short.exhausted
    assert short.max_depth == 4  # nodes 1..4 asked, node 4 on the horizon returned nothing
    assert overlay.search(0, ttl=5).holders == [addr(5)]


def test_a_repeated_query_id_finds_nothing_new() -> None:
    overlay = Overlay(line(4), holders=[3])
    first = Search(CID, query_id=b"q" * 16, ttl=None, fraction=1.0, known=[addr(1)], rng=random.Random(0))
    ask = first.next_ask()
    assert ask is not None
    handler = overlay.handlers[1]
    assert isinstance(handler.handle(ask.query, 0.0, holds=False, members=list, known=lambda: [addr(2)],
                                     hinted=list), Miss)
    again = handler.handle(ask.query, 0.0, holds=False, members=list, known=lambda: [addr(2)], hinted=list)
    first.on_reply(ask, again)
    assert again == Seen() and first.duplicates == 1 and first.exhausted


def test_no_node_is_asked_twice_even_in_a_clique() -> None:
    n = 12
    overlay = Overlay({i: [j for j in range(n) if j != i] for i in range(n)}, holders=[])
    search = overlay.search(0, ttl=None, parallelism=4)
    assert search.exhausted and not search.holders
    assert search.asked == search.requests == n - 1
    assert all(h.stats.handled <= 1 and h.stats.duplicates == 0 for h in overlay.handlers.values())


def test_hinted_hosts_are_asked_first_and_alone() -> None:
    links = {0: [1, 2, 3, 4], 1: [0], 2: [0], 3: [0, 9], 4: [0], 9: [3]}
    overlay = Overlay(links, holders=[9], digests={0: [], 3: [9]})
    search = Search(CID, query_id=b"x" * 16, ttl=3, fraction=1.0, known=[addr(i) for i in links[0]],
                    hinted=[addr(4)], rng=random.Random(0), skip=[addr(0)])
    first = search.next_ask(8)
    assert first is not None and first.address == addr(4) and first.hinted
    assert search.next_ask(8) is None  # nothing else while the hinted ask is out
    search.on_reply(first, Miss())
    assert search.next_ask(8) is not None
    full = overlay.search(0, ttl=3, parallelism=8)
    assert full.holders == [addr(9)]


def test_hints_are_followed_before_the_rest_of_the_level() -> None:
    n = 40
    links = {i: [j for j in range(1, n) if j != i] for i in range(n)}
    overlay = Overlay(links, holders=[39], digests={i: [39] for i in range(n)})
    search = overlay.search(0, ttl=2, fraction=1.0, parallelism=1)
    assert search.holders[0] == addr(39) and search.requests == 1


def test_members_of_a_hit_become_holders_and_the_querier_is_skipped() -> None:
    search = Search(CID, query_id=b"x" * 16, ttl=2, fraction=1.0, known=[addr(1)], rng=random.Random(0),
                    skip=[addr(0)])
    ask = search.next_ask()
    assert ask is not None
    search.on_reply(ask, Hit((addr(0), addr(7), addr(8))))
    assert search.holders == [addr(1), addr(7), addr(8)]


def test_dead_hosts_are_recorded_and_the_search_goes_on() -> None:
    overlay = Overlay({0: [1, 2], 1: [3], 2: [3], 3: []}, holders=[3], dead=[1])
    search = overlay.search(0, ttl=3)
    assert search.dead == [addr(1)]
    assert search.holders == [addr(3)]
    assert search.replies == search.requests - 1


def test_fraction_samples_the_queriers_own_hosts() -> None:
    search = Search(CID, query_id=b"x" * 16, ttl=1, fraction=0.25, known=[addr(i) for i in range(1, 41)],
                    rng=random.Random(0))
    assert search.queued == 10


def test_the_frontier_is_bounded() -> None:
    search = Search(CID, query_id=b"x" * 16, ttl=3, fraction=1.0, known=[addr(1)], rng=random.Random(0),
                    max_frontier=16)
    ask = search.next_ask()
    assert ask is not None
    search.on_reply(ask, Miss(tuple(addr(i) for i in range(100, 200))))
    assert search.queued == 16 and search.dropped == 84


def test_the_query_sent_carries_the_remaining_hops() -> None:
    search = Search(CID, query_id=b"x" * 16, ttl=3, fraction=1.0, known=[addr(1)], rng=random.Random(0))
    ask = search.next_ask()
    assert ask is not None and ask.depth == 1 and ask.query.ttl == 2
    search.on_reply(ask, Miss((addr(2),)))
    second = search.next_ask()
    assert second is not None and second.depth == 2 and second.query.ttl == 1


@pytest.mark.parametrize("ttl", [None, 64])
def test_no_ttl_limit_is_sent_as_the_maximum(ttl: int | None) -> None:
    search = Search(CID, query_id=b"x" * 16, ttl=ttl, fraction=1.0, known=[addr(1)], rng=random.Random(0))
    ask = search.next_ask()
    assert ask is not None and ask.query.ttl == 63


def test_within_a_hop_the_node_most_replies_named_is_asked_first() -> None:
    """The querier 0 knows 1..4; each of them knows 5 (the holder, the one all four name), and a host of its
    own (6..9). After hop 1 the holder is asked first of hop 2, whatever the seed: 4 + 1 requests."""
    links = {0: [1, 2, 3, 4], 5: [], **{i: [5, i + 5] for i in range(1, 5)}, **{i: [] for i in range(6, 10)}}
    for seed in range(20):
        overlay = Overlay(links, holders=[5], seed=seed)
        search = overlay.search(0, ttl=3, seed=seed)
        assert search.holders == [addr(5)] and search.requests == 5, seed


def test_an_address_named_again_moves_up_but_is_asked_once() -> None:
    search = Search(CID, query_id=b"q" * 16, ttl=3, fraction=1.0, known=[addr(1), addr(2)], rng=random.Random(0))
    first, second = search.next_ask(2), search.next_ask(2)
    assert first is not None and second is not None
    search.on_reply(first, Miss((addr(3), addr(4))))
    search.on_reply(second, Miss((addr(4),)))
    asks = [search.next_ask(1)]
    assert asks[0] is not None and asks[0].address == addr(4) and asks[0].depth == 2  # named twice
    search.on_reply(asks[0], Miss())
    third = search.next_ask(1)
    assert third is not None and third.address == addr(3) and search.next_ask(1) is None
    search.on_reply(third, Miss())
    assert search.exhausted and search.requests == 4


def test_a_wider_ring_goes_on_from_the_horizon_instead_of_starting_over() -> None:
    """0 - 1 - ... - 5, the holder at 5: TTL 3 asks 1, 2, 3 (3 on the horizon names nobody); the next ring asks
    3 again, with hops to spare, then 4 and 5: 3 + 3 requests, where starting over cost 3 + 5."""
    overlay = Overlay(line(6), holders=[5])
    search = overlay.search(0, ttl=3)
    assert search.exhausted and not search.holders and search.requests == 3
    search.widen(query_id=b"w" * 16, ttl=None, fraction=1.0, known=[addr(1)])
    overlay.drive(search)
    assert search.holders == [addr(5)]
    assert search.requests == 6 and search.asked == 5
    assert [h.stats.handled for h in overlay.handlers.values()] == [0, 1, 1, 2, 1, 1]



def test_a_wider_ring_asks_again_only_the_nodes_it_needs_horizon_first() -> None:
    """Ring 1 (TTL 2, fraction 0.5): node 1 names 2, 3 and 5; 2 is on the horizon, 3 times out, 5 is dead.
    Ring 2 (TTL 3, fraction 1) asks, in order: 4 (the querier's host not asked yet, hop 1), 2 (the horizon,
    now with a hop to spare), then 1 (asked with the smaller fraction) and 3 (no answer): never 5."""
    search = Search(CID, query_id=b"q" * 16, ttl=2, fraction=0.5, known=[addr(1)], rng=random.Random(0))
    first = search.next_ask()
    assert first is not None and first.address == addr(1)
    search.on_reply(first, Miss((addr(2), addr(3), addr(5))))
    while (ask := search.next_ask()) is not None:
        if ask.address == addr(2):
            search.on_reply(ask, Miss())
        else:
            search.on_failure(ask, replied=False, unreachable=ask.address == addr(5))
    assert search.exhausted and search.requests == 4
    search.widen(query_id=b"w" * 16, ttl=3, fraction=1.0, known=[addr(1), addr(4)])
    order = []
    while (ask := search.next_ask()) is not None:
        assert ask.query.query_id == b"w" * 16 and ask.query.fraction == 1.0 and ask.query.ttl == 3 - ask.depth
        order.append((ask.address.port, ask.depth))
        search.on_reply(ask, Miss())
    assert order == [(4, 1), (2, 2), (1, 1), (3, 2)]
    assert search.exhausted and search.requests == 8 and search.asked == 5
