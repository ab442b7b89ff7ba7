"""Butter's wire format, sans-IO: msgpack envelopes in length-prefixed frames.

Rules this module keeps (in prose: docs/protocol/index.md; it replaces the original's 0x1A terminator, which
truncated any binary body holding byte 26):

* A frame is a 4-byte big-endian unsigned length followed by that many bytes of one msgpack map.
* A request is ``{"v": 1, "id": int, "route": str, "body": bytes}``.
* A reply is ``{"v": 1, "id": int, "ok": true, "body": bytes}`` or
  ``{"v": 1, "id": int, "ok": false, "error": {"code": str, "message": str}}``.
* Requests on one connection are multiplexed: a reply carries the ``id`` of its request.
* A frame whose announced length exceeds ``max_frame`` is never buffered: its bytes are discarded as they
  arrive and a :class:`FrameRejected` event is produced at once. A frame that is not a valid envelope also
  becomes a :class:`FrameRejected`; framing stays intact, so the connection can go on.

Use :func:`encode` to turn a message into bytes and :class:`FrameDecoder` to turn bytes into events. Nothing
here does I/O or raises on bad input from the network: errors are events. :class:`FrameDecoder` is the one
length-prefixed framer: given another ``parse`` function it frames any protocol's payloads (the ambassador's
service messages). Request ids, the reserved id 0 and the rules of a connection live one level up, in
:mod:`butter.channel`.

A :class:`Request` may carry a :class:`Caller`: who sent it, as the receiving transport knows it. That is
never on the wire (:func:`encode` leaves it out, the decoder never sets it); the transport attaches it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import msgpack

from .errors import FrameTooLarge, ProtocolError
from .peers import PeerAddress

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "MAX_ROUTE_LENGTH",
    "PROTOCOL_VERSION",
    "Caller",
    "ErrorInfo",
    "Event",
    "FrameDecoder",
    "FrameRejected",
    "Message",
    "Reply",
    "Request",
    "decode_payload",
    "encode",
    "encode_payload",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 4 * 1024 * 1024  # bytes
MAX_ROUTE_LENGTH = 128  # characters
MAX_REQUEST_ID = 2**63 - 1
T = TypeVar("T")
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as the transport that received it knows it. Never on the wire.

    * ``node_id``: the sender's node id (hex) **authenticated by the transport**: the TCP transport's secure
      channel proved that the peer holds this Ed25519 key (TLS 1.3, mutual authentication). ``None`` when
      the transport authenticated nobody (plaintext TCP, a transport without identities): then nothing is
      known about who sent the request, and a node id written in the body is only a claim.
    * ``address``: where the request came from, **not authenticated**: for TCP the remote socket address
      (the peer's IP and an ephemeral port, not the address it listens on; ``127.0.0.1`` for a connection
      relayed by an ambassador); for the memory transport the sender's own address. ``None`` when unknown.
    """

    node_id: str | None = None
    address: PeerAddress | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A request for ``route`` carrying ``body`` (bytes); ``id`` is unique among one connection's requests.

    ``caller`` (default ``None``: unknown) is who sent it, attached by the receiving transport; it is not
    part of the wire format, so :func:`encode` ignores it and :class:`FrameDecoder` leaves it ``None``.
    """

    id: int
    route: str
    body: bytes
    caller: Caller | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a request failed: a machine-readable ``code`` and a human ``message``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to request ``id``: ``body`` when it succeeded, ``error`` when it did not."""

    id: int
    body: bytes = b""
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame was discarded; ``request_id`` is its id when one could be read, else ``None``."""

    error: ProtocolError
    request_id: int | None = None


Message = Request | Reply
Event = Request | Reply | FrameRejected


def encode_payload(obj: Any) -> bytes:
    """msgpack-encode a route body made of plain types (dict, list, str, bytes, int, float, bool, None)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def decode_payload(data: bytes, max_size: int = DEFAULT_MAX_FRAME) -> Any:
    """Decode a msgpack route body with the same limits as frames.

    Raises :class:`ProtocolError` when ``data`` is not exactly one valid msgpack object.
    """
    try:
        return msgpack.unpackb(data, **_unpack_limits(max_size))
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, FormatError, ...)
        raise ProtocolError(f"undecodable body: {type(exc).__name__}: {exc}") from None


def encode(message: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Serialise ``message`` into one frame (header included).

    Raises :class:`FrameTooLarge` when the frame would exceed ``max_frame`` bytes, so a sender refuses an
    oversized message locally instead of having the peer refuse it.
    """
    obj: dict[str, Any]
    if isinstance(message, Request):
        obj = {"v": PROTOCOL_VERSION, "id": message.id, "route": message.route, "body": message.body}
    elif message.error is None:
        obj = {"v": PROTOCOL_VERSION, "id": message.id, "ok": True, "body": message.body}
    else:
        error = {"code": message.error.code, "message": message.error.message}
        obj = {"v": PROTOCOL_VERSION, "id": message.id, "ok": False, "error": error}
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(payload) > max_frame:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds the maximum of {max_frame} bytes")
    return _HEADER.pack(len(payload)) + payload


def _unpack_limits(max_size: int) -> dict[str, Any]:
    return {
        "raw": False,
        "strict_map_key": True,
        "max_bin_len": max_size,
        "max_str_len": max_size,
        "max_array_len": max_size // 2,
        "max_map_len": max_size // 4,
        "max_ext_len": 0,
    }


class FrameDecoder(Generic[T]):
    """Incremental decoder: :meth:`feed` bytes in, take events out with :meth:`next_event`.

    ``max_frame`` (bytes, default 4 MiB) bounds one frame's payload; the decoder holds at most one frame
    plus what was fed beyond it. A frame whose header announces more is a :class:`FrameRejected`
    (:class:`~butter.errors.FrameTooLarge`) at once and its bytes are discarded as they arrive.

    ``parse`` turns one complete payload (a :class:`memoryview` valid only during the call) into an event;
    it may return a :class:`FrameRejected` or raise :class:`~butter.errors.ProtocolError`, which becomes a
    :class:`FrameRejected`. The default reads Butter's envelopes into a :class:`Request` or :class:`Reply`
    (a :class:`FrameRejected` carries the request id when one could be read); another protocol framed the
    same way passes its own (``FrameDecoder(65536, parse=decode_message)``).
    Framing survives any rejected frame.
    """

    @overload
    def __init__(self: FrameDecoder[Message], max_frame: int = DEFAULT_MAX_FRAME) -> None: ...

    @overload
    def __init__(self, max_frame: int, parse: Callable[[memoryview], T | FrameRejected]) -> None: ...

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, parse: Callable[[memoryview], Any] | None = None
    ) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1 byte")
        self.max_frame = max_frame
        self._parse: Callable[[memoryview], Any] = parse if parse is not None else _EnvelopeParser(max_frame)
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of their frame."""
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """Whether a frame has begun and not yet been completed (or, if oversized, fully discarded)."""
        return bool(self._skip or self._buffer)

    def feed(self, data: bytes) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data

    def next_event(self) -> T | FrameRejected | None:
        """The next complete event, or ``None`` when more bytes are needed."""
        if self._skip or len(self._buffer) < HEADER_SIZE:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self.max_frame:
            available = len(self._buffer) - HEADER_SIZE
            dropped = min(length, available)
            del self._buffer[: HEADER_SIZE + dropped]
            self._skip = length - dropped
            return FrameRejected(
                FrameTooLarge(f"frame of {length} bytes exceeds the maximum of {self.max_frame} bytes")
            )
        if len(self._buffer) < HEADER_SIZE + length:
            return None
        with memoryview(self._buffer) as view, view[HEADER_SIZE : HEADER_SIZE + length] as payload:
            try:
                event: T | FrameRejected = self._parse(payload)  # no copy: the parser reads the buffer in place
            except ProtocolError as exc:
                event = FrameRejected(exc)
        del self._buffer[: HEADER_SIZE + length]
        return event

    def events(self) -> list[T | FrameRejected]:
        """Every complete event available now."""
        out: list[T | FrameRejected] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    def rest(self) -> bytes:
        """Take the bytes fed beyond the last complete frame (a protocol that turns into a raw byte pipe
        after some frame hands them over); the decoder is left empty."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class _EnvelopeParser:
    """Reads one payload as a Butter envelope, with the msgpack limits of one ``max_frame`` computed once."""

    __slots__ = ("_limits",)

    def __init__(self, max_frame: int) -> None:
        self._limits = _unpack_limits(max_frame)

    def __call__(self, payload: memoryview) -> Event:
        try:
            obj = msgpack.unpackb(payload, **self._limits)
        except Exception as exc:  # any msgpack failure is the peer's fault, never ours
            return FrameRejected(ProtocolError(f"undecodable frame: {type(exc).__name__}"))
        if not isinstance(obj, dict):
            return FrameRejected(ProtocolError("envelope is not a map"))
        request_id = obj.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id <= MAX_REQUEST_ID:
            return FrameRejected(ProtocolError("envelope has no valid id"))
        if obj.get("v") != PROTOCOL_VERSION:
            return FrameRejected(ProtocolError(f"unsupported protocol version {obj.get('v')!r}"), request_id)
        try:
            return _envelope(obj, request_id)
        except ProtocolError as exc:
            return FrameRejected(exc, request_id)


def _envelope(obj: dict[str, Any], request_id: int) -> Message:
    if "route" in obj:
        route, body = obj["route"], obj.get("body")
        if not isinstance(route, str) or not 0 < len(route) <= MAX_ROUTE_LENGTH:
            raise ProtocolError("route must be a string of 1 to 128 characters")
        if not isinstance(body, bytes):
            raise ProtocolError("request body must be bytes")
        return Request(request_id, route, body)
    ok = obj.get("ok")
    if ok is True:
        body = obj.get("body")
        if not isinstance(body, bytes):
            raise ProtocolError("reply body must be bytes")
        return Reply(request_id, body)
    if ok is False:
        error = obj.get("error")
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), str)
            or not isinstance(error.get("message"), str)
        ):
            raise ProtocolError("error reply must carry {code: str, message: str}")
        return Reply(request_id, error=ErrorInfo(error["code"], error["message"]))
    raise ProtocolError("envelope is neither a request nor a reply")
