"""Route bodies of the BFS retrieval protocol: frozen dataclasses and their msgpack codec.

Every body is one msgpack map (:func:`butter.wire.encode_payload`). Every ``decode`` raises
:class:`butter.ProtocolError` (answered with ``bad-request``) on a malformed body and never anything else,
whatever the bytes; lists are bounded so a hostile peer cannot make the receiver hold more than a few
hundred kilobytes per message.

=============  ==========================================================  =====================================
route          request                                                     reply
=============  ==========================================================  =====================================
``bfs-query``  ``{qid: bin16, cid: hex64, ttl: int, fraction: float,``     ``{kind: "hit", members: [addr]}``,
               ``hints: bool}``                                            ``{kind: "miss", try: [addr],``
                                                                           ``hints: [addr]}``, ``{kind: "seen"}``
``bfs-digest`` ``{have: bin8 | nil}``                                      ``{same: true}`` or ``{tag: bin8,``
                                                                           ``k: int, n: int, bits: bin}``
=============  ==========================================================  =====================================

Addresses are ``[host, port]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from butter.blocks import is_block_id
from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import decode_payload, encode_payload

__all__ = [
    "MAX_ADDRESSES",
    "MAX_DIGEST_BYTES",
    "MAX_TTL",
    "QID_BYTES",
    "DigestAsk",
    "DigestReply",
    "Hit",
    "Miss",
    "Query",
    "QueryReply",
    "Seen",
    "decode_reply",
]

QID_BYTES = 16  # a random query id
TAG_BYTES = 8  # a digest's version tag
MAX_TTL = 64  # hops; "no TTL limit" is sent as MAX_TTL
MAX_ADDRESSES = 1024  # per list in one reply
MAX_DIGEST_BYTES = 256 * 1024  # 2 Mbit: ~220,000 content ids at a 1 % false-positive rate
MAX_HASHES = 32
MAX_BODY = MAX_DIGEST_BYTES + 4096  # bytes; the decoders' msgpack limits


def _map(body: bytes) -> dict[str, Any]:
    obj = decode_payload(body, MAX_BODY)
    if not isinstance(obj, dict):
        raise ProtocolError("body must be a map")
    return obj


def _int(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{name} must be an integer from {low} to {high}")
    return value


def _addresses(value: Any, name: str) -> tuple[PeerAddress, ...]:
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise ProtocolError(f"{name} must be a list of at most {MAX_ADDRESSES} addresses")
    try:
        return tuple(PeerAddress.from_wire(item) for item in value)
    except ValueError as exc:
        raise ProtocolError(f"bad address in {name}: {exc}") from None


def _wire(addresses: tuple[PeerAddress, ...]) -> list[list[Any]]:
    return [a.to_wire() for a in addresses]


@dataclass(frozen=True, slots=True)
class Query:
    """Route ``bfs-query``: does the receiver hold item ``content_id``?

    * ``query_id``: 16 random bytes naming one search ring; a node handles a query id at most once.
    * ``ttl``: hops the querier may still take *beyond* the receiver; at 0 the receiver is on the horizon
      and returns no addresses. The querier sends ``ttl - depth`` (it decrements per hop).
    * ``fraction``: the share of its known hosts (0 < fraction ≤ 1) the receiver returns on a miss.
    * ``hints``: whether the receiver should also name its known hosts whose digest may hold the item.
    """

    query_id: bytes
    content_id: str
    ttl: int
    fraction: float
    hints: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.query_id, bytes) or len(self.query_id) != QID_BYTES:
            raise ProtocolError(f"query id must be {QID_BYTES} bytes")
        if not is_block_id(self.content_id):
            raise ProtocolError("content id must be 64 lowercase hex characters")
        _int(self.ttl, "ttl", 0, MAX_TTL)
        if (
            not isinstance(self.fraction, int | float)
            or isinstance(self.fraction, bool)
            or not math.isfinite(self.fraction)
            or not 0 < self.fraction <= 1
        ):
            raise ProtocolError("fraction must be a number in (0, 1]")

    def encode(self) -> bytes:
        return encode_payload(
            {"qid": self.query_id, "cid": self.content_id, "ttl": self.ttl, "fraction": float(self.fraction),
             "hints": self.hints}
        )

    @classmethod
    def decode(cls, body: bytes) -> Query:
        obj = _map(body)
        return cls(obj.get("qid"), obj.get("cid"), obj.get("ttl"), obj.get("fraction"),  # type: ignore[arg-type]
                   obj.get("hints", True) is True)


@dataclass(frozen=True, slots=True)
class Hit:
    """The receiver holds the item (its manifest and blocks). ``members``: other holders it knows of (the
    item's group members, from the persistence slot), so the querier can fetch blocks from several."""

    members: tuple[PeerAddress, ...] = ()

    def encode(self) -> bytes:
        return encode_payload({"kind": "hit", "members": _wire(self.members)})


@dataclass(frozen=True, slots=True)
class Miss:
    """The receiver does not hold the item. ``peers``: a random ``fraction`` of its known hosts for the
    querier to ask next; ``hints``: known hosts whose digest says they may hold the item (ask them first)."""

    peers: tuple[PeerAddress, ...] = ()
    hints: tuple[PeerAddress, ...] = ()

    def encode(self) -> bytes:
        return encode_payload({"kind": "miss", "try": _wire(self.peers), "hints": _wire(self.hints)})


@dataclass(frozen=True, slots=True)
class Seen:
    """The receiver already handled this query id (duplicate suppression): nothing more to say."""

    def encode(self) -> bytes:
        return encode_payload({"kind": "seen"})


QueryReply = Hit | Miss | Seen


def decode_reply(body: bytes) -> QueryReply:
    """Decode a ``bfs-query`` reply. Raises :class:`~butter.ProtocolError` on anything malformed."""
    obj = _map(body)
    kind = obj.get("kind")
    if kind == "hit":
        return Hit(_addresses(obj.get("members", []), "members"))
    if kind == "miss":
        return Miss(_addresses(obj.get("try", []), "try"), _addresses(obj.get("hints", []), "hints"))
    if kind == "seen":
        return Seen()
    raise ProtocolError(f"unknown reply kind {kind!r:.40}")


@dataclass(frozen=True, slots=True)
class DigestAsk:
    """Route ``bfs-digest``: send me your digest, unless its tag is still ``have``."""

    have: bytes | None = None

    def encode(self) -> bytes:
        return encode_payload({"have": self.have})

    @classmethod
    def decode(cls, body: bytes) -> DigestAsk:
        have = _map(body).get("have")
        if have is not None and (not isinstance(have, bytes) or len(have) != TAG_BYTES):
            raise ProtocolError(f"have must be nil or {TAG_BYTES} bytes")
        return cls(have)


@dataclass(frozen=True, slots=True)
class DigestReply:
    """A node's digest: a Bloom filter (``bits``, ``hashes`` hash functions) of the ``count`` content ids it
    holds, and its version ``tag``; or ``same=True`` (no filter) when the asker's copy is current."""

    tag: bytes = b""
    hashes: int = 0
    count: int = 0
    bits: bytes = b""
    same: bool = False

    def encode(self) -> bytes:
        if self.same:
            return encode_payload({"same": True})
        return encode_payload({"tag": self.tag, "k": self.hashes, "n": self.count, "bits": self.bits})

    @classmethod
    def decode(cls, body: bytes) -> DigestReply:
        obj = _map(body)
        if obj.get("same") is True:
            return cls(same=True)
        tag, bits = obj.get("tag"), obj.get("bits")
        if not isinstance(tag, bytes) or len(tag) != TAG_BYTES:
            raise ProtocolError(f"digest tag must be {TAG_BYTES} bytes")
        if not isinstance(bits, bytes) or not 0 < len(bits) <= MAX_DIGEST_BYTES:
            raise ProtocolError(f"digest bits must be 1 to {MAX_DIGEST_BYTES} bytes")
        return cls(tag, _int(obj.get("k"), "k", 1, MAX_HASHES), _int(obj.get("n"), "n", 0, 2**40), bits)
