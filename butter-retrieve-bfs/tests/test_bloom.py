"""The Bloom-filter digest and the book of peers' digests."""

from __future__ import annotations

import hashlib

from butter.peers import PeerAddress, kept_tag
from butter_retrieve_bfs import BloomFilter, DigestBook, LocalDigest


def ids(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def test_no_false_negatives_and_about_the_false_positive_rate_it_was_sized_for() -> None:
    members = ids(2000)
    bloom = BloomFilter.build(members, 0.01, max_bytes=1 << 20)
    assert all(m in bloom for m in members)
    outsiders = ids(20000, "x")
    rate = sum(o in bloom for o in outsiders) / len(outsiders)
    assert rate < 0.02
    assert 0.3 < bloom.fill_ratio() < 0.7
    assert 1 not in bloom


def test_small_and_capped_filters() -> None:
    assert BloomFilter.build([], 0.01, max_bytes=1024).nbits == 256
    capped = BloomFilter.build(ids(100_000), 0.01, max_bytes=1024)
    assert capped.nbits == 8192


def test_non_hex_keys_still_work() -> None:
    bloom = BloomFilter.build(["not hex"], 0.01, max_bytes=64)
    assert "not hex" in bloom


def test_local_digest_tag_depends_only_on_the_set() -> None:
    a, b = LocalDigest.build(ids(5), 0.01), LocalDigest.build(list(reversed(ids(5))), 0.01)
    assert a.tag == b.tag and a.bloom.bits == b.bloom.bits
    assert LocalDigest.build(ids(6), 0.01).tag != a.tag
    assert a.reply(a.tag).same and not a.reply(None).same and a.reply(None).count == 5


def test_book_matches_backs_off_and_stays_within_its_budget() -> None:
    book = DigestBook(max_bytes=100, interval=10.0, max_interval=40.0)
    one, two = PeerAddress("h", 1), PeerAddress("h", 2)
    digest = LocalDigest.build(ids(3), 0.01)
    assert book.due(one, 0.0)
    assert book.update(one, digest.reply(None), 0.0)
    assert book.matching(ids(3)[0], [one, two]) == [one]
    assert book.matching(ids(1, "x")[0], [one, two]) == []
    assert not book.due(one, 5.0) and book.due(one, 10.0)
    book.update(one, digest.reply(book.tag(one)), 10.0)  # unchanged: next pull after 20 s
    assert not book.due(one, 25.0) and book.due(one, 30.0)
    book.update(one, digest.reply(book.tag(one)), 30.0)
    book.update(one, digest.reply(book.tag(one)), 70.0)  # capped at 40 s
    assert book.due(one, 110.0)
    changed = LocalDigest.build(ids(4), 0.01)
    book.update(one, changed.reply(book.tag(one)), 110.0)
    assert not book.due(one, 115.0) and book.due(one, 120.0)  # back to 10 s
    assert book.size == 32
    big = LocalDigest.build(ids(500), 0.01)  # 600 bytes: over the budget, not kept
    assert not book.update(two, big.reply(None), 0.0) and len(book) == 1
    book.prune({two})
    assert len(book) == 0 and book.size == 0


def test_a_host_advertising_its_tag_is_pulled_only_when_a_newer_record_names_another() -> None:
    book = DigestBook(max_bytes=100, interval=10.0, max_interval=40.0)
    one = PeerAddress("h", 1)
    digest = LocalDigest.build(ids(3), 0.01)
    assert digest.tag == bytes.fromhex(kept_tag(ids(3)))  # what a host's record advertises
    assert book.due(one, 0.0, digest.tag, seen_at=0.0)  # never pulled
    book.update(one, digest.reply(None), 1.0)
    assert not book.due(one, 1000.0, digest.tag, seen_at=999.0)  # same tag: current, whatever its age
    other = bytes.fromhex(kept_tag(ids(4)))
    assert not book.due(one, 1000.0, other, seen_at=0.5)  # a record older than the digest: no news
    assert not book.due(one, 5.0, other, seen_at=4.0)  # news, but pulled less than 10 s ago
    assert book.due(one, 12.0, other, seen_at=4.0)


def test_a_host_that_pushes_is_found_by_node_id_and_its_pushes_replace_the_pulls() -> None:
    """A host that pushed its digest here is subscribed to: a newer record naming another tag does not make it
    due at once (its next push brings the change), only once ``max_interval`` has passed (a dropped
    subscription). A host that never pushed is pulled as before."""
    book = DigestBook(max_bytes=1000, interval=10.0, max_interval=160.0)
    pusher, puller = PeerAddress("h", 1), PeerAddress("h", 2)
    first, second = LocalDigest.build(ids(3), 0.01), LocalDigest.build(ids(4), 0.01)
    book.update(pusher, first.reply(None), 0.0, node_id="aa")
    book.update(puller, first.reply(None), 0.0, node_id="bb")
    assert book.address_of("aa") == pusher and book.address_of("bb") == puller and book.address_of("cc") is None
    assert book.update(pusher, second.reply(None), 5.0, pushed=True)
    assert book.tag(pusher) == second.tag and book.address_of("aa") == pusher
    third = LocalDigest.build(ids(5), 0.01)  # the pusher's next change, advertised before its push arrives
    assert book.due(puller, 20.0, third.tag, seen_at=19.0)
    assert not book.due(pusher, 20.0, third.tag, seen_at=19.0)
    assert not book.due(pusher, 140.0, third.tag, seen_at=139.0)
    assert book.due(pusher, 170.0, third.tag, seen_at=169.0)  # no push for max_interval: pulled after all
    book.forget(pusher)
    assert book.address_of("aa") is None and book.address_of("bb") == puller
