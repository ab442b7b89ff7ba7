"""The ``flood-query`` route's bodies, as :mod:`butter.codec` records: each field names its key on the wire and
the reader that checks it, so a malformed body from a peer raises ``ProtocolError`` (answered ``bad-request``)
and nothing else."""

from __future__ import annotations

from butter import codec
from butter.codec import Record, wire
from butter.peers import PeerAddress

__all__ = ["MAX_TTL", "QUERY_ID_BYTES", "FloodAnswer", "FloodQuery"]

MAX_TTL = 16  # hops
QUERY_ID_BYTES = 16


class FloodQuery(Record):
    """``{"q": 16-byte query id, "cid": content id, "ttl": hops left (0 to 16)}``."""

    query_id: bytes = wire("q", codec.blob(size=QUERY_ID_BYTES))
    content_id: str = wire("cid", codec.content_id)
    ttl: int = wire("ttl", codec.integer(0, MAX_TTL))


class FloodAnswer(Record):
    """``{"holder": [host, port]}``, or ``{"holder": nil}`` when no holder was found."""

    holder: PeerAddress | None = wire("holder", codec.address, default=None)
