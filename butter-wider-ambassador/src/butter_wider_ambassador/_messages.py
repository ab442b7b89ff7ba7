"""The ambassador's service protocol, sans-IO: messages and their framing (no sockets here).

An ambassador listens on a **service port** of its own, beside the node's transport, because this protocol
needs what a request/response route cannot give: the address a connection comes from as the ambassador
sees it (the *observed* address, as in libp2p identify), server-pushed messages on a long-lived control
connection (relay reservations), and connections that turn into raw byte pipes (relay circuits).

Rules this module keeps:

* A frame is a 4-byte big-endian length then one msgpack map ``{"t": kind, ...fields}``; a frame is at most
  :data:`MAX_MESSAGE` bytes (64 KiB): the protocol only carries addresses and small records.
* Every message is a frozen dataclass with ``to_wire()`` and ``from_wire(map)``; :func:`encode_message`
  turns one into a frame and :func:`decode_message` a frame's payload back into one (raising
  :class:`~butter.errors.ProtocolError`, after which the connection should be closed). Framing received
  bytes is the one generic framer's, :class:`butter.wire.FrameDecoder` (see ``_io.Channel``).
* After an :class:`Accept` (relay data) the connection carries raw bytes: the framer's ``rest()`` hands
  over whatever was read beyond the last frame.

Conversation shapes (client → ambassador unless noted), one per connection:

* ``hello`` → ``welcome`` (at once: observed address, introductions) → ``dialed`` (after the dial-back:
  whether the node is reachable from outside).
* ``reserve`` → ``reserved``, then the connection stays as the reservation's control channel: the
  ambassador sends ``open`` (a peer dialled the relayed address) and ``punch-call``; the client sends
  ``ping`` keepalives.
* ``accept`` (on a new connection, answering ``open``): the connection becomes the circuit's data pipe.
* ``punch`` → ``punch-go`` (initiator) and ``punch-ready`` → ``punch-go`` (target, answering
  ``punch-call``): both learn the other's observed address for a TCP simultaneous open.
* any request may get ``refused`` with a machine-readable ``code``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from butter.errors import ProtocolError
from butter.peers import PeerAddress
from butter.wire import decode_payload, encode_payload

__all__ = [
    "MAX_MESSAGE",
    "Accept",
    "Dialed",
    "Hello",
    "Introduction",
    "Message",
    "Open",
    "Ping",
    "Punch",
    "PunchCall",
    "PunchGo",
    "PunchReady",
    "Refused",
    "Reserve",
    "Reserved",
    "Welcome",
    "decode_message",
    "encode_message",
]

MAX_MESSAGE = 64 * 1024  # bytes of one frame's payload
MAX_INTRODUCTIONS = 64  # entries of one welcome
MAX_ID = 128  # characters of a node id
_HEADER = struct.Struct(">I")


def _str(obj: dict[str, Any], key: str, limit: int = MAX_ID) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"{key} must be a string of 1 to {limit} characters")
    return value


def _int(obj: dict[str, Any], key: str, low: int = 0, high: int = 2**63 - 1) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}")
    return value


def _float(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e12:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


def _bytes(obj: dict[str, Any], key: str, limit: int = 64) -> bytes:
    value = obj.get(key)
    if not isinstance(value, bytes) or len(value) > limit:
        raise ValueError(f"{key} must be at most {limit} bytes")
    return value


def _address(obj: dict[str, Any], key: str) -> PeerAddress:
    return PeerAddress.from_wire(obj.get(key))


def _optional_address(obj: dict[str, Any], key: str) -> PeerAddress | None:
    return None if obj.get(key) is None else _address(obj, key)


@dataclass(frozen=True, slots=True)
class Introduction:
    """One peer of another subnetwork: its ``node_id``, the ``address`` to dial and whether that address is
    ``relayed`` (an ambassador's relay port) rather than the peer's own."""

    node_id: str
    address: PeerAddress
    relayed: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.node_id, "addr": self.address.to_wire(), "relayed": self.relayed}

    @classmethod
    def from_wire(cls, obj: Any) -> Introduction:
        if not isinstance(obj, dict):
            raise ValueError("introduction must be a map")
        return cls(_str(obj, "id"), _address(obj, "addr"), obj.get("relayed") is True)


@dataclass(frozen=True, slots=True)
class Hello:
    """Publish: node ``node_id`` listens on ``local``; ``port`` is the port it believes is open on its public
    address (forwarded or mapped; default its listening port); it wants up to ``k`` introductions."""

    KIND: ClassVar[str] = "hello"
    node_id: str
    local: PeerAddress
    port: int
    k: int = 8

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.node_id, "local": self.local.to_wire(), "port": self.port, "k": self.k}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Hello:
        return cls(_str(obj, "id"), _address(obj, "local"), _int(obj, "port", 1, 65535), _int(obj, "k", 0, 64))


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first answer to :class:`Hello`, sent at once: the connection's ``observed`` address, the
    ``subnet`` key the ambassador files the node under, and ``peers`` of other subnetworks."""

    KIND: ClassVar[str] = "welcome"
    observed: PeerAddress
    subnet: str
    peers: tuple[Introduction, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"observed": self.observed.to_wire(), "subnet": self.subnet, "peers": [p.to_wire() for p in self.peers]}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Welcome:
        peers = obj.get("peers")
        if not isinstance(peers, list) or len(peers) > MAX_INTRODUCTIONS:
            raise ValueError(f"peers must be a list of at most {MAX_INTRODUCTIONS}")
        return cls(_address(obj, "observed"), _str(obj, "subnet"), tuple(Introduction.from_wire(p) for p in peers))


@dataclass(frozen=True, slots=True)
class Dialed:
    """The second answer to :class:`Hello`, after the dial-back: the public address at which the ambassador
    reached the node (``reachable``), or ``None``: not reachable from outside."""

    KIND: ClassVar[str] = "dialed"
    reachable: PeerAddress | None

    def to_wire(self) -> dict[str, Any]:
        return {"reachable": None if self.reachable is None else self.reachable.to_wire()}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Dialed:
        return cls(_optional_address(obj, "reachable"))


@dataclass(frozen=True, slots=True)
class Reserve:
    """Ask for a relay reservation for node ``node_id`` (listening on ``local``)."""

    KIND: ClassVar[str] = "reserve"
    node_id: str
    local: PeerAddress

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.node_id, "local": self.local.to_wire()}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Reserve:
        return cls(_str(obj, "id"), _address(obj, "local"))


@dataclass(frozen=True, slots=True)
class Reserved:
    """A reservation: peers dial ``relayed``; ``token`` proves a later data connection belongs to it; each
    circuit lasts at most ``duration`` seconds and ``data`` bytes (both directions together)."""

    KIND: ClassVar[str] = "reserved"
    relayed: PeerAddress
    token: bytes
    duration: float
    data: int

    def to_wire(self) -> dict[str, Any]:
        return {"relayed": self.relayed.to_wire(), "token": self.token, "duration": self.duration, "data": self.data}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Reserved:
        return cls(_address(obj, "relayed"), _bytes(obj, "token"), _float(obj, "duration"), _int(obj, "data"))


@dataclass(frozen=True, slots=True)
class Open:
    """Ambassador → reservation holder: a peer dialled the relayed address; open circuit ``circuit``."""

    KIND: ClassVar[str] = "open"
    circuit: int

    def to_wire(self) -> dict[str, Any]:
        return {"circuit": self.circuit}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Open:
        return cls(_int(obj, "circuit"))


@dataclass(frozen=True, slots=True)
class Accept:
    """First message of a data connection: it carries ``circuit`` of the reservation holding ``token``."""

    KIND: ClassVar[str] = "accept"
    circuit: int
    token: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"circuit": self.circuit, "token": self.token}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Accept:
        return cls(_int(obj, "circuit"), _bytes(obj, "token"))


@dataclass(frozen=True, slots=True)
class Ping:
    """Keepalive on a control connection (either way); carries nothing."""

    KIND: ClassVar[str] = "ping"

    def to_wire(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Ping:
        return cls()


@dataclass(frozen=True, slots=True)
class Punch:
    """Initiator: node ``node_id`` wants a direct connection to the peer relayed at ``target``."""

    KIND: ClassVar[str] = "punch"
    node_id: str
    target: PeerAddress

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.node_id, "target": self.target.to_wire()}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Punch:
        return cls(_str(obj, "id"), _address(obj, "target"))


@dataclass(frozen=True, slots=True)
class PunchCall:
    """Ambassador → target (on its control connection): answer hole punch ``punch`` from a new connection."""

    KIND: ClassVar[str] = "punch-call"
    punch: int

    def to_wire(self) -> dict[str, Any]:
        return {"punch": self.punch}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> PunchCall:
        return cls(_int(obj, "punch"))


@dataclass(frozen=True, slots=True)
class PunchReady:
    """Target → ambassador, on a new connection whose source port it will punch from."""

    KIND: ClassVar[str] = "punch-ready"
    punch: int
    token: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"punch": self.punch, "token": self.token}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> PunchReady:
        return cls(_int(obj, "punch"), _bytes(obj, "token"))


@dataclass(frozen=True, slots=True)
class PunchGo:
    """Ambassador → both sides: connect to ``peer`` (its observed address) from the port of this connection."""

    KIND: ClassVar[str] = "punch-go"
    peer: PeerAddress

    def to_wire(self) -> dict[str, Any]:
        return {"peer": self.peer.to_wire()}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> PunchGo:
        return cls(_address(obj, "peer"))


@dataclass(frozen=True, slots=True)
class Refused:
    """A request was refused: ``code`` (e.g. ``"reservations-full"``, ``"no-reservation"``) and a ``message``."""

    KIND: ClassVar[str] = "refused"
    code: str
    message: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Refused:
        message = obj.get("message", "")
        return cls(_str(obj, "code"), message if isinstance(message, str) else "")


Message = (
    Hello | Welcome | Dialed | Reserve | Reserved | Open | Accept | Ping | Punch | PunchCall | PunchReady | PunchGo
    | Refused
)
_KINDS: dict[str, Any] = {
    cls.KIND: cls
    for cls in (
        Hello, Welcome, Dialed, Reserve, Reserved, Open, Accept, Ping, Punch, PunchCall, PunchReady, PunchGo, Refused
    )
}


def encode_message(message: Message) -> bytes:
    """One frame (header included). Raises :class:`~butter.errors.ProtocolError` above :data:`MAX_MESSAGE`."""
    payload = encode_payload({"t": message.KIND, **message.to_wire()})
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return _HEADER.pack(len(payload)) + payload


def decode_message(payload: bytes | memoryview) -> Message:
    """One frame's payload (its header removed) as a message. Raises :class:`~butter.errors.ProtocolError`
    when it is not a valid message. Framing is :class:`butter.wire.FrameDecoder`'s
    (``FrameDecoder(MAX_MESSAGE, parse=decode_message)``)."""
    obj = decode_payload(bytes(payload), MAX_MESSAGE)
    kind = obj.get("t") if isinstance(obj, dict) else None
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    try:
        return cls.from_wire(obj)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise ProtocolError(f"bad {kind} message: {exc}") from None
