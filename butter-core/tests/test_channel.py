"""The sans-IO request/reply channel (butter.channel): each rule on its own, then hypothesis on arbitrary
chunking, garbage and interleavings. Two channels are connected in memory by :class:`Pair`."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from butter.channel import Channel, ChannelError, ClientChannel, ClientEvent, Overloaded, ServerChannel, ServerEvent
from butter.errors import FrameTooLarge
from butter.peers import PeerAddress
from butter.wire import Caller, ErrorInfo, FrameDecoder, FrameRejected, Reply, Request, encode

E = TypeVar("E")
CALLER = Caller("ab" * 32, PeerAddress("127.0.0.1", 40000))


def chunks(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data] if data else []
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass
class Pair:
    """A client channel and a server channel joined in memory; ``chunk`` (bytes, default whole) splits
    every delivery."""

    client: ClientChannel = field(default_factory=lambda: ClientChannel(peer="server"))
    server: ServerChannel = field(default_factory=lambda: ServerChannel(max_concurrent=4, caller=CALLER))
    chunk: int | None = None

    def to_server(self) -> list[ServerEvent]:
        """Deliver everything the client queued; the server's events."""
        return self._deliver(self.client, self.server.receive_data, self.server.next_event)

    def to_client(self) -> list[ClientEvent]:
        """Deliver everything the server queued; the client's events."""
        return self._deliver(self.server, self.client.receive_data, self.client.next_event)

    def _deliver(
        self, source: Channel, receive: Callable[[bytes], None], next_event: Callable[[], E | None]
    ) -> list[E]:
        events: list[E] = []
        for data in chunks(b"".join(source.frames_to_send()), self.chunk):
            receive(data)
            while (event := next_event()) is not None:
                events.append(event)
        return events

    def echo(self, events: list[ServerEvent]) -> None:
        """Answer every request among ``events`` with its own body."""
        for event in events:
            if isinstance(event, Request):
                self.server.send_reply(Reply(event.id, event.body))


def frames_of(frames: list[bytes]) -> list[object]:
    """Queued frames, decoded."""
    decoder = FrameDecoder()
    decoder.feed(b"".join(frames))
    return list(decoder.events())


def raw_frame(obj: object) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


def server_answers(raw: bytes, **options: int) -> tuple[list[ServerEvent], list[object]]:
    """Feed ``raw`` bytes to a fresh server channel: its events, and the frames it queued, decoded."""
    server = ServerChannel(**options)  # type: ignore[arg-type]
    server.receive_data(raw)
    events: list[ServerEvent] = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return events, frames_of(server.frames_to_send())


def error_of(event: object) -> tuple[int, str]:
    assert isinstance(event, Reply) and event.error is not None, event
    return event.id, event.error.code


# -- each rule ------------------------------------------------------------------------------------------


def test_a_request_and_its_reply_cross_the_pair_and_the_caller_is_attached() -> None:
    pair = Pair()
    request_id = pair.client.send_request("echo", b"hi")
    assert request_id == 1 and pair.client.in_flight == 1
    (request,) = pair.to_server()
    assert request == Request(1, "echo", b"hi", CALLER) and pair.server.active == 1
    pair.echo([request])
    assert pair.server.active == 0
    assert pair.to_client() == [Reply(1, b"hi")]
    assert pair.client.in_flight == 0


def test_ids_count_from_one_and_id_0_is_never_used() -> None:
    client = ClientChannel()
    assert [client.send_request("r", b"") for _ in range(5)] == [1, 2, 3, 4, 5]


def test_replies_out_of_order_are_matched_by_id() -> None:
    pair = Pair()
    ids = [pair.client.send_request("echo", b"%d" % i) for i in range(3)]
    requests = pair.to_server()
    pair.echo(list(reversed(requests)))
    replies = pair.to_client()
    assert [r.id for r in replies] == list(reversed(ids))  # type: ignore[union-attr]
    assert {r.id: r.body for r in replies} == {i: b"%d" % (i - 1) for i in ids}  # type: ignore[union-attr]


def test_a_reply_after_the_caller_gave_up_is_dropped() -> None:
    pair = Pair()
    late = pair.client.send_request("echo", b"late")
    kept = pair.client.send_request("echo", b"kept")
    pair.client.forget(late)
    assert pair.client.in_flight == 1
    pair.echo(pair.to_server())
    assert pair.to_client() == [Reply(kept, b"kept")]


def test_more_than_max_concurrent_requests_are_answered_overloaded() -> None:
    pair = Pair(server=ServerChannel(max_concurrent=2))
    ids = [pair.client.send_request("slow", b"") for _ in range(3)]
    events = pair.to_server()
    assert [type(e) for e in events] == [Request, Request, Overloaded]
    assert events[2] == Overloaded(ids[2], active=2)
    (refused,) = pair.to_client()
    assert error_of(refused) == (ids[2], "overloaded")
    pair.echo(events[:1])  # one finished: room for one more
    pair.client.send_request("slow", b"")
    assert [type(e) for e in pair.to_server()] == [Request]


def test_a_reply_on_the_serving_side_is_a_protocol_error() -> None:
    events, frames = server_answers(encode(Reply(4, b"not asked for")))
    (event,) = events
    assert isinstance(event, FrameRejected) and event.request_id == 4 and event.error.code == "protocol-error"
    assert [error_of(f) for f in frames] == [(4, "protocol-error")]


def test_a_request_with_the_reserved_id_0_is_refused() -> None:
    events, frames = server_answers(encode(Request(0, "echo", b"")) + encode(Request(1, "echo", b"")))
    assert isinstance(events[0], FrameRejected) and events[1] == Request(1, "echo", b"")
    assert [error_of(f) for f in frames] == [(0, "protocol-error")]


def test_rejected_frames_are_answered_with_their_id_or_0_and_framing_goes_on() -> None:
    raw = (
        raw_frame([1, 2])  # not a map: no id to answer
        + raw_frame({"v": 2, "id": 9, "route": "x", "body": b""})  # a readable id: answered under it
        + struct.pack(">I", 10_000)  # over max_frame: refused at once, its bytes skipped
        + b"z" * 10_000
        + encode(Request(3, "echo", b"ok"))
    )
    events, frames = server_answers(raw, max_frame=4096)
    assert [type(e) for e in events] == [FrameRejected, FrameRejected, FrameRejected, Request]
    assert [error_of(f) for f in frames] == [(0, "protocol-error"), (9, "protocol-error"), (0, "frame-too-large")]


def test_an_oversized_request_raises_and_nothing_is_queued() -> None:
    client = ClientChannel(max_frame=1024)
    with pytest.raises(FrameTooLarge):
        client.send_request("echo", b"x" * 2000)
    assert client.in_flight == 0 and client.outbound_bytes == 0 and client.frames_to_send() == []


def test_a_reply_that_cannot_be_sent_becomes_an_error_reply() -> None:
    server = ServerChannel(max_frame=1024)
    server.receive_data(encode(Request(1, "grow", b"")) + encode(Request(2, "bug", b"")))
    assert server.next_event() and server.next_event() and server.active == 2
    server.send_reply(Reply(1, b"y" * 2000))
    server.send_reply(Reply(2, object()))  # type: ignore[arg-type]  # a handler bug: msgpack cannot encode it
    assert server.active == 0
    assert [error_of(f) for f in frames_of(server.frames_to_send())] == [(1, "frame-too-large"), (2, "handler-error")]


def test_error_messages_are_bounded() -> None:
    _, (frame,) = server_answers(raw_frame({"v": 1, "id": 5, "route": "r" * 5000, "body": b""}))
    assert isinstance(frame, Reply) and frame.error is not None and len(frame.error.message) <= 1000


def test_the_client_side_reports_what_is_not_a_reply_to_its_requests() -> None:
    client = ClientChannel(peer="server")
    waiting = client.send_request("echo", b"")
    client.receive_data(
        encode(Reply(0, error=ErrorInfo("protocol-error", "your frame was garbage")))  # about the connection
        + encode(Reply(0, b"ok?"))  # id 0 is only for errors
        + encode(Request(7, "echo", b""))  # a request on the side that only asks
        + raw_frame({"v": 1, "id": 99, "ok": "perhaps"})  # malformed, and no request 99 in flight
        + raw_frame({"v": 1, "id": waiting, "ok": "perhaps"})  # malformed answer to a request in flight
    )
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert events[0] == ChannelError(ErrorInfo("protocol-error", "your frame was garbage"))
    assert [type(e) for e in events[1:4]] == [FrameRejected, FrameRejected, FrameRejected]
    assert error_of(events[4]) == (waiting, "protocol-error")
    assert "malformed reply from server" in events[4].error.message  # type: ignore[union-attr]
    assert client.in_flight == 0


# -- hypothesis -----------------------------------------------------------------------------------------

bodies = st.binary(max_size=300)
routes = st.text(min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(st.tuples(routes, bodies), max_size=12), chunk=st.integers(1, 97))
def test_any_chunking_delivers_every_request_and_reply(batch: list[tuple[str, bytes]], chunk: int) -> None:
    pair = Pair(server=ServerChannel(max_concurrent=len(batch) + 1), chunk=chunk)
    ids = [pair.client.send_request(route, body) for route, body in batch]
    requests = pair.to_server()
    assert requests == [Request(i, r, b) for i, (r, b) in zip(ids, batch, strict=True)]
    pair.echo(requests)
    assert pair.to_client() == [Reply(i, b) for i, (_, b) in zip(ids, batch, strict=True)]
    assert pair.client.in_flight == 0 and pair.server.active == 0 and not pair.client.in_frame


FRAME_PARTS = st.one_of(
    st.binary(max_size=100),
    st.builds(lambda i, b: encode(Request(i, "echo", b)), st.integers(0, 2**63 - 1), bodies),
    st.builds(lambda i, b: encode(Reply(i, b)), st.integers(0, 2**63 - 1), bodies),
    st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),
    st.dictionaries(st.sampled_from(["v", "id", "route", "body", "ok", "error"]),
                    st.none() | st.integers(-1, 3) | st.binary(max_size=8) | st.text(max_size=8)).map(raw_frame),
)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(FRAME_PARTS, max_size=10), chunk=st.integers(1, 64))
def test_garbage_never_raises_and_every_refusal_is_answered_once(parts: list[bytes], chunk: int) -> None:
    server = ServerChannel(max_frame=1024, max_concurrent=2)
    refusals = requests = 0
    for data in chunks(b"".join(parts), chunk):
        server.receive_data(data)
        while (event := server.next_event()) is not None:
            if isinstance(event, Request):
                assert event.id != 0
                requests += 1
            else:
                refusals += 1
        assert server.active <= 2 and server.buffered <= 1024 + 4 + chunk
    answers = frames_of(server.frames_to_send())
    assert len(answers) == refusals and requests == server.active
    assert all(isinstance(a, Reply) and a.error is not None for a in answers)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(FRAME_PARTS, max_size=10), chunk=st.integers(1, 64))
def test_garbage_on_the_client_side_never_raises_nor_answers_a_request_twice(parts: list[bytes], chunk: int) -> None:
    client = ClientChannel(max_frame=1024)
    ids = {client.send_request("echo", b"") for _ in range(3)}
    client.frames_to_send()
    answered: list[int] = []
    for data in chunks(b"".join(parts), chunk):
        client.receive_data(data)
        while (event := client.next_event()) is not None:
            if isinstance(event, Reply):
                answered.append(event.id)
    assert set(answered) <= ids and len(answered) == len(set(answered)) == 3 - client.in_flight
    assert client.frames_to_send() == []  # the side that asks never answers garbage


class Interleavings(RuleBasedStateMachine):
    """Requests, partial deliveries both ways, replies in any order and callers giving up, interleaved at
    random: every request the client still waits for gets exactly its own answer, and the counts agree."""

    MAX_CONCURRENT = 3

    def __init__(self) -> None:
        super().__init__()
        self.client = ClientChannel(max_frame=4096)
        self.server = ServerChannel(max_frame=4096, max_concurrent=self.MAX_CONCURRENT)
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.bodies: dict[int, bytes] = {}
        self.waiting: set[int] = set()
        self.overloaded: set[int] = set()
        self.handling: list[Request] = []

    @rule(body=bodies)
    def send(self, body: bytes) -> None:
        request_id = self.client.send_request("echo", body)
        assert request_id != 0 and request_id not in self.bodies
        self.bodies[request_id] = body
        self.waiting.add(request_id)
        self.to_server += b"".join(self.client.frames_to_send())

    @precondition(lambda self: self.to_server)
    @rule(size=st.integers(1, 200))
    def deliver_to_server(self, size: int) -> None:
        self.server.receive_data(bytes(self.to_server[:size]))
        del self.to_server[:size]
        while (event := self.server.next_event()) is not None:
            if isinstance(event, Request):
                self.handling.append(event)
            else:
                assert isinstance(event, Overloaded), event  # honest traffic is never rejected
                assert event.active == self.MAX_CONCURRENT
                self.overloaded.add(event.request_id)
        self.to_client += b"".join(self.server.frames_to_send())

    @precondition(lambda self: self.handling)
    @rule(data=st.data())
    def reply(self, data: st.DataObject) -> None:
        request = self.handling.pop(data.draw(st.integers(0, len(self.handling) - 1)))
        self.server.send_reply(Reply(request.id, request.body))
        self.to_client += b"".join(self.server.frames_to_send())

    @precondition(lambda self: self.to_client)
    @rule(size=st.integers(1, 200))
    def deliver_to_client(self, size: int) -> None:
        self.client.receive_data(bytes(self.to_client[:size]))
        del self.to_client[:size]
        while (event := self.client.next_event()) is not None:
            assert isinstance(event, Reply) and event.id in self.waiting, event
            self.waiting.remove(event.id)
            if event.id in self.overloaded:
                assert error_of(event) == (event.id, "overloaded")
            else:
                assert event == Reply(event.id, self.bodies[event.id])

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.waiting)))
        self.client.forget(request_id)
        self.waiting.remove(request_id)

    @invariant()
    def counts_agree(self) -> None:
        assert self.client.in_flight == len(self.waiting)
        assert self.server.active == len(self.handling) <= self.MAX_CONCURRENT


TestInterleavings = Interleavings.TestCase
TestInterleavings.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
