"""One message codec for route bodies: a small field kit over msgpack maps.

Every message in Butter (core and plugin route bodies, the ambassador's service protocol, multicast beacons)
is one msgpack map of plain types. Decoding one from a peer means checking every field's type and bounds;
this module is the one place that does it, so that every decoder raises
:class:`~butter.errors.ProtocolError` (answered ``bad-request``) naming the field, and never anything else,
whatever the bytes.

**Readers** check one value: plain functions ``(value, name) -> T`` that raise ``ProtocolError`` naming
``name``. Some are ready (:func:`node_id`, :func:`block_id`, :func:`content_id`, :func:`address`,
:func:`peer_info`, :func:`boolean`); the others are built for their bounds (:func:`integer`, :func:`number`,
:func:`string`, :func:`blob`) or from other readers (:func:`sequence` of items, :func:`entry` for a
fixed-length list such as ``[node id, address, age]``, :meth:`Record.read` for a nested record). A reader
uses ``name`` for its error only: to save building names, it may be called with a short one first and
again with the full one (``body.groups[2].cid``) when it fails.

**Records** are message types: subclasses of :class:`Record` (frozen dataclasses) whose fields say where
they live on the wire and how they are read (:func:`wire`). They encode and decode themselves::

    class Join(Record):
        content_id: str = wire("cid", codec.content_id)
        size: int = wire("size", codec.integer())                       # bytes
        members: tuple[Entry, ...] = wire("members", codec.sequence(ENTRY, max_items=64))

    Join.decode(Join(cid, 10, ()).encode())

Messages of several kinds told apart by a tag field (``{"t": "hello", ...}``) are records with a ``KIND``,
decoded by a :class:`Choice` of them.

**Fields** reads a map by hand, for a body that is not worth a record type::

    fields = Fields.decode(body)                      # ProtocolError unless a msgpack map
    query_id = fields.blob("qid", size=16)
    ttl = fields.integer("ttl", low=0, high=64)       # hops
    hints = fields.boolean("hints", default=True)
    peers = fields.sequence("try", address, max_items=1024, default=[])

A field that is absent or nil is missing: it raises unless a ``default`` is given. A field present with
the wrong type always raises. Keys not read are ignored, so a message may grow optional fields.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Self, TypeVar, dataclass_transform

from .errors import ProtocolError
from .peers import PeerAddress, PeerInfo
from .wire import DEFAULT_MAX_FRAME, decode_payload, encode_payload

__all__ = [
    "MAX_KIND_LENGTH",
    "MAX_NODE_ID_LENGTH",
    "Choice",
    "Fields",
    "Reader",
    "Record",
    "address",
    "blob",
    "block_id",
    "boolean",
    "content_id",
    "decode_map",
    "encode",
    "entry",
    "integer",
    "node_id",
    "number",
    "peer_info",
    "sequence",
    "string",
    "wire",
]

T = TypeVar("T")
R = TypeVar("R", bound="Record")
Reader = Callable[[Any, str], T]  # (value, name) -> T; raises ProtocolError naming `name`

MAX_NODE_ID_LENGTH = 128  # characters
MAX_INT = 2**63 - 1
MAX_KIND_LENGTH = 64  # characters of a tag value
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING: Any = object()
_WIRE = "butter.codec"  # the dataclass field metadata key of a record field

encode = encode_payload


def decode_map(body: bytes, max_size: int = DEFAULT_MAX_FRAME, *, what: str = "body") -> dict[str, Any]:
    """Decode ``body`` (msgpack) and require a map with string keys. Raises :class:`ProtocolError`."""
    return Fields.decode(body, max_size, what=what).raw


# -- readers --------------------------------------------------------------------------------------------------


def node_id(value: Any, name: str = "node id") -> str:
    """A node id: a string of 1 to 128 characters."""
    if type(value) is not str or not 0 < len(value) <= MAX_NODE_ID_LENGTH:
        raise ProtocolError(f"{name} must be a node id (a string of 1 to {MAX_NODE_ID_LENGTH} characters)")
    return value


def block_id(value: Any, name: str = "block id") -> str:
    """A block id: 64 lowercase hex characters (SHA-256)."""
    if type(value) is not str or not _HEX64.fullmatch(value):
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


def boolean(value: Any, name: str = "flag") -> bool:
    """``true`` or ``false`` (no other value stands for one)."""
    if type(value) is not bool:
        raise ProtocolError(f"{name} must be true or false")
    return value


def integer(low: int = 0, high: int = MAX_INT) -> Reader[int]:
    """A reader of integers from ``low`` to ``high`` inclusive (default 0 to 2**63 - 1; booleans refused)."""

    def read(value: Any, name: str) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ProtocolError(f"{name} must be an integer from {low} to {high}")
        return value

    return read


def number(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False) -> Reader[float]:
    """A reader of finite numbers (integer or float) in ``[low, high]`` (``(low, high]`` with ``low_open``),
    returned as ``float``."""
    bounds = f"{'(' if low_open else '['}{low}, {high}]"

    def read(value: Any, name: str) -> float:
        if (type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high
                or (low_open and value == low)):
            raise ProtocolError(f"{name} must be a finite number in {bounds}")
        return float(value)

    return read


def string(*, min_length: int = 0, max_length: int = 1024) -> Reader[str]:
    """A reader of strings of ``min_length`` to ``max_length`` characters (default 0 to 1024)."""

    def read(value: Any, name: str) -> str:
        if type(value) is not str or not min_length <= len(value) <= max_length:
            raise ProtocolError(f"{name} must be a string of {min_length} to {max_length} characters")
        return value

    return read


def blob(*, size: int | None = None, min_length: int = 0, max_length: int = DEFAULT_MAX_FRAME) -> Reader[bytes]:
    """A reader of byte strings of exactly ``size`` bytes, or of ``min_length`` to ``max_length`` bytes."""
    low, high = (size, size) if size is not None else (min_length, max_length)
    expected = f"{size} bytes" if size is not None else f"{min_length} to {max_length} bytes"

    def read(value: Any, name: str) -> bytes:
        if type(value) is not bytes or not low <= len(value) <= high:
            raise ProtocolError(f"{name} must be {expected}")
        return value

    return read


def sequence(item: Reader[T], *, max_items: int, truncate: bool = False) -> Reader[tuple[T, ...]]:
    """A reader of lists of at most ``max_items`` values, each read by ``item``, as a tuple. With
    ``truncate`` a longer list is cut to ``max_items`` instead of refused."""

    def read(value: Any, name: str) -> tuple[T, ...]:
        if type(value) not in (list, tuple) or (len(value) > max_items and not truncate):
            raise ProtocolError(f"{name} must be a list of at most {max_items} items")
        values = value[:max_items] if len(value) > max_items else value
        try:
            return tuple([item(v, name) for v in values])
        except ProtocolError:
            _name_the_item([item] * len(values), values, name)
            raise

    return read


def _name_the_item(readers: list[Reader[Any]], values: Any, name: str) -> None:
    """Read again, naming each item by its position, to raise the error of the first bad one as
    ``name[i]...`` (lists are read without building a name per item: names are for errors)."""
    for i, (reader, v) in enumerate(zip(readers, values, strict=True)):
        reader(v, f"{name}[{i}]")


def entry(*items: Reader[Any]) -> Reader[tuple[Any, ...]]:
    """A reader of fixed-length lists ``[a, b, ...]``, the i-th value read by ``items[i]``, as a tuple
    (e.g. ``entry(node_id, address, number(0))`` for ``[node id, address, age]``)."""
    readers = list(items)

    def read(value: Any, name: str) -> tuple[Any, ...]:
        if type(value) not in (list, tuple) or len(value) != len(readers):
            raise ProtocolError(f"{name} must be a list of {len(readers)} items")
        try:
            return tuple([reader(v, name) for reader, v in zip(readers, value, strict=True)])
        except ProtocolError:
            _name_the_item(readers, value, name)
            raise

    return read


def _same(value: Any, name: str) -> Any:
    return value


# -- reading a map by hand ------------------------------------------------------------------------------------


class Fields:
    """Typed, bounded access to the fields of one decoded msgpack map (see the module docstring).

    ``what`` names the map in error messages (``"body"``; a nested map is ``"body.groups[2]"``). Every
    reader takes the field ``name`` and an optional ``default`` returned when the field is absent or nil;
    without a default a missing field raises :class:`ProtocolError`.
    """

    __slots__ = ("_obj", "what")

    def __init__(self, obj: Any, what: str = "body") -> None:
        if type(obj) is not dict:
            raise ProtocolError(f"{what} must be a map")
        self._obj: dict[Any, Any] = obj
        self.what = what

    @classmethod
    def decode(cls, body: bytes, max_size: int = DEFAULT_MAX_FRAME, *, what: str = "body") -> Fields:
        """Decode ``body`` (msgpack limits from ``max_size`` bytes) and wrap the map. Raises
        :class:`ProtocolError` if it is not one."""
        return cls(decode_payload(body, max_size), what)

    @property
    def raw(self) -> dict[Any, Any]:
        """The decoded map itself."""
        return self._obj

    def has(self, name: str) -> bool:
        """Whether field ``name`` is present and not nil."""
        return self._obj.get(name) is not None

    def value(self, name: str, reader: Reader[T], *, default: Any = _MISSING) -> T:
        """The field read by ``reader(value, name)``, e.g. ``fields.value("cid", content_id)``."""
        found = self._obj.get(name)
        if found is None:
            if default is _MISSING:
                raise ProtocolError(f"{self.what}.{name} is missing")
            return default  # type: ignore[no-any-return]
        try:
            return reader(found, name)  # no name built unless it is needed: read again to name the field in full
        except ProtocolError:
            return reader(found, f"{self.what}.{name}")

    def string(self, name: str, *, min_length: int = 0, max_length: int = 1024, default: Any = _MISSING) -> Any:
        """A string of ``min_length`` to ``max_length`` characters."""
        return self.value(name, string(min_length=min_length, max_length=max_length), default=default)

    def blob(self, name: str, *, size: int | None = None, min_length: int = 0, max_length: int = DEFAULT_MAX_FRAME,
             default: Any = _MISSING) -> Any:
        """Bytes: exactly ``size``, or ``min_length`` to ``max_length``."""
        return self.value(name, blob(size=size, min_length=min_length, max_length=max_length), default=default)

    def integer(self, name: str, *, low: int = 0, high: int = MAX_INT, default: Any = _MISSING) -> Any:
        """An integer from ``low`` to ``high`` (default 0 to 2**63 - 1)."""
        return self.value(name, integer(low, high), default=default)

    def number(self, name: str, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
               default: Any = _MISSING) -> Any:
        """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``), as ``float``."""
        return self.value(name, number(low, high, low_open=low_open), default=default)

    def boolean(self, name: str, *, default: Any = _MISSING) -> Any:
        """``true`` or ``false``."""
        return self.value(name, boolean, default=default)

    def sequence(self, name: str, reader: Reader[T], *, max_items: int, default: Any = _MISSING,
                 truncate: bool = False) -> list[T]:
        """A list of at most ``max_items`` values each read by ``reader``; with ``truncate`` a longer list is
        cut to ``max_items`` instead of refused."""
        if default is not _MISSING and not self.has(name):
            return default  # type: ignore[no-any-return]
        return list(self.value(name, sequence(reader, max_items=max_items, truncate=truncate)))

    def submap(self, name: str, *, default: Any = _MISSING) -> Fields:
        """A nested map, as :class:`Fields` (an absent one, with a default, as ``Fields(default or {})``)."""
        if default is not _MISSING and not self.has(name):
            return Fields(default or {}, f"{self.what}.{name}")
        return Fields(self.value(name, _same), f"{self.what}.{name}")


# -- records --------------------------------------------------------------------------------------------------


def wire(key: str, read: Reader[Any], *, default: Any = _MISSING) -> Any:
    """Declare a field of a :class:`Record`: its ``key`` on the wire and the reader that checks it. With a
    ``default`` the field is optional, both on the wire (absent or nil) and in the constructor."""
    metadata = {_WIRE: (key, read)}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    attr: str
    key: str
    read: Reader[Any]
    default: Any


@dataclass_transform(frozen_default=True, field_specifiers=(wire,))
class Record:
    """A message type: every subclass is a frozen dataclass whose fields are declared with :func:`wire`.

    On the wire a record is a map of its fields' keys (plus ``{TAG: KIND}`` when the class names a ``KIND``);
    values are written as they are, except addresses (``[host, port]``), nested records (maps) and tuples
    (lists). :meth:`decode` reads with msgpack limits from ``MAX_SIZE`` bytes (default 4 MiB) and raises
    :class:`ProtocolError` on anything malformed, naming the field.
    """

    TAG: ClassVar[str] = "t"  # the key naming the kind, for records told apart by a Choice
    KIND: ClassVar[str] = ""  # this record's kind; "" when it is not one of a Choice
    MAX_SIZE: ClassVar[int] = DEFAULT_MAX_FRAME  # bytes; the msgpack limits of decode()
    _specs: ClassVar[tuple[_Spec, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)
        cls._specs = tuple(_spec(f) for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def to_wire(self) -> dict[str, Any]:
        """This record as a map of plain values."""
        out = {spec.key: _plain(getattr(self, spec.attr)) for spec in self._specs}
        return {self.TAG: self.KIND, **out} if self.KIND else out

    def encode(self) -> bytes:
        """This record as msgpack bytes."""
        return encode_payload(self.to_wire())

    @classmethod
    def from_wire(cls, fields: Fields) -> Self:
        """Read a record from a map's fields. Raises :class:`ProtocolError`."""
        obj, args = fields.raw, []
        for spec in cls._specs:  # Fields.value, inlined: the hot path of every decoder
            found = obj.get(spec.key)
            if found is not None:
                try:
                    args.append(spec.read(found, spec.key))
                except ProtocolError:
                    fields.value(spec.key, spec.read)  # raises the error, naming the field in full
                    raise
            elif spec.default is not _MISSING:
                args.append(spec.default)
            else:
                fields.value(spec.key, spec.read)  # raises: missing
        return cls(*args)

    @classmethod
    def read(cls, value: Any, name: str) -> Self:
        """A reader: ``value`` must be this record's map (for records nested in another, or in a list)."""
        return cls.from_wire(Fields(value, name))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        """Decode msgpack ``body``. Raises :class:`ProtocolError` on anything malformed."""
        return cls.from_wire(Fields.decode(body, cls.MAX_SIZE))


def _spec(f: dataclasses.Field[Any]) -> _Spec:
    if _WIRE not in f.metadata:
        raise TypeError(f"record field {f.name} is not declared with butter.codec.wire()")
    key, read = f.metadata[_WIRE]
    return _Spec(f.name, key, read, _MISSING if f.default is dataclasses.MISSING else f.default)


_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is PeerAddress:
        return [value.host, value.port]
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    if isinstance(value, Record):
        return value.to_wire()
    return value


class Choice(Generic[R]):
    """Records of several kinds told apart by their ``TAG`` field (e.g. ``{"t": "hello", ...}``).

    ``Choice(Hello, Welcome, ...)``: every record class names a distinct ``KIND`` under the same ``TAG``
    (``ValueError`` otherwise). :meth:`decode` raises :class:`ProtocolError` on an unknown kind and on a
    malformed record of a known one.
    """

    def __init__(self, *kinds: type[R]) -> None:
        self.tag = kinds[0].TAG if kinds else ""
        self._kinds = {k.KIND: k for k in kinds}
        if not kinds or len(self._kinds) != len(kinds) or any(not k.KIND or k.TAG != self.tag for k in kinds):
            raise ValueError("a Choice needs records with distinct kinds under one tag")

    def from_wire(self, fields: Fields) -> R:
        """The record the map's tag names, read from its fields."""
        kind = fields.string(self.tag, max_length=MAX_KIND_LENGTH)
        cls = self._kinds.get(kind)
        if cls is None:
            raise ProtocolError(f"{fields.what}.{self.tag}: unknown kind {kind!r}")
        return cls.from_wire(Fields(fields.raw, kind))

    def decode(self, body: bytes, max_size: int = DEFAULT_MAX_FRAME) -> R:
        """Decode msgpack ``body`` into one of the records. Raises :class:`ProtocolError`."""
        return self.from_wire(Fields.decode(body, max_size))
