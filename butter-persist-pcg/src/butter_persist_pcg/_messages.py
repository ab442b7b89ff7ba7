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

__all__ = [
    "MAX_INVITATIONS", "MAX_JOIN_BYTES", "GroupBeat", "Heartbeat", "HeartbeatReply", "Invitation", "Join",
    "JoinReply", "Refusal", "content_id_body", "decode_content_id",
]

MAX_GROUPS_PER_BEAT = 100_000
MAX_MEMBERS = 64
MAX_INVITATIONS = 64  # invitations in one pcg-join
MAX_JOIN_BYTES = 1024 * 1024  # encoded invitations in one pcg-join (a quarter of the 4 MiB frame)
MAX_MESSAGE = 256  # characters of a refusal's message

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


class Invitation(Record):
    """One item of a ``pcg-join``: an invitation to replicate ``content_id`` (``size`` bytes); the recruit
    fetches the blocks from the listed members (the inviter first). An invitation to keep a signed record
    carries the inviter's newest ``record`` of the name (encoded; ``content_id`` is its name) instead: the
    recruit verifies it and fetches nothing."""

    content_id: str = wire("cid", codec.content_id)
    size: int = wire("size", codec.integer())
    members: Sequence[Entry] = wire("members", MEMBERS)
    record: bytes | None = wire("record", codec.blob(max_length=MAX_RECORD_SIZE), default=None)


class Join(Record):
    """Route ``pcg-join``: the invitations an inviter has for one peer (at most ``MAX_INVITATIONS``, whose
    encoded sizes add up to at most ``MAX_JOIN_BYTES``), each answered on its own in :class:`JoinReply`."""

    invitations: Sequence[Invitation] = wire(
        "items", codec.sequence(Invitation.read, max_items=MAX_INVITATIONS))


class Refusal(Record):
    """An invitation refused: its ``content_id``, the error ``code`` (``joins-full``, ``store-full``,
    ``fetch-failed``, ``deleted``, ``bad-record``) and a ``message`` for people."""

    content_id: str = wire("cid", codec.content_id)
    code: str = wire("code", codec.string(min_length=1, max_length=codec.MAX_KIND_LENGTH))
    message: str = wire("message", codec.string(max_length=MAX_MESSAGE))


class JoinReply(Record):
    """The answer to a ``pcg-join``, once the recruit holds every item it accepted: the content ids it
    ``joined`` (it is a member of their groups) and the ``refused`` ones; an invitation in neither list was
    not answered (the inviter counts it as failed)."""

    joined: Sequence[str] = wire("joined", codec.sequence(codec.content_id, max_items=MAX_INVITATIONS))
    refused: Sequence[Refusal] = wire("refused", codec.sequence(Refusal.read, max_items=MAX_INVITATIONS))


def content_id_body(content_id: str) -> bytes:
    """The body of route ``pcg-leave``: ``{cid}``."""
    return codec.encode({"cid": content_id})


def decode_content_id(body: bytes) -> str:
    """Read a ``pcg-leave`` body. Raises :class:`butter.ProtocolError`."""
    return Fields.decode(body).value("cid", codec.content_id)
