"""The ambassador's service protocol, sans-IO: messages and their framing (no sockets here).

An ambassador listens on a **service port** of its own, beside the node's transport, because this protocol
needs what a request/response route cannot give: the address a connection comes from as the ambassador
sees it (the *observed* address, as in libp2p identify), server-pushed messages on a long-lived control
connection (relay reservations), and connections that turn into raw byte pipes (relay circuits).

Rules this module keeps:

* A frame is a 4-byte big-endian length then one msgpack map ``{"t": kind, ...fields}``; a frame is at most
  :data:`MAX_MESSAGE` bytes (64 KiB): the protocol only carries addresses and small records.
* Every message is a :class:`butter.codec.Record` (a frozen dataclass declaring each field's key and
  reader); :func:`encode_message` turns one into a frame and :func:`decode_message` a frame's payload back
  into one (raising :class:`~butter.errors.ProtocolError`, after which the connection should be closed).
  Framing received bytes is the one generic framer's, :class:`butter.wire.FrameDecoder` (see ``_io.Channel``).
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
from typing import ClassVar

from butter import codec
from butter.codec import Choice, Record, wire
from butter.errors import ProtocolError
from butter.peers import PeerAddress

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
    "ServiceInfo",
    "Welcome",
    "decode_message",
    "encode_message",
]

MAX_MESSAGE = 64 * 1024  # bytes of one frame's payload
MAX_INTRODUCTIONS = 64  # entries of one welcome
MAX_TOKEN = 64  # bytes of a reservation's or a punch's token
_HEADER = struct.Struct(">I")

COUNT = codec.integer()  # circuit and punch numbers, bytes
TOKEN = codec.blob(max_length=MAX_TOKEN)
NAME = codec.string(min_length=1, max_length=codec.MAX_NODE_ID_LENGTH)  # subnet keys, refusal codes


class ServiceInfo(Record):
    """The reply of route ``ambassador`` (on the node's transport): the ambassador's service ``port``."""

    port: int = wire("service", codec.integer(1, 65535))


class Introduction(Record):
    """One peer of another subnetwork: its ``node_id``, the ``address`` to dial and whether that address is
    ``relayed`` (an ambassador's relay port) rather than the peer's own."""

    node_id: str = wire("id", codec.node_id)
    address: PeerAddress = wire("addr", codec.address)
    relayed: bool = wire("relayed", codec.boolean, default=False)


class Hello(Record):
    """Publish: node ``node_id`` listens on ``local``; ``port`` is the port it believes is open on its public
    address (forwarded or mapped; default its listening port); it wants up to ``k`` introductions."""

    KIND: ClassVar[str] = "hello"
    node_id: str = wire("id", codec.node_id)
    local: PeerAddress = wire("local", codec.address)
    port: int = wire("port", codec.integer(1, 65535))
    k: int = wire("k", codec.integer(0, MAX_INTRODUCTIONS), default=8)


class Welcome(Record):
    """The first answer to :class:`Hello`, sent at once: the connection's ``observed`` address, the
    ``subnet`` key the ambassador files the node under, and ``peers`` of other subnetworks."""

    KIND: ClassVar[str] = "welcome"
    observed: PeerAddress = wire("observed", codec.address)
    subnet: str = wire("subnet", NAME)
    peers: tuple[Introduction, ...] = wire(
        "peers", codec.sequence(Introduction.read, max_items=MAX_INTRODUCTIONS), default=()
    )


class Dialed(Record):
    """The second answer to :class:`Hello`, after the dial-back: the public address at which the ambassador
    reached the node (``reachable``), or ``None``: not reachable from outside."""

    KIND: ClassVar[str] = "dialed"
    reachable: PeerAddress | None = wire("reachable", codec.address, default=None)


class Reserve(Record):
    """Ask for a relay reservation for node ``node_id`` (listening on ``local``)."""

    KIND: ClassVar[str] = "reserve"
    node_id: str = wire("id", codec.node_id)
    local: PeerAddress = wire("local", codec.address)


class Reserved(Record):
    """A reservation: peers dial ``relayed``; ``token`` proves a later data connection belongs to it; each
    circuit lasts at most ``duration`` seconds and ``data`` bytes (both directions together)."""

    KIND: ClassVar[str] = "reserved"
    relayed: PeerAddress = wire("relayed", codec.address)
    token: bytes = wire("token", TOKEN)
    duration: float = wire("duration", codec.number(0.0, 1e12))
    data: int = wire("data", COUNT)


class Open(Record):
    """Ambassador → reservation holder: a peer dialled the relayed address; open circuit ``circuit``."""

    KIND: ClassVar[str] = "open"
    circuit: int = wire("circuit", COUNT)


class Accept(Record):
    """First message of a data connection: it carries ``circuit`` of the reservation holding ``token``."""

    KIND: ClassVar[str] = "accept"
    circuit: int = wire("circuit", COUNT)
    token: bytes = wire("token", TOKEN)


class Ping(Record):
    """Keepalive on a control connection (either way); carries nothing."""

    KIND: ClassVar[str] = "ping"


class Punch(Record):
    """Initiator: node ``node_id`` wants a direct connection to the peer relayed at ``target``."""

    KIND: ClassVar[str] = "punch"
    node_id: str = wire("id", codec.node_id)
    target: PeerAddress = wire("target", codec.address)


class PunchCall(Record):
    """Ambassador → target (on its control connection): answer hole punch ``punch`` from a new connection."""

    KIND: ClassVar[str] = "punch-call"
    punch: int = wire("punch", COUNT)


class PunchReady(Record):
    """Target → ambassador, on a new connection whose source port it will punch from."""

    KIND: ClassVar[str] = "punch-ready"
    punch: int = wire("punch", COUNT)
    token: bytes = wire("token", TOKEN)


class PunchGo(Record):
    """Ambassador → both sides: connect to ``peer`` (its observed address) from the port of this connection."""

    KIND: ClassVar[str] = "punch-go"
    peer: PeerAddress = wire("peer", codec.address)


class Refused(Record):
    """A request was refused: ``code`` (e.g. ``"reservations-full"``, ``"no-reservation"``) and a ``message``."""

    KIND: ClassVar[str] = "refused"
    code: str = wire("code", NAME)
    message: str = wire("message", codec.string(max_length=MAX_MESSAGE), default="")


Message = (
    Hello | Welcome | Dialed | Reserve | Reserved | Open | Accept | Ping | Punch | PunchCall | PunchReady | PunchGo
    | Refused
)
MESSAGES = Choice[Message](
    Hello, Welcome, Dialed, Reserve, Reserved, Open, Accept, Ping, Punch, PunchCall, PunchReady, PunchGo, Refused
)


def encode_message(message: Message) -> bytes:
    """One frame (header included). Raises :class:`~butter.errors.ProtocolError` above :data:`MAX_MESSAGE`."""
    payload = message.encode()
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return _HEADER.pack(len(payload)) + payload


def decode_message(payload: bytes | memoryview) -> Message:
    """One frame's payload (its header removed) as a message. Raises :class:`~butter.errors.ProtocolError`
    when it is not a valid message. Framing is :class:`butter.wire.FrameDecoder`'s
    (``FrameDecoder(MAX_MESSAGE, parse=decode_message)``)."""
    return MESSAGES.decode(bytes(payload), MAX_MESSAGE)
