import struct

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from butter.errors import FrameTooLarge, ProtocolError
from butter.wire import ErrorInfo, FrameDecoder, FrameRejected, Reply, Request, encode

routes = st.text(min_size=1, max_size=128)
ids = st.integers(min_value=0, max_value=2**63 - 1)
requests = st.builds(Request, ids, routes, st.binary(max_size=2048))
replies = st.one_of(
    st.builds(Reply, ids, st.binary(max_size=2048)),
    st.builds(lambda i, c, m: Reply(i, error=ErrorInfo(c, m)), ids, st.text(max_size=20), st.text(max_size=100)),
)
messages = st.one_of(requests, replies)


@given(st.lists(messages, max_size=20), st.integers(min_value=1, max_value=97))
def test_round_trip_in_any_chunking(batch: list[Request | Reply], chunk: int) -> None:
    data = b"".join(encode(m) for m in batch)
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
        out.extend(decoder.events())
    assert out == batch
    assert decoder.buffered == 0


@settings(max_examples=500)
@given(st.binary(max_size=4096))
def test_garbage_never_raises(data: bytes) -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed(data)
    for event in decoder.events():
        assert isinstance(event, Request | Reply | FrameRejected)
        if isinstance(event, FrameRejected):
            assert isinstance(event.error, ProtocolError)


scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary() | st.floats()


@given(st.recursive(scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_wrong_envelopes_are_rejected_and_framing_survives(obj: object) -> None:
    payload = msgpack.packb(obj, use_bin_type=True)
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(payload)) + payload + encode(Request(7, "ping", b"")))
    events = decoder.events()
    assert events[-1] == Request(7, "ping", b"")
    assert len(events) == 2


def test_oversized_frame_is_rejected_without_buffering_and_stream_continues() -> None:
    decoder = FrameDecoder(max_frame=1000)
    decoder.feed(struct.pack(">I", 10_000_000))
    event = decoder.next_event()
    assert isinstance(event, FrameRejected) and isinstance(event.error, FrameTooLarge)
    for _ in range(100):  # 10 MB of body arrives; nothing is kept
        decoder.feed(b"\x00" * 100_000)
        assert decoder.buffered == 0
        assert decoder.next_event() is None
    follow = encode(Request(1, "echo", b"ok"))
    decoder.feed(follow)
    assert decoder.events() == [Request(1, "echo", b"ok")]


def test_bad_version_keeps_request_id() -> None:
    payload = msgpack.packb({"v": 99, "id": 5, "route": "x", "body": b""})
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(payload)) + payload)
    (event,) = decoder.events()
    assert isinstance(event, FrameRejected) and event.request_id == 5


def test_encode_refuses_oversized_message() -> None:
    try:
        encode(Request(1, "r", b"x" * 2000), max_frame=1024)
    except FrameTooLarge:
        return
    raise AssertionError("encode must refuse a frame over max_frame")


def test_body_with_byte_26_survives() -> None:
    message = Request(1, "found", bytes([0x1A]) * 10 + b"tail")
    decoder = FrameDecoder()
    decoder.feed(encode(message))
    assert decoder.events() == [message]


def test_the_framer_frames_any_protocol_with_its_own_parser() -> None:
    def parse(payload: memoryview) -> bytes:
        if bytes(payload) == b"bad":
            raise ProtocolError("not one of ours")
        return bytes(payload)

    decoder = FrameDecoder(16, parse=parse)
    decoder.feed(b"".join(struct.pack(">I", len(p)) + p for p in (b"one", b"bad", b"x" * 17, b"two")) + b"raw")
    events = decoder.events()
    assert events[0] == b"one" and events[3] == b"two"
    assert isinstance(events[1], FrameRejected) and events[1].error.code == "protocol-error"
    assert isinstance(events[2], FrameRejected) and isinstance(events[2].error, FrameTooLarge)
    assert decoder.rest() == b"raw" and decoder.buffered == 0  # what follows the frames, for a raw byte pipe
