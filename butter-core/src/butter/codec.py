"""One message codec for route bodies: a small field kit over msgpack maps.

Every route body in Butter (core routes and every plugin's) is one msgpack map of plain types. Decoding a
body from a peer means checking every field's type and bounds; this module is the one place that does it,
so that every decoder raises :class:`~butter.errors.ProtocolError` (answered ``bad-request``) naming the
field, and never anything else, whatever the bytes::

    fields = Fields.decode(body)                      # ProtocolError unless a msgpack map
    query_id = fields.blob("qid", size=16)
    content_id = fields.content_id("cid")
    ttl = fields.integer("ttl", low=0, high=64)
    hints = fields.boolean("hints", default=True)
    peers = fields.sequence("try", address, max_items=1024, default=[])

Readers for list items and nested values (:func:`address`, :func:`node_id`, :func:`content_id`, ...) are
plain functions ``(value, name) -> T`` usable with :meth:`Fields.sequence`. Encoding needs no kit: build the map
and call :func:`encode` (:func:`butter.wire.encode_payload`).

A missing field raises unless a ``default`` is given; a field present with the wrong type always raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ProtocolError
from .peers import PeerAddress, PeerInfo
from .wire import DEFAULT_MAX_FRAME, decode_payload, encode_payload

__all__ = [
    "MAX_NODE_ID_LENGTH",
    "Fields",
    "address",
    "block_id",
    "content_id",
    "decode_map",
    "encode",
    "node_id",
    "peer_info",
]

T = TypeVar("T")
MAX_NODE_ID_LENGTH = 128  # characters
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING: Any = object()

encode = encode_payload


def decode_map(body: bytes, max_size: int = DEFAULT_MAX_FRAME, *, what: str = "body") -> dict[str, Any]:
    """Decode ``body`` (msgpack) and require a map with string keys. Raises :class:`ProtocolError`."""
    obj = decode_payload(body, max_size)
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a map")
    return obj


def node_id(value: Any, name: str = "node id") -> str:
    """A node id: a non-empty string of at most 128 characters."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NODE_ID_LENGTH:
        raise ProtocolError(f"{name} must be a string of 1 to {MAX_NODE_ID_LENGTH} characters")
    return value


def block_id(value: Any, name: str = "block id") -> str:
    """A block id: 64 lowercase hex characters (SHA-256)."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ProtocolError(f"{name} must be 64 lowercase hex characters")
    return value


def content_id(value: Any, name: str = "content id") -> str:
    """A content id (the block id of an item's manifest): 64 lowercase hex characters."""
    return block_id(value, name)


def address(value: Any, name: str = "address") -> PeerAddress:
    """A network address ``[host, port]`` (:meth:`PeerAddress.from_wire`)."""
    try:
        return PeerAddress.from_wire(value)
    except ValueError as exc:
        raise ProtocolError(f"{name}: {exc}") from None


def peer_info(value: Any, name: str = "peer") -> PeerInfo:
    """A peer record ``{id, addr, quality}`` (:meth:`PeerInfo.from_wire`; quality values are clamped)."""
    try:
        return PeerInfo.from_wire(value)
    except ValueError as exc:
        raise ProtocolError(f"{name}: {exc}") from None


class Fields:
    """Typed, bounded access to the fields of one decoded msgpack map (see the module docstring).

    Every reader takes the field ``name`` and an optional ``default`` returned when the field is absent
    (or, for optional values, ``nil``); without a default a missing field raises :class:`ProtocolError`.
    """

    __slots__ = ("_obj", "_what")

    def __init__(self, obj: Any, what: str = "body") -> None:
        if not isinstance(obj, dict):
            raise ProtocolError(f"{what} must be a map")
        self._obj: dict[Any, Any] = obj
        self._what = what

    @classmethod
    def decode(cls, body: bytes, max_size: int = DEFAULT_MAX_FRAME, *, what: str = "body") -> Fields:
        """Decode ``body`` and wrap the map. Raises :class:`ProtocolError` if it is not one."""
        return cls(decode_payload(body, max_size), what)

    @property
    def raw(self) -> dict[Any, Any]:
        """The decoded map itself."""
        return self._obj

    def has(self, name: str) -> bool:
        return name in self._obj

    def _get(self, name: str, default: Any) -> Any:
        if name in self._obj and self._obj[name] is not None:
            return self._obj[name]
        if default is _MISSING:
            raise ProtocolError(f"{self._what}: field {name!r} is missing")
        return default

    def _fail(self, name: str, expected: str) -> ProtocolError:
        return ProtocolError(f"{self._what}: field {name!r} must be {expected}")

    def string(self, name: str, *, max_length: int = 1024, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or len(value) > max_length:
            raise self._fail(name, f"a string of at most {max_length} characters")
        return value

    def blob(self, name: str, *, size: int | None = None, max_length: int = DEFAULT_MAX_FRAME,
              default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bytes) or len(value) > max_length or (size is not None and len(value) != size):
            raise self._fail(name, f"{size} bytes" if size is not None else f"at most {max_length} bytes")
        return value

    def integer(self, name: str, *, low: int = 0, high: int = 2**63 - 1, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self._fail(name, f"an integer from {low} to {high}")
        return value

    def number(self, name: str, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
              default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
                or not low <= value <= high or (low_open and value == low)):
            raise self._fail(name, f"a number in {'(' if low_open else '['}{low}, {high}]")
        return float(value)

    def boolean(self, name: str, *, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def value(self, name: str, reader: Callable[[Any, str], T], *, default: Any = _MISSING) -> T:
        """The field read by ``reader(value, name)``, e.g. ``fields.value("cid", content_id)``."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value  # type: ignore[no-any-return]
        return reader(value, f"{self._what}: field {name!r}")

    def sequence(self, name: str, reader: Callable[[Any, str], T], *, max_items: int, default: Any = _MISSING,
             truncate: bool = False) -> list[T]:
        """A list of at most ``max_items`` values each read by ``reader``; with ``truncate`` a longer list is
        cut to ``max_items`` instead of refused."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value  # type: ignore[no-any-return]
        if not isinstance(value, list | tuple) or (len(value) > max_items and not truncate):
            raise self._fail(name, f"a list of at most {max_items} items")
        return [reader(item, f"{self._what}: {name}[{i}]") for i, item in enumerate(value[:max_items])]

    def submap(self, name: str, *, default: Any = _MISSING) -> Fields:
        """A nested map, as :class:`Fields`."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return Fields(value if isinstance(value, dict) else {}, f"{self._what}.{name}")
        return Fields(value, f"{self._what}.{name}")
