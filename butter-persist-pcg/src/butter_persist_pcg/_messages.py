"""PCG route bodies: frozen dataclasses and their msgpack codec (see this package's README for the table).

Every ``decode`` raises :class:`butter.ProtocolError` (answered as ``bad-request``) on a malformed body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import decode_payload, encode_payload

__all__ = ["GroupBeat", "Heartbeat", "HeartbeatReply", "Join"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_GROUPS_PER_BEAT = 100_000
MAX_MEMBERS = 64

Entry = tuple[str, PeerAddress, float]  # node id, address, age in seconds


def _content_id(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ProtocolError("content id must be 64 lowercase hex characters")
    return value


def _node_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise ProtocolError("node id must be a short string")
    return value


def _address(value: Any) -> PeerAddress:
    try:
        return PeerAddress.from_wire(value)
    except ValueError as exc:
        raise ProtocolError(f"bad address: {exc}") from None


def _entries(value: Any) -> list[Entry]:
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise ProtocolError(f"members must be a list of at most {MAX_MEMBERS}")
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[2], int | float):
            raise ProtocolError("member entry must be [node id, address, age]")
        out.append((_node_id(item[0]), _address(item[1]), float(item[2])))
    return out


def _map(body: bytes) -> dict[str, Any]:
    obj = decode_payload(body)
    if not isinstance(obj, dict):
        raise ProtocolError("body must be a map")
    return obj


def _nonneg_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{name} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class GroupBeat:
    content_id: str
    size: int  # bytes
    hits: int  # the sender's recent retrieval hits for this item
    members: list[Entry]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Route ``pcg-heartbeat``: one message per peer pair per interval, for every group they share."""

    sender: str
    address: PeerAddress
    leaving: bool
    groups: list[GroupBeat]

    def encode(self) -> bytes:
        return encode_payload({
            "from": self.sender,
            "addr": self.address.to_wire(),
            "leaving": self.leaving,
            "groups": [
                {"cid": g.content_id, "size": g.size, "hits": g.hits,
                 "members": [[i, a.to_wire(), round(age, 3)] for i, a, age in g.members]}
                for g in self.groups
            ],
        })

    @classmethod
    def decode(cls, body: bytes) -> Heartbeat:
        obj = _map(body)
        groups = obj.get("groups")
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS_PER_BEAT:
            raise ProtocolError("groups must be a list")
        beats = []
        for g in groups:
            if not isinstance(g, dict):
                raise ProtocolError("group entry must be a map")
            beats.append(GroupBeat(_content_id(g.get("cid")), _nonneg_int(g.get("size"), "size"),
                                   _nonneg_int(g.get("hits", 0), "hits"), _entries(g.get("members"))))
        return cls(_node_id(obj.get("from")), _address(obj.get("addr")), obj.get("leaving") is True, beats)


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """The groups of the heartbeat that the receiver does not hold: the sender drops it from them."""

    unknown: list[str]

    def encode(self) -> bytes:
        return encode_payload({"unknown": self.unknown})

    @classmethod
    def decode(cls, body: bytes) -> HeartbeatReply:
        unknown = _map(body).get("unknown")
        if not isinstance(unknown, list):
            raise ProtocolError("unknown must be a list")
        return cls([_content_id(c) for c in unknown])


@dataclass(frozen=True, slots=True)
class Join:
    """Route ``pcg-join``: an invitation to replicate ``content_id``; the recruit fetches the blocks from the
    listed members (the inviter first) before it answers."""

    content_id: str
    size: int
    members: list[Entry]

    def encode(self) -> bytes:
        return encode_payload({"cid": self.content_id, "size": self.size,
                               "members": [[i, a.to_wire(), round(age, 3)] for i, a, age in self.members]})

    @classmethod
    def decode(cls, body: bytes) -> Join:
        obj = _map(body)
        return cls(_content_id(obj.get("cid")), _nonneg_int(obj.get("size"), "size"), _entries(obj.get("members")))


def content_id_body(content_id: str) -> bytes:
    return encode_payload({"cid": content_id})


def decode_content_id(body: bytes) -> str:
    return _content_id(_map(body).get("cid"))
