"""The beacon's one datagram, ``ping``, and its codec (sans-IO).

Rules this module keeps:

* A datagram is one msgpack map (:func:`butter.wire.encode_payload`):
  ``{"v": 1, "t": "ping", "id": node id, "addr": [host, port]}``. ``addr`` is where the pinger's transport
  listens: listeners answer there, over the transport, not over UDP.
* Decoding never raises on what the network sends: every datagram becomes a :class:`Ping` or a
  :class:`Dropped` naming why (``oversized``, ``malformed``, ``version``, ``unknown-kind``). Extra keys are
  ignored, so version 1 may grow optional fields; an incompatible change bumps ``v``, and a node drops
  versions it does not speak.
* Sizes are bounded before decoding: a datagram over ``max_size`` bytes is not even parsed, and the msgpack
  unpacker gets the same limit (:func:`butter.wire.decode_payload`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import decode_payload, encode_payload

__all__ = [
    "BEACON_VERSION",
    "MAX_NODE_ID_LENGTH",
    "DropReason",
    "Dropped",
    "Ping",
    "decode_datagram",
    "encode_ping",
]

BEACON_VERSION = 1
MAX_NODE_ID_LENGTH = 128  # characters, as butter.peers.PeerInfo accepts

DropReason = Literal["oversized", "malformed", "version", "unknown-kind"]


@dataclass(frozen=True, slots=True)
class Ping:
    """"I know nobody; this is who I am and where my transport listens." Multicast while lonely."""

    node_id: str
    address: PeerAddress


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram that was not a ping this node can use; ``reason`` says why."""

    reason: DropReason
    detail: str = ""


def encode_ping(ping: Ping) -> bytes:
    """The datagram for ``ping``."""
    return encode_payload({"v": BEACON_VERSION, "t": "ping", "id": ping.node_id, "addr": ping.address.to_wire()})


def decode_datagram(data: bytes, max_size: int) -> Ping | Dropped:
    """Parse one received datagram of at most ``max_size`` bytes. Never raises."""
    if len(data) > max_size:
        return Dropped("oversized", f"{len(data)} bytes > {max_size}")
    try:
        obj = decode_payload(data, max_size)
    except ProtocolError as exc:
        return Dropped("malformed", str(exc))
    if not isinstance(obj, dict):
        return Dropped("malformed", "not a map")
    version = obj.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        return Dropped("malformed", "no version")
    if version != BEACON_VERSION:
        return Dropped("version", f"version {version}")
    if obj.get("t") != "ping":
        return Dropped("unknown-kind", f"kind {obj.get('t')!r}")
    node_id = obj.get("id")
    if not isinstance(node_id, str) or not 0 < len(node_id) <= MAX_NODE_ID_LENGTH:
        return Dropped("malformed", "bad node id")
    try:
        address = PeerAddress.from_wire(obj.get("addr"))
    except ValueError as exc:
        return Dropped("malformed", f"bad address: {exc}")
    return Ping(node_id, address)
