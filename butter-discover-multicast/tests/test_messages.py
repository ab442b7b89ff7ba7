"""The ping codec: round trip, versioning, and that nothing from the network raises."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from butter.peers import PeerAddress
from butter_discover_multicast import BEACON_VERSION, Dropped, Ping, decode_datagram, encode_ping

MAX = 512
PING = Ping("ab" * 16, PeerAddress("192.168.1.20", 9000))


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def test_round_trip() -> None:
    data = encode_ping(PING)
    assert len(data) < 100
    assert decode_datagram(data, MAX) == PING


@given(st.builds(Ping, st.text(min_size=1, max_size=128),
                 st.builds(PeerAddress, st.text(min_size=1, max_size=253), st.integers(0, 65535))))
def test_every_ping_round_trips(ping: Ping) -> None:
    assert decode_datagram(encode_ping(ping), 4096) == ping


def test_ipv6_and_long_host_names_round_trip() -> None:
    for host in ("fe80::1", "h" * 253):
        ping = Ping("x", PeerAddress(host, 1))
        assert decode_datagram(encode_ping(ping), MAX) == ping


def test_extra_keys_are_ignored_so_version_1_can_grow() -> None:
    data = pack({"v": 1, "t": "ping", "id": "n1", "addr": ["10.0.0.1", 5], "later": [1, 2]})
    assert decode_datagram(data, MAX) == Ping("n1", PeerAddress("10.0.0.1", 5))


def test_other_versions_and_kinds_are_dropped() -> None:
    assert decode_datagram(pack({"v": BEACON_VERSION + 1, "t": "ping"}), MAX) == Dropped("version", "version 2")
    assert decode_datagram(pack({"v": 1, "t": "bye", "id": "n"}), MAX).reason == "unknown-kind"  # type: ignore[union-attr]


def test_oversized_datagrams_are_not_parsed() -> None:
    data = pack({"v": 1, "t": "ping", "id": "n", "addr": ["h" * 600, 1]})
    assert decode_datagram(data, MAX) == Dropped("oversized", f"{len(data)} bytes > {MAX}")


def test_malformed_datagrams_are_dropped() -> None:
    cases = [
        b"",
        b"\xc1",  # never used in msgpack
        pack([1, "ping"]),
        pack({"v": "1"}),
        pack({"v": True, "t": "ping"}),
        pack({"v": 1, "t": "ping", "id": "", "addr": ["h", 1]}),
        pack({"v": 1, "t": "ping", "id": "i" * 129, "addr": ["h", 1]}),
        pack({"v": 1, "t": "ping", "id": "n", "addr": ["h", 70000]}),
        pack({"v": 1, "t": "ping", "id": "n", "addr": "h:1"}),
        pack({"v": 1, "t": "ping", "id": "n"}),
        encode_ping(PING) + b"\x00",  # trailing bytes
    ]
    for data in cases:
        result = decode_datagram(data, MAX)
        assert isinstance(result, Dropped) and result.reason == "malformed", (data, result)


@given(st.binary(max_size=700))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(decode_datagram(data, MAX), Ping | Dropped)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["v", "t", "id", "addr", "x"]), values, max_size=5))
def test_arbitrary_maps_never_raise(obj: dict[str, object]) -> None:
    assert isinstance(decode_datagram(pack(obj), 4096), Ping | Dropped)
