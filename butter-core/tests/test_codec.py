"""The message codec: each reader accepts what it promises and refuses the rest with ProtocolError naming the
field; Fields, records and choices round-trip; and no msgpack value, however odd, makes any of them raise
anything but ProtocolError."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter import codec
from butter.codec import Choice, Fields, Reader, Record, wire
from butter.errors import ProtocolError
from butter.peers import PeerAddress, PeerInfo

CID = "ab" * 32
AGE = codec.number(0.0)
ENTRY = codec.entry(codec.node_id, codec.address, AGE)

# reader -> (accepted values, refused values)
CASES: dict[str, tuple[Reader[Any], list[Any], list[Any]]] = {
    "node_id": (codec.node_id, ["n", "x" * 128], ["", "x" * 129, 1, b"n", None, ["n"]]),
    "block_id": (codec.block_id, [CID, "0" * 64], [CID.upper(), CID[:-1], CID + "a", "g" * 64, 1, CID.encode()]),
    "content_id": (codec.content_id, [CID], ["ab", 7]),
    "address": (codec.address, [["h", 1], ("h", 65535), ["::1", 0]],
                [["h"], ["h", 1, 2], [1, 1], ["h", "1"], ["h", True], ["h", 70000], ["", 1], "h:1", {"h": 1}]),
    "peer_info": (codec.peer_info, [{"id": "n", "addr": ["h", 1]}, {"id": "n", "addr": ["h", 1], "quality": {}}],
                  [{"id": "", "addr": ["h", 1]}, {"id": "n"}, ["n", ["h", 1]], {"id": 1, "addr": ["h", 1]}]),
    "boolean": (codec.boolean, [True, False], [0, 1, "true", None, b""]),
    "integer()": (codec.integer(), [0, 1, 2**63 - 1], [-1, 2**63, True, 1.0, "1", None]),
    "integer(1, 64)": (codec.integer(1, 64), [1, 64], [0, 65, False]),
    "number()": (codec.number(), [0, -1.5, 1e308, 2**64 - 1], [math.nan, math.inf, -math.inf, True, "1", None]),
    "number(0, 1, low_open)": (codec.number(0.0, 1.0, low_open=True), [1, 0.5, 1e-300], [0, 0.0, 1.0001, -0.1]),
    "string()": (codec.string(), ["", "x" * 1024], ["x" * 1025, b"x", 1]),
    "string(1, 8)": (codec.string(min_length=1, max_length=8), ["x", "x" * 8], ["", "x" * 9]),
    "blob()": (codec.blob(), [b"", b"x"], ["x", bytearray(b"x"), 1, [1]]),
    "blob(size=4)": (codec.blob(size=4), [b"1234"], [b"123", b"12345", b""]),
    "blob(1..3)": (codec.blob(min_length=1, max_length=3), [b"1", b"123"], [b"", b"1234"]),
    "sequence": (codec.sequence(codec.integer(), max_items=2), [[], [1], (1, 2)], [[1, 2, 3], [-1], {1: 2}, "ab", 1]),
    "entry": (ENTRY, [["n", ["h", 1], 0], ("n", ("h", 1), 1.5)],
              [["n", ["h", 1]], ["n", ["h", 1], 0, 0], ["n", ["h", 1], -1], ["", ["h", 1], 0], "n", None]),
}


@pytest.mark.parametrize("name", CASES)
def test_each_reader_accepts_its_values_and_refuses_the_rest_naming_the_field(name: str) -> None:
    reader, good, bad = CASES[name]
    for value in good:
        reader(value, "body.x")
    for value in bad:
        with pytest.raises(ProtocolError, match=r"^body\.x"):
            reader(value, "body.x")


def test_readers_return_the_values_read() -> None:
    assert codec.address(["h", 1], "a") == PeerAddress("h", 1)
    assert codec.peer_info({"id": "n", "addr": ["h", 1]}, "p") == PeerInfo("n", PeerAddress("h", 1))
    assert codec.number()(3, "n") == 3.0 and isinstance(codec.number()(3, "n"), float)
    assert codec.sequence(codec.integer(), max_items=2)([1, 2], "s") == (1, 2)
    assert codec.sequence(codec.integer(), max_items=2, truncate=True)([1, 2, 3], "s") == (1, 2)
    assert ENTRY(["n", ["h", 1], 2], "e") == ("n", PeerAddress("h", 1), 2.0)


def test_list_items_are_named_by_position() -> None:
    with pytest.raises(ProtocolError, match=r"body\.try\[1\] must be an integer"):
        codec.sequence(codec.integer(), max_items=5)([1, "2"], "body.try")
    with pytest.raises(ProtocolError, match=r"members\[0\]\[2\] must be a finite number"):
        codec.sequence(ENTRY, max_items=5)([["n", ["h", 1], "old"]], "members")


# -- Fields -----------------------------------------------------------------------------------------------------


def test_fields_read_defaults_and_missing_fields() -> None:
    fields = Fields.decode(codec.encode({"a": 1, "nil": None, "s": "x", "l": [1, 2], "m": {"k": True}}))
    assert fields.integer("a", low=1, high=1) == 1
    assert fields.has("a") and not fields.has("nil") and not fields.has("absent")
    assert fields.integer("nil", default=7) == 7 and fields.integer("absent", default=None) is None
    assert fields.string("s", min_length=1) == "x"
    assert fields.sequence("l", codec.integer(), max_items=2) == [1, 2]
    assert fields.sequence("absent", codec.integer(), max_items=2, default=[]) == []
    assert fields.submap("m").boolean("k") is True
    assert fields.submap("absent", default=None).raw == {}
    assert fields.value("s", codec.string(max_length=1)) == "x"
    for read in (lambda: fields.integer("absent"), lambda: fields.boolean("nil"), lambda: fields.submap("a")):
        with pytest.raises(ProtocolError):
            read()
    with pytest.raises(ProtocolError, match=r"^body\.absent is missing$"):
        fields.string("absent")
    with pytest.raises(ProtocolError, match=r"^body\.m\.k must be"):
        fields.submap("m").integer("k")


@pytest.mark.parametrize("body", [b"", b"\xc1", codec.encode([1]), codec.encode("map"), codec.encode(None),
                                  codec.encode({"a": 1}) + b"\x00", codec.encode({1: 2})[:-1]])
def test_bodies_that_are_not_one_map_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        Fields.decode(body)
    with pytest.raises(ProtocolError):
        codec.decode_map(body)


def test_msgpack_limits_follow_max_size() -> None:
    with pytest.raises(ProtocolError):
        Fields.decode(codec.encode({"b": b"x" * 100}), max_size=50)
    assert Fields.decode(codec.encode({"b": b"x" * 100}), max_size=200).blob("b") == b"x" * 100


# -- records and choices ----------------------------------------------------------------------------------------


class Join(Record):
    content_id: str = wire("cid", codec.content_id)
    size: int = wire("size", codec.integer())
    members: tuple[tuple[str, PeerAddress, float], ...] = wire("members", codec.sequence(ENTRY, max_items=4))
    hints: bool = wire("hints", codec.boolean, default=True)


class Group(Record):
    name: str = wire("name", codec.string(min_length=1))
    joins: tuple[Join, ...] = wire("joins", codec.sequence(Join.read, max_items=4), default=())
    where: PeerAddress | None = wire("where", codec.address, default=None)


class Hit(Record):
    KIND: ClassVar[str] = "hit"
    at: PeerAddress = wire("at", codec.address)


class Seen(Record):
    KIND: ClassVar[str] = "seen"


REPLIES = Choice[Hit | Seen](Hit, Seen)
JOIN = Join(CID, 10, (("n", PeerAddress("h", 1), 0.5),))


def test_records_encode_their_wire_keys_and_round_trip() -> None:
    assert JOIN.to_wire() == {"cid": CID, "size": 10, "members": [["n", ["h", 1], 0.5]], "hints": True}
    assert Join.decode(JOIN.encode()) == JOIN
    group = Group("g", (JOIN, JOIN), PeerAddress("h", 2))
    assert group.to_wire()["joins"][1]["cid"] == CID
    assert Group.decode(group.encode()) == group
    assert Group.decode(codec.encode({"name": "g", "where": None})) == Group("g")


def test_optional_record_fields_take_their_defaults_and_required_ones_raise() -> None:
    assert Join.decode(codec.encode({"cid": CID, "size": 1, "members": []})) == Join(CID, 1, ())
    with pytest.raises(ProtocolError, match=r"^body\.size is missing$"):
        Join.decode(codec.encode({"cid": CID, "members": []}))
    with pytest.raises(ProtocolError, match=r"^body\.joins\[0\]\.members\[0\]\[1\]: "):
        Group.decode(codec.encode({"name": "g", "joins": [{"cid": CID, "size": 1, "members": [["n", "h", 0]]}]}))


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        JOIN.size = 3  # type: ignore[misc]


def test_a_choice_reads_the_kind_its_tag_names() -> None:
    assert Hit(PeerAddress("h", 1)).to_wire() == {"t": "hit", "at": ["h", 1]}
    assert REPLIES.decode(Hit(PeerAddress("h", 1)).encode()) == Hit(PeerAddress("h", 1))
    assert REPLIES.decode(Seen().encode()) == Seen()
    with pytest.raises(ProtocolError, match="unknown kind 'miss'"):
        REPLIES.decode(codec.encode({"t": "miss"}))
    with pytest.raises(ProtocolError, match=r"^hit\.at is missing$"):
        REPLIES.decode(codec.encode({"t": "hit"}))
    for body in (codec.encode({}), codec.encode({"t": 1}), codec.encode({"t": "x" * 65}), codec.encode([])):
        with pytest.raises(ProtocolError):
            REPLIES.decode(body)


def test_a_choice_needs_distinct_kinds_under_one_tag() -> None:
    class Other(Record):
        TAG: ClassVar[str] = "kind"
        KIND: ClassVar[str] = "other"

    for kinds in ((), (Hit, Hit), (Hit, Other), (Hit, Join)):
        with pytest.raises(ValueError):
            Choice(*kinds)


def test_every_record_field_is_declared_with_wire() -> None:
    with pytest.raises(TypeError, match="wire"):
        class Bad(Record):  # the class statement itself fails
            size: int = 0


# -- fuzz -------------------------------------------------------------------------------------------------------

KEYS = ["cid", "size", "members", "hints", "name", "joins", "where", "t", "at", "a", "l", "m"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=70),
    st.binary(max_size=70), st.just(CID), st.sampled_from(["hit", "seen", "h"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=16,
)
READERS: list[Reader[Any]] = [reader for reader, _, _ in CASES.values()]


@given(st.one_of(VALUES, st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)))
def test_arbitrary_msgpack_values_raise_nothing_but_protocol_error(value: Any) -> None:
    for reader in [*READERS, Join.read, Group.read, Hit.read]:
        try:
            reader(value, "v")
        except ProtocolError:
            pass
    body = codec.encode(value)
    for decode in (Join.decode, Group.decode, REPLIES.decode, Fields.decode):
        try:
            decode(body)
        except ProtocolError:
            pass


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_protocol_error(body: bytes) -> None:
    for decode in (Join.decode, Group.decode, REPLIES.decode, codec.decode_map):
        try:
            decode(body)
        except ProtocolError:
            pass


@given(st.builds(Join, st.text("0123456789abcdef", min_size=64, max_size=64), st.integers(0, 2**63 - 1),
                 st.lists(st.tuples(st.text(min_size=1, max_size=128),
                                    st.builds(PeerAddress, st.text(min_size=1, max_size=20), st.integers(0, 65535)),
                                    st.floats(0, 1e12)), max_size=4).map(tuple),
                 st.booleans()))
def test_records_round_trip(join: Join) -> None:
    assert Join.decode(join.encode()) == join
