"""PCG's route bodies: round trips (hypothesis) and malformed bodies, which raise ProtocolError and nothing else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import encode_payload
from butter_persist_pcg._messages import (
    MAX_INVITATIONS,
    MAX_MEMBERS,
    GroupBeat,
    Heartbeat,
    HeartbeatReply,
    Invitation,
    Join,
    JoinReply,
    Refusal,
    content_id_body,
    decode_content_id,
)

CID = "ab" * 32
HERE = PeerAddress("m", 1)

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
node_ids = st.text(min_size=1, max_size=128)
addresses = st.builds(PeerAddress, st.text(min_size=1, max_size=40), st.integers(0, 65535))
ages = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
sizes = st.integers(0, 2**63 - 1)
members = st.lists(st.tuples(node_ids, addresses, ages), max_size=MAX_MEMBERS).map(tuple)
beats = st.builds(GroupBeat, hex64, sizes, sizes, members, st.none() | sizes)
records = st.none() | st.binary(max_size=4096)


@given(st.builds(Heartbeat, node_ids, addresses, st.booleans(), st.lists(beats, max_size=5).map(tuple)))
def test_heartbeat_round_trip(beat: Heartbeat) -> None:
    assert Heartbeat.decode(beat.encode()) == beat


invitations = st.builds(Invitation, hex64, sizes, members, records)
refusals = st.builds(Refusal, hex64, st.text(min_size=1, max_size=64), st.text(max_size=256))


@given(st.lists(invitations, max_size=4).map(tuple))
def test_join_round_trip(items: tuple[Invitation, ...]) -> None:
    assert Join.decode(Join(items).encode()) == Join(items)


@given(st.lists(hex64, max_size=20).map(tuple), st.lists(refusals, max_size=5).map(tuple))
def test_join_reply_round_trip(joined: tuple[str, ...], refused: tuple[Refusal, ...]) -> None:
    assert JoinReply.decode(JoinReply(joined, refused).encode()) == JoinReply(joined, refused)


@given(st.lists(hex64, max_size=20).map(tuple), st.lists(beats, max_size=5).map(tuple))
def test_heartbeat_reply_and_leave_round_trip(unknown: tuple[str, ...], groups: tuple[GroupBeat, ...]) -> None:
    assert HeartbeatReply.decode(HeartbeatReply(unknown).encode()) == HeartbeatReply(unknown)
    assert HeartbeatReply.decode(HeartbeatReply(unknown, groups).encode()) == HeartbeatReply(unknown, groups)
    for content_id in unknown:
        assert decode_content_id(content_id_body(content_id)) == content_id


def test_lists_built_by_the_service_encode_like_tuples() -> None:
    entries = [("n1", HERE, 0.0), ("n2", PeerAddress("m", 2), 1.5)]
    invitation = Invitation(CID, 10, entries)
    assert invitation.encode() == Invitation(CID, 10, tuple(entries)).encode()
    assert Join([invitation]).encode() == Join((invitation,)).encode()
    assert Join.decode(Join([invitation]).encode()).invitations[0].members == tuple(entries)


ENTRY = ["n1", ["m", 1], 0.5]


@pytest.mark.parametrize("obj", [
    [1, 2],
    {},
    {"items": {"cid": CID, "size": 1, "members": []}},
    {"items": [1]},
    {"items": [{"cid": CID, "size": 1, "members": []}] * (MAX_INVITATIONS + 1)},
    {"items": [{"cid": CID.upper(), "size": 1, "members": []}]},
    {"items": [{"cid": CID, "size": -1, "members": []}]},
    {"items": [{"cid": CID, "size": True, "members": []}]},
    {"items": [{"cid": CID, "size": "10", "members": []}]},
    {"items": [{"cid": CID, "size": 1}]},
    {"items": [{"cid": CID, "size": 1, "members": {"n1": ENTRY}}]},
    {"items": [{"cid": CID, "size": 1, "members": [ENTRY] * (MAX_MEMBERS + 1)}]},
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 1]]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [["", ["m", 1], 0]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 70000], 0]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 1], "old"]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 1], -1.0]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 1], math.nan]]}]},  # would never expire
    {"items": [{"cid": CID, "size": 1, "members": [["n1", ["m", 1], math.inf]]}]},
    {"items": [{"cid": CID, "size": 1, "members": [], "record": "r"}]},
    {"items": [{"cid": CID, "size": 1, "members": [], "record": b"r" * 4097}]},
])
def test_malformed_joins(obj: object) -> None:
    with pytest.raises(ProtocolError):
        Join.decode(encode_payload(obj))


@pytest.mark.parametrize("obj", [
    {"joined": [CID]},
    {"joined": [CID.upper()], "refused": []},
    {"joined": [], "refused": [{"cid": CID, "code": "", "message": ""}]},
    {"joined": [], "refused": [{"cid": CID, "code": "joins-full"}]},
    {"joined": [], "refused": [{"cid": CID, "code": "joins-full", "message": "m" * 257}]},
    {"joined": [CID] * (MAX_INVITATIONS + 1), "refused": []},
])
def test_malformed_join_replies(obj: object) -> None:
    with pytest.raises(ProtocolError):
        JoinReply.decode(encode_payload(obj))


BEAT = {"cid": CID, "size": 1, "hits": 0, "members": [ENTRY]}


@pytest.mark.parametrize("obj", [
    {"from": 1, "addr": ["m", 1], "leaving": False, "groups": []},
    {"from": "n1", "addr": "m:1", "leaving": False, "groups": []},
    {"from": "n1", "addr": ["m", 1], "leaving": "yes", "groups": []},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": {}},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": [1]},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": [{**BEAT, "hits": -1}]},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": [{**BEAT, "cid": None}]},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": [{**BEAT, "seq": -1}]},
    {"from": "n1", "addr": ["m", 1], "leaving": False, "groups": [{**BEAT, "seq": "7"}]},
])
def test_malformed_heartbeats(obj: object) -> None:
    with pytest.raises(ProtocolError):
        Heartbeat.decode(encode_payload(obj))


@pytest.mark.parametrize("obj", [{"unknown": "x"}, {"unknown": [1]}, {}, [CID]])
def test_malformed_replies_and_leaves(obj: object) -> None:
    with pytest.raises(ProtocolError):
        HeartbeatReply.decode(encode_payload(obj))
    with pytest.raises(ProtocolError):
        decode_content_id(encode_payload(obj))


@given(st.binary(max_size=300))
def test_garbage_bodies_raise_protocol_error_only(body: bytes) -> None:
    for decoder in (Heartbeat.decode, HeartbeatReply.decode, Join.decode, decode_content_id):
        try:
            decoder(body)
        except ProtocolError:
            pass
