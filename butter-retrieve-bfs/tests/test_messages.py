"""Codecs: round trips (hypothesis) and malformed bodies, which must raise ProtocolError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import encode_payload
from butter_retrieve_bfs import DigestAsk, DigestKept, DigestReply, Hit, Miss, Query, Seen, decode_reply

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
addresses = st.builds(PeerAddress, st.text(min_size=1, max_size=20), st.integers(0, 65535))
address_lists = st.lists(addresses, max_size=20).map(tuple)


@given(st.binary(min_size=16, max_size=16), hex64, st.integers(0, 64),
       st.floats(min_value=0.001, max_value=1.0), st.booleans())
def test_query_round_trip(qid: bytes, cid: str, ttl: int, fraction: float, hints: bool) -> None:
    query = Query(qid, cid, ttl, fraction, hints)
    assert Query.decode(query.encode()) == query


@given(st.one_of(st.builds(Hit, address_lists), st.builds(Miss, address_lists, address_lists),
                 st.builds(Miss, address_lists, address_lists, st.binary(max_size=512)), st.just(Seen())))
def test_reply_round_trip(reply: Hit | Miss | Seen) -> None:
    assert decode_reply(reply.encode()) == reply


@given(st.binary(min_size=8, max_size=8), st.integers(1, 32), st.integers(0, 10**6), st.binary(min_size=1))
def test_digest_round_trip(tag: bytes, k: int, n: int, bits: bytes) -> None:
    reply = DigestReply(tag, k, n, bits)
    assert DigestReply.decode(reply.encode()) == reply
    assert DigestReply.decode(DigestReply(same=True).encode()).same
    assert DigestAsk.decode(DigestAsk(tag).encode()) == DigestAsk(tag)
    assert DigestAsk.decode(DigestAsk().encode()) == DigestAsk()
    asker = PeerAddress("127.0.0.1", 9000)
    assert DigestAsk.decode(DigestAsk(tag, asker).encode()) == DigestAsk(tag, asker)
    assert DigestKept.decode(DigestKept(kept=True).encode()).kept


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(body: bytes) -> None:
    for decode in (Query.decode, decode_reply, DigestAsk.decode, DigestReply.decode, DigestKept.decode):
        try:
            decode(body)
        except ProtocolError:
            pass


KEYS = ["qid", "cid", "ttl", "fraction", "hints", "kind", "try", "members", "tag", "k", "n", "bits", "have", "same",
        "from", "kept"]
VALUES = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5),
                   st.binary(max_size=20), st.lists(st.integers(-10, 10), max_size=3), st.booleans())


@given(st.dictionaries(st.sampled_from(KEYS), VALUES))
def test_wrong_shapes_raise_protocol_error(obj: dict[str, object]) -> None:
    body = encode_payload(obj)
    for decode in (Query.decode, decode_reply, DigestAsk.decode, DigestReply.decode, DigestKept.decode):
        try:
            decode(body)
        except ProtocolError:
            pass


CID = "ab" * 32


@pytest.mark.parametrize("obj", [
    {"qid": b"short", "cid": CID, "ttl": 1, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": "AB" * 32, "ttl": 1, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": 65, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": -1, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": True, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": 0.0},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": 1.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": float("nan")},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": "0.5"},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1.0, "fraction": 0.5},
    {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": 0.5, "hints": 1},
    {"qid": "q" * 16, "cid": CID, "ttl": 1, "fraction": 0.5},
    {"cid": CID, "ttl": 1, "fraction": 0.5},
    [1, 2, 3],
])
def test_malformed_queries(obj: object) -> None:
    with pytest.raises(ProtocolError):
        Query.decode(encode_payload(obj))


@pytest.mark.parametrize("obj", [
    {"kind": "found"},
    {"kind": "miss", "try": [["h", 1]] * 1025},
    {"kind": "miss", "try": [["h", 70000]]},
    {"kind": "hit", "members": "nope"},
    {"kind": "miss", "hints": [[1, 2]]},
    {"kind": "miss", "tombstone": "not bytes"},
    {"kind": "miss", "tombstone": b"x" * 513},  # longer than any tombstone
    {"kind": 1},
    {},
])
def test_malformed_replies(obj: object) -> None:
    with pytest.raises(ProtocolError):
        decode_reply(encode_payload(obj))


@pytest.mark.parametrize("obj", [
    {"tag": b"x" * 7, "k": 3, "n": 1, "bits": b"\0"},
    {"tag": b"x" * 8, "k": 0, "n": 1, "bits": b"\0"},
    {"tag": b"x" * 8, "k": 3, "n": 1, "bits": b""},
    {"tag": b"x" * 8, "k": 3, "n": 1, "bits": b"\0" * (256 * 1024 + 1)},
    {"tag": b"x" * 8, "k": "3", "n": 1, "bits": b"\0"},
    {"tag": b"x" * 8, "k": 3, "n": -1, "bits": b"\0"},
    {"same": 1},
])
def test_malformed_digests(obj: object) -> None:
    with pytest.raises(ProtocolError):
        DigestReply.decode(encode_payload(obj))


@pytest.mark.parametrize("obj", [{"have": "x" * 8}, {"have": b"x" * 7}, {"have": [b"x" * 8]}, [None]])
def test_malformed_digest_asks(obj: object) -> None:
    with pytest.raises(ProtocolError):
        DigestAsk.decode(encode_payload(obj))
