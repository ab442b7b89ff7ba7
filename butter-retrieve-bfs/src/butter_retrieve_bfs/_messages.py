"""Route bodies of the BFS retrieval protocol: frozen dataclasses and their msgpack codec.

Every body is one msgpack map, read with :mod:`butter.codec`. Every ``decode`` raises
:class:`butter.ProtocolError` (answered with ``bad-request``) on a malformed body and never anything else,
whatever the bytes; lists are bounded so a hostile peer cannot make the receiver hold more than a few
hundred kilobytes per message.

=============  ==========================================================  =====================================
route          request                                                     reply
=============  ==========================================================  =====================================
``bfs-query``  ``{qid: bin16, cid: hex64, ttl: int, fraction: float,``     ``{kind: "hit", members: [addr]}``,
               ``hints: bool}``                                            ``{kind: "miss", try: [addr],``
                                                                           ``hints: [addr], tombstone: bytes``
                                                                           ``| nil}``, ``{kind: "seen"}``
``bfs-digest`` ``{have: bin8 | nil, from: addr | nil}``                    ``{same: true}`` or ``{tag: bin8,``
                                                                           ``k: int, n: int, bits: bin}``
``bfs-digest`` ``{tag: bin8, k: int, n: int, bits: bin}``: the sender's    ``{kept: bool}``: whether the receiver
``-push``      digest, sent when what it keeps changed                     knows the sender and kept the digest
=============  ==========================================================  =====================================

Addresses are ``[host, port]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from butter import codec
from butter.codec import Choice, Fields, Record, wire
from butter.peers import PeerAddress
from butter.tombstones import MAX_TOMBSTONE_SIZE

__all__ = [
    "MAX_ADDRESSES",
    "MAX_DIGEST_BYTES",
    "MAX_TTL",
    "QID_BYTES",
    "DigestAsk",
    "DigestKept",
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

ADDRESSES = codec.sequence(codec.address, max_items=MAX_ADDRESSES)


class _Message(Record):
    TAG = "kind"
    MAX_SIZE = MAX_BODY


class Query(_Message):
    """Route ``bfs-query``: does the receiver hold item ``content_id``?

    * ``query_id``: 16 random bytes naming one search ring; a node handles a query id at most once.
    * ``ttl``: hops the querier may still take *beyond* the receiver; at 0 the receiver is on the horizon
      and returns no addresses. The querier sends ``ttl - depth`` (it decrements per hop).
    * ``fraction``: the share of its known hosts (0 < fraction ≤ 1) the receiver returns on a miss.
    * ``hints``: whether the receiver should also name its known hosts whose digest may hold the item.
    """

    query_id: bytes = wire("qid", codec.blob(size=QID_BYTES))
    content_id: str = wire("cid", codec.content_id)
    ttl: int = wire("ttl", codec.integer(0, MAX_TTL))
    fraction: float = wire("fraction", codec.number(0.0, 1.0, low_open=True))
    hints: bool = wire("hints", codec.boolean, default=True)


class Hit(_Message):
    """The receiver holds the item (its manifest and blocks). ``members``: other holders it knows of (the
    item's group members, from the persistence slot), so the querier can fetch blocks from several."""

    KIND: ClassVar[str] = "hit"
    members: tuple[PeerAddress, ...] = wire("members", ADDRESSES, default=())


class Miss(_Message):
    """The receiver does not hold the item. ``peers``: a random ``fraction`` of its known hosts for the
    querier to ask next; ``hints``: known hosts whose digest says they may hold the item (ask them first);
    ``tombstone``: the encoded :class:`~butter.tombstones.Tombstone` of the item when its owner deleted it and
    the receiver keeps the tombstone (``None`` otherwise)."""

    KIND: ClassVar[str] = "miss"
    peers: tuple[PeerAddress, ...] = wire("try", ADDRESSES, default=())
    hints: tuple[PeerAddress, ...] = wire("hints", ADDRESSES, default=())
    tombstone: bytes | None = wire("tombstone", codec.blob(max_length=MAX_TOMBSTONE_SIZE), default=None)


class Seen(_Message):
    """The receiver already handled this query id (duplicate suppression): nothing more to say."""

    KIND: ClassVar[str] = "seen"


QueryReply = Hit | Miss | Seen
REPLIES = Choice[QueryReply](Hit, Miss, Seen)


def decode_reply(body: bytes) -> QueryReply:
    """Decode a ``bfs-query`` reply. Raises :class:`~butter.ProtocolError` on anything malformed."""
    return REPLIES.decode(body, MAX_BODY)


class DigestAsk(_Message):
    """Route ``bfs-digest``: send me your digest, unless its tag is still ``have``; and push it to me at
    ``asker`` (my listening address) when it changes (route ``bfs-digest-push``)."""

    have: bytes | None = wire("have", codec.blob(size=TAG_BYTES), default=None)
    asker: PeerAddress | None = wire("from", codec.address, default=None)


class DigestKept(_Message):
    """The reply to route ``bfs-digest-push``: whether the receiver kept the pushed digest (it does only when
    it knows the sender as a host and uses digests)."""

    kept: bool = wire("kept", codec.boolean, default=False)


@dataclass(frozen=True, slots=True)
class DigestReply:
    """A node's digest: a Bloom filter (``bits``, ``hashes`` hash functions) of the ``count`` content ids it
    holds, and its version ``tag``; or ``same=True`` (no filter) when the asker's copy is current. Also the
    body of route ``bfs-digest-push`` (never ``same`` there)."""

    tag: bytes = b""
    hashes: int = 0
    count: int = 0
    bits: bytes = b""
    same: bool = False

    def encode(self) -> bytes:
        if self.same:
            return codec.encode({"same": True})
        return codec.encode({"tag": self.tag, "k": self.hashes, "n": self.count, "bits": self.bits})

    @classmethod
    def decode(cls, body: bytes) -> DigestReply:
        fields = Fields.decode(body, MAX_BODY)
        if fields.boolean("same", default=False):
            return cls(same=True)
        return cls(fields.blob("tag", size=TAG_BYTES), fields.integer("k", low=1, high=MAX_HASHES),
                   fields.integer("n", high=2**40), fields.blob("bits", min_length=1, max_length=MAX_DIGEST_BYTES))
