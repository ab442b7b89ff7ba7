"""The service protocol's codec: every message round-trips through the one generic framer
(:class:`butter.wire.FrameDecoder`), any byte string decodes to messages or rejections (never an exception),
and a data connection's first raw bytes are handed over."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter.errors import FrameTooLarge, ProtocolError
from butter.peers import PeerAddress
from butter.wire import FrameDecoder, FrameRejected, encode_payload
from butter_wider_ambassador import (
    MAX_MESSAGE,
    Accept,
    Dialed,
    Hello,
    Introduction,
    Message,
    Open,
    Ping,
    Punch,
    PunchCall,
    PunchGo,
    PunchReady,
    Refused,
    Reserve,
    Reserved,
    Welcome,
    decode_message,
    encode_message,
)
from butter_wider_ambassador._messages import ServiceInfo

ids = st.text(min_size=1, max_size=64)
addresses = st.builds(PeerAddress, st.from_regex(r"[0-9a-z.:]{1,40}", fullmatch=True), st.integers(0, 65535))
ports = st.integers(1, 65535)
counts = st.integers(0, 2**63 - 1)
tokens = st.binary(max_size=64)
introductions = st.builds(Introduction, ids, addresses, st.booleans())
messages = st.one_of(
    st.builds(Hello, ids, addresses, ports, st.integers(0, 64)),
    st.builds(Welcome, addresses, ids, st.lists(introductions, max_size=8).map(tuple)),
    st.builds(Dialed, st.none() | addresses),
    st.builds(Reserve, ids, addresses),
    st.builds(Reserved, addresses, tokens, st.floats(0, 1e6), counts),
    st.builds(Open, counts),
    st.builds(Accept, counts, tokens),
    st.just(Ping()),
    st.builds(Punch, ids, addresses),
    st.builds(PunchCall, counts),
    st.builds(PunchReady, counts, tokens),
    st.builds(PunchGo, addresses),
    st.builds(Refused, ids, st.text(max_size=100)),
)


def framer() -> FrameDecoder[Message]:
    """The ambassador's messages on the one generic framer, as ``_io.Channel`` reads them."""
    return FrameDecoder(MAX_MESSAGE, parse=decode_message)


@given(st.lists(messages, max_size=5), st.binary(max_size=50), st.integers(1, 64))
def test_messages_round_trip_in_any_chunking(batch: list[Message], tail: bytes, chunk: int) -> None:
    data = b"".join(encode_message(m) for m in batch) + tail
    decoder = framer()
    out = []
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
        out.extend(decoder.events())
    assert out[: len(batch)] == batch  # the tail decodes to more messages, rejections, or stays buffered


@given(st.binary(max_size=300))
def test_garbage_gives_messages_or_rejections_never_an_exception(data: bytes) -> None:
    decoder = framer()
    decoder.feed(data)
    for event in decoder.events():
        assert isinstance(event, FrameRejected) or hasattr(event, "KIND")


@given(st.binary(max_size=300))
def test_decoding_garbage_raises_only_protocol_error(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError:
        pass


def test_an_oversized_frame_is_rejected_at_once() -> None:
    decoder = framer()
    decoder.feed(struct.pack(">I", MAX_MESSAGE + 1) + b"x")
    rejected = decoder.next_event()
    assert isinstance(rejected, FrameRejected) and isinstance(rejected.error, FrameTooLarge)
    assert decoder.next_event() is None


ADDR = ["10.0.0.1", 7000]
MISTYPED = [
    {"t": "nope"},
    {"t": 1},
    {"id": "n"},
    {"t": "hello", "id": "", "local": ADDR, "port": 1},
    {"t": "hello", "id": "n", "local": "10.0.0.1:7000", "port": 1},
    {"t": "hello", "id": "n", "local": ADDR, "port": 0},
    {"t": "hello", "id": "n", "local": ADDR, "port": 1, "k": 65},
    {"t": "welcome", "observed": ADDR, "subnet": "", "peers": []},
    {"t": "welcome", "observed": ADDR, "subnet": "s", "peers": [{"id": "n", "addr": ADDR}] * 65},
    {"t": "welcome", "observed": ADDR, "subnet": "s", "peers": [{"id": "n", "addr": ADDR, "relayed": 1}]},
    {"t": "welcome", "observed": ADDR, "subnet": "s", "peers": [["n", ADDR]]},
    {"t": "dialed", "reachable": "yes"},
    {"t": "reserve", "id": "n"},
    {"t": "reserved", "relayed": ADDR, "token": "t", "duration": 1.0, "data": 1},
    {"t": "reserved", "relayed": ADDR, "token": b"t" * 65, "duration": 1.0, "data": 1},
    {"t": "reserved", "relayed": ADDR, "token": b"t", "duration": float("nan"), "data": 1},
    {"t": "reserved", "relayed": ADDR, "token": b"t", "duration": 1.0, "data": -1},
    {"t": "open", "circuit": -1},
    {"t": "open", "circuit": "1"},
    {"t": "accept", "circuit": 1},
    {"t": "punch", "id": "n", "target": None},
    {"t": "punch-call", "punch": True},
    {"t": "punch-ready", "punch": 1, "token": 1},
    {"t": "punch-go", "peer": [ADDR]},
    {"t": "refused", "code": "", "message": "m"},
    {"t": "refused", "code": "c", "message": 1},
]


@pytest.mark.parametrize("payload", MISTYPED)
def test_unknown_kinds_and_mistyped_fields_are_malformed(payload: object) -> None:
    with pytest.raises(ProtocolError):
        decode_message(encode_payload(payload))


def test_optional_fields_take_their_defaults() -> None:
    payloads = ({"t": "dialed"}, {"t": "refused", "code": "c"}, {"t": "hello", "id": "n", "local": ADDR, "port": 9})
    local = PeerAddress(*ADDR)
    decoded = [decode_message(encode_payload(payload)) for payload in payloads]
    assert decoded == [Dialed(None), Refused("c", ""), Hello("n", local, 9, 8)]


def test_rest_hands_over_the_raw_bytes_after_an_accept() -> None:
    decoder = framer()
    decoder.feed(encode_message(Accept(7, b"t" * 16)) + b"\x00\x00raw bytes")
    assert decoder.next_event() == Accept(7, b"t" * 16)
    assert decoder.rest() == b"\x00\x00raw bytes"


def test_the_ambassador_route_names_the_service_port() -> None:
    assert ServiceInfo.decode(ServiceInfo(7000).encode()) == ServiceInfo(7000)
    assert ServiceInfo(7000).to_wire() == {"service": 7000}
    for bad in ({}, {"service": 0}, {"service": "7000"}, {"service": 70000}):
        with pytest.raises(ProtocolError):
            ServiceInfo.decode(encode_payload(bad))
