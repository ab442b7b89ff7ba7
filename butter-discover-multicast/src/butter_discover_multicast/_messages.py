"""The beacon's one datagram, ``ping``, and its codec (sans-IO).

Rules this module keeps:

* A datagram is one msgpack map, read with :mod:`butter.codec`:
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
from typing import ClassVar, Literal

from butter import codec
from butter.codec import Fields, Record, wire
from butter.errors import ProtocolError
from butter.peers import PeerAddress

__all__ = [
    "BEACON_VERSION",
    "DropReason",
    "Dropped",
    "Ping",
    "decode_datagram",
    "encode_ping",
]

BEACON_VERSION = 1

DropReason = Literal["oversized", "malformed", "version", "unknown-kind"]


class Ping(Record):
    """"I know nobody; this is who I am and where my transport listens." Multicast while lonely."""

    KIND: ClassVar[str] = "ping"
    node_id: str = wire("id", codec.node_id)
    address: PeerAddress = wire("addr", codec.address)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram that was not a ping this node can use; ``reason`` says why."""

    reason: DropReason
    detail: str = ""


def encode_ping(ping: Ping) -> bytes:
    """The datagram for ``ping``."""
    return codec.encode({"v": BEACON_VERSION, **ping.to_wire()})


def decode_datagram(data: bytes, max_size: int) -> Ping | Dropped:
    """Parse one received datagram of at most ``max_size`` bytes. Never raises."""
    if len(data) > max_size:
        return Dropped("oversized", f"{len(data)} bytes > {max_size}")
    try:
        fields = Fields.decode(data, max_size, what="datagram")
        version = fields.integer("v")
        if version != BEACON_VERSION:
            return Dropped("version", f"version {version}")
        kind = fields.string(Ping.TAG, max_length=codec.MAX_KIND_LENGTH)
        if kind != Ping.KIND:
            return Dropped("unknown-kind", f"kind {kind!r}")
        return Ping.from_wire(fields)
    except ProtocolError as exc:
        return Dropped("malformed", str(exc))
