"""Every decoder that reads bytes from the network, fuzzed in-process (thousands of cases, no sockets).

Each decoder documents what it raises on bad input (``ProtocolError`` and its children, or ``ValueError``
for the ``from_wire`` constructors of core's peer records) or that it never raises; anything else escaping
is a bug a hostile peer could trigger. The values decoded from a host-quality record must land in their clamped ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butter.blocks import Manifest, load_manifest
from butter.documents import Revision
from butter.errors import ProtocolError
from butter.peers import MAX_COUNT, MAX_STORAGE, MAX_UPTIME, HostQuality, PeerInfo
from butter.records import SignedRecord
from butter.tombstones import Tombstone
from butter.wire import FrameDecoder, FrameRejected, Reply, Request, decode_payload, encode, encode_payload
from butter_discover_multicast._messages import decode_datagram
from butter_persist_pcg._messages import Heartbeat, HeartbeatReply, Join, decode_content_id
from butter_retrieve_bfs._messages import DigestAsk, DigestKept, DigestReply, Query, decode_reply
from butter_retrieve_flood._messages import FloodAnswer, FloodQuery
from butter_wider_ambassador._messages import MAX_MESSAGE, MESSAGES, ServiceInfo

from .strategies import MAPS, VALUES, bodies, fuzz_settings

BODY_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "payload": decode_payload,
    "pcg-heartbeat": Heartbeat.decode,
    "pcg-heartbeat reply": HeartbeatReply.decode,
    "pcg-join": Join.decode,
    "pcg-leave / content id": decode_content_id,
    "bfs-query": Query.decode,
    "bfs-query reply": decode_reply,
    "bfs-digest": DigestAsk.decode,
    "bfs-digest reply": DigestReply.decode,
    "bfs-digest-push (a digest)": DigestReply.decode,
    "bfs-digest-push reply": DigestKept.decode,
    "manifest": Manifest.decode,
    "signed record (get-record reply, put-record)": SignedRecord.decode,
    "tombstone (delete-item, bfs-query miss)": Tombstone.decode,
    "document revision (get-document reply, put-revisions)": Revision.decode,
    "ambassador service message": lambda body: MESSAGES.decode(body, MAX_MESSAGE),
    "ambassador reply": ServiceInfo.decode,
    "flood-query": FloodQuery.decode,
    "flood-query reply": FloodAnswer.decode,
}


@fuzz_settings(1.25)
@given(body=bodies())
def test_body_decoders_raise_only_protocol_errors(body: bytes) -> None:
    """Each generated body goes to every decoder (1,500 bodies x 17 decoders per run; 3,000 in CI)."""
    for decoder in BODY_DECODERS.values():
        try:
            decoder(body)
        except ProtocolError:
            pass
    decode_datagram(body, 8192)  # multicast beacons: never raises


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_manifest_loading_checks_the_hash_first(data: bytes) -> None:
    from butter.errors import BlockCorrupted

    with pytest.raises(BlockCorrupted):
        load_manifest("0" * 64, data)  # no data hashes to all zeros


@settings(max_examples=600, deadline=None)
@given(obj=st.one_of(MAPS, VALUES))
def test_peer_records_are_clamped_or_refused(obj: Any) -> None:
    for record in ({"id": "a" * 32, "addr": ["127.0.0.1", 1], "quality": obj}, obj):
        try:
            info = PeerInfo.from_wire(record)
        except ValueError:
            continue
        check_clamped(info.quality)
    try:
        check_clamped(HostQuality.from_wire(obj))
    except ValueError:
        pass


def check_clamped(quality: HostQuality) -> None:
    assert isinstance(quality.uptime, float) and 0.0 <= quality.uptime <= MAX_UPTIME and not math.isnan(quality.uptime)
    assert isinstance(quality.available_storage, int) and 0 <= quality.available_storage <= MAX_STORAGE
    assert isinstance(quality.known_hosts, int) and 0 <= quality.known_hosts <= MAX_COUNT
    assert isinstance(quality.known_by, int) and 0 <= quality.known_by <= MAX_COUNT
    assert isinstance(quality.ambassador, bool)
    assert quality.kept == "" or (len(quality.kept) == 16 and set(quality.kept) <= set("0123456789abcdef"))


def test_absurd_quality_values_are_clamped() -> None:
    lying = {"uptime": 1e308, "available_storage": 2**64 - 1, "known_hosts": -5, "known_by": float("nan"),
             "ambassador": "yes"}
    assert HostQuality.from_wire(lying) == HostQuality(MAX_UPTIME, MAX_STORAGE, 0, 0, False)


# -- framing -----------------------------------------------------------------------------------------------

FRAME_PARTS = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda i, r, b: encode(Request(i, r, b)), st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=20),
              st.binary(max_size=100)),
    st.builds(lambda i, b: encode(Reply(i, b)), st.integers(0, 2**63 - 1), st.binary(max_size=100)),
    st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),  # a bare header, of any announced length
    MAPS.map(encode_payload).map(lambda p: len(p).to_bytes(4, "big") + p),  # a whole frame of a wrong map
)


@settings(max_examples=1000, deadline=None)
@given(parts=st.lists(FRAME_PARTS, max_size=8), cuts=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_the_frame_decoder_never_raises_and_stays_bounded(parts: list[bytes], cuts: list[int]) -> None:
    max_frame = 1024
    stream = b"".join(parts)
    decoder = FrameDecoder(max_frame)
    position, i = 0, 0
    while position < len(stream):
        size = cuts[i % len(cuts)]
        chunk = stream[position : position + size]
        position, i = position + size, i + 1
        decoder.feed(chunk)
        for event in decoder.events():
            assert isinstance(event, Request | Reply | FrameRejected)
        assert decoder.buffered <= max_frame + 4 + size  # never more than one frame plus one chunk


@settings(max_examples=500, deadline=None)
@given(messages=st.lists(st.builds(Request, st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=128),
                                   st.binary(max_size=2000)), max_size=10),
       cut=st.integers(1, 97))
def test_valid_frames_survive_any_split(messages: list[Request], cut: int) -> None:
    stream = b"".join(encode(m) for m in messages)
    decoder = FrameDecoder()
    events = []
    for start in range(0, len(stream), cut):
        decoder.feed(stream[start : start + cut])
        events.extend(decoder.events())
    assert events == messages
    assert not decoder.in_frame
