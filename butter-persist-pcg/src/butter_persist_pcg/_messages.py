"""PCG route bodies: records of :mod:`butter.codec` (see this package's README for the table).

Every ``decode`` raises :class:`butter.ProtocolError` (answered as ``bad-request``) on a malformed body and
never anything else, whatever the bytes. A member entry is ``[node id, [host, port], age]``, the age in
seconds (finite, not negative).
"""

from __future__ import annotations

from collections.abc import Sequence

from butter import codec
from butter.codec import Fields, Record, wire
from butter.peers import PeerAddress
from butter.records import MAX_RECORD_SIZE

__all__ = ["GroupBeat", "Heartbeat", "HeartbeatReply", "Join", "content_id_body", "decode_content_id"]

MAX_GROUPS_PER_BEAT = 100_000
MAX_MEMBERS = 64

Entry = tuple[str, PeerAddress, float]  # node id, address, age in seconds
MEMBERS = codec.sequence(codec.entry(codec.node_id, codec.address, codec.number(0.0)), max_items=MAX_MEMBERS)


class GroupBeat(Record):
    r"""One group of a heartbeat: the item, its ``size`` in bytes, the sender's recent retrieval ``hits`` for
    it and the sender's view of the ``members``; for a group keeping a signed record (``content_id`` is then
    the record's name), the ``seq``\ uence of the newest record of the name the sender keeps (optional)."""

    content_id: str = wire("cid", codec.content_id)
    size: int = wire("size", codec.integer())
    hits: int = wire("hits", codec.integer())
    members: Sequence[Entry] = wire("members", MEMBERS)
    seq: int | None = wire("seq", codec.integer(), default=None)


class Heartbeat(Record):
    """Route ``pcg-heartbeat``: one message per peer pair per interval, for every group they share (the
    higher node id sends it; the reply carries the other side's view)."""

    sender: str = wire("from", codec.node_id)
    address: PeerAddress = wire("addr", codec.address)
    leaving: bool = wire("leaving", codec.boolean)
    groups: Sequence[GroupBeat] = wire("groups", codec.sequence(GroupBeat.read, max_items=MAX_GROUPS_PER_BEAT))


class HeartbeatReply(Record):
    """The groups of the heartbeat that the receiver does not hold (``unknown``: the sender drops it from
    them), and the receiver's own beat for each of the others (``groups``, its hits and view: the sender
    hears from it through the reply; optional, absent from older peers' replies)."""

    unknown: Sequence[str] = wire("unknown", codec.sequence(codec.content_id, max_items=MAX_GROUPS_PER_BEAT))
    groups: Sequence[GroupBeat] = wire(
        "groups", codec.sequence(GroupBeat.read, max_items=MAX_GROUPS_PER_BEAT), default=())


class Join(Record):
    """Route ``pcg-join``: an invitation to replicate ``content_id`` (``size`` bytes); the recruit fetches the
    blocks from the listed members (the inviter first) before it answers. An invitation to keep a signed
    record carries the inviter's newest ``record`` of the name (encoded; ``content_id`` is its name) instead:
    the recruit verifies it and fetches nothing."""

    content_id: str = wire("cid", codec.content_id)
    size: int = wire("size", codec.integer())
    members: Sequence[Entry] = wire("members", MEMBERS)
    record: bytes | None = wire("record", codec.blob(max_length=MAX_RECORD_SIZE), default=None)


def content_id_body(content_id: str) -> bytes:
    """The body of route ``pcg-leave``: ``{cid}``."""
    return codec.encode({"cid": content_id})


def decode_content_id(body: bytes) -> str:
    """Read a ``pcg-leave`` body. Raises :class:`butter.ProtocolError`."""
    return Fields.decode(body).value("cid", codec.content_id)
