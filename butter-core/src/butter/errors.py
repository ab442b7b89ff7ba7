"""Butter's exception tree, rooted at :class:`ButterError`.

Library exceptions (``OSError``, ``anyio.*``, ``msgpack.*``) are translated at each boundary into one of
these, so a caller of Butter's API only ever needs to catch ``ButterError`` or one of its children.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

import anyio

__all__ = [
    "CONNECT_ERRORS",
    "NETWORK_ERRORS",
    "BlockCorrupted",
    "BlockNotFound",
    "ButterConfigError",
    "ButterError",
    "DecryptionFailed",
    "DocumentDeleted",
    "DocumentNotFound",
    "ErrorMapping",
    "FrameTooLarge",
    "IncompleteItem",
    "InvalidCapability",
    "InvalidManifest",
    "ItemDeleted",
    "ItemNotFound",
    "ItemTooLarge",
    "PeerGone",
    "PeerIdentityMismatch",
    "PeerUnreachable",
    "ProtocolError",
    "RecordDeleted",
    "RecordExpired",
    "RecordNameMismatch",
    "RecordNotFound",
    "RecordRejected",
    "RecordSignatureInvalid",
    "RemoteError",
    "RequestTimeout",
    "RevisionRefused",
    "RouteError",
    "StoreError",
    "StoreFull",
    "TombstoneRejected",
    "TransportBusy",
    "TransportError",
    "describe_network_error",
    "map_exceptions",
]


class ButterError(Exception):
    """Base class of every error Butter raises on purpose."""


class ButterConfigError(ButterError):
    """A setting is invalid, or a configured plugin is missing or broken."""


class ProtocolError(ButterError):
    """A peer sent bytes that break the wire protocol (docs/protocol/index.md).

    ``code`` is the machine-readable error code that is also sent back to the peer in an error reply.
    """

    code = "protocol-error"


class FrameTooLarge(ProtocolError):
    """A frame's announced length exceeds the configured maximum (``max_frame``, bytes)."""

    code = "frame-too-large"


class TransportError(ButterError):
    """Base class for failures to exchange a request with a peer."""


class PeerUnreachable(TransportError):
    """The peer could not be reached: connection refused, reset, closed mid-request, or its handshake failed.
    Apart from :class:`PeerGone`, this says nothing certain about the peer: a busy peer (or a busy node)
    fails handshakes and loses connections too, so a failure detector should wait for silence (PCG's
    ``member_timeout``, host management's ``max_failures``) rather than forget the peer at once."""


class PeerGone(PeerUnreachable):
    """The peer known at an address is no longer there: nothing accepts connections (TCP: connection refused;
    the memory transport: no listener), or another node answers (:class:`PeerIdentityMismatch`). It is not
    merely slow: modules may forget it at once."""


class PeerIdentityMismatch(PeerGone):
    """The peer at an address authenticated as another node than the one expected there (the secure channel
    refused the connection). ``expected`` and ``actual`` are node ids (hex)."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class RequestTimeout(TransportError):
    """The peer did not answer within the timeout (seconds) given to the request."""


class TransportBusy(TransportError):
    """A local resource limit was reached (e.g. the transport's ``max_connections`` with every connection
    busy): the request was not sent. Nothing is known about the peer; retry later or raise the limit."""


class RemoteError(ButterError):
    """The peer answered with an error reply.

    ``code`` is one of ``unknown-route``, ``handler-error``, ``frame-too-large``, ``protocol-error``,
    ``overloaded`` or a code chosen by an application handler raising :class:`RouteError`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RouteError(ButterError):
    """Raised by a route handler to send a deliberate error reply (``code``, ``message``) to the caller.

    Any other exception escaping a handler is logged and answered with code ``handler-error``.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# -- content addressing and block stores (butter.blocks, butter.store) ---------------------------------


class InvalidManifest(ProtocolError):
    """A manifest block is malformed or inconsistent: wrong types, an address that is not 64
    lowercase hex characters, a negative size, a block count that does not match ``size`` and ``block_size``,
    more blocks than allowed, or a block whose length contradicts the manifest."""

    code = "invalid-manifest"


class ItemTooLarge(ButterError):
    """Content would need more blocks than a manifest may list (``max_blocks``); nothing was produced."""


class BlockCorrupted(ButterError):
    """Block data does not hash to its address (SHA-256); the data was discarded, never returned.

    ``address`` is the hex address the data was supposed to have.
    """

    def __init__(self, address: str, message: str = "") -> None:
        super().__init__(message or f"block {address} does not match its address")
        self.address = address


class IncompleteItem(ButterError):
    """An item cannot be reassembled because blocks are missing; ``missing`` lists their addresses in
    manifest order (each once)."""

    def __init__(self, missing: tuple[str, ...], message: str = "") -> None:
        super().__init__(message or f"{len(missing)} block(s) missing, first {missing[0] if missing else '-'}")
        self.missing = missing


class BlockNotFound(IncompleteItem):
    """One block that was needed (``address``) could not be found; ``missing`` is ``(address,)``."""

    def __init__(self, address: str, message: str = "") -> None:
        super().__init__((address,), message or f"block {address} not found")
        self.address = address


class StoreError(ButterError):
    """The local block store failed (I/O error, closed store, unreadable database file)."""


class StoreFull(StoreError):
    """The block store has too little room; nothing was stored.

    ``needed`` (bytes asked) and ``free`` (bytes free) are set when known; without a ``message`` the text
    is built from them: ``StoreFull(needed=4096, free=100)``.
    """

    def __init__(self, message: str = "", *, needed: int | None = None, free: int | None = None) -> None:
        super().__init__(message or f"block store full: {needed} bytes asked, {free} bytes free")
        self.needed = needed
        self.free = free


class ItemNotFound(ButterError):
    """A retrieval ended without the item: the search found no holder, every holder found failed to supply
    it, or the retrieval's deadline passed first.

    How far it searched, as structured fields (zero when the driver does not know):

    * ``content_id``: the id searched for (as given).
    * ``hosts_asked``: distinct nodes this node sent a search request to.
    * ``rings``: search rounds run (an expanding-ring search runs several; a flood one).
    * ``hops``: the farthest hop from this node that the search reached.
    * ``holders``: holders found (0: nobody answered that it holds the item).
    * ``timed_out``: the retrieval's deadline (``timeout``, seconds) ended the search.
    * ``seconds``: how long the retrieval ran.

    Without a ``message`` the text is built from the fields:
    ``ItemNotFound(content_id=cid, hosts_asked=12, rings=2, hops=4)``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        content_id: str = "",
        hosts_asked: int = 0,
        rings: int = 0,
        hops: int = 0,
        holders: int = 0,
        timed_out: bool = False,
        seconds: float = 0.0,
    ) -> None:
        self.content_id = content_id
        self.hosts_asked = hosts_asked
        self.rings = rings
        self.hops = hops
        self.holders = holders
        self.timed_out = timed_out
        self.seconds = seconds
        super().__init__(message or self.describe())

    def describe(self) -> str:
        """The fields in words, e.g. ``"item 3f2a… not found: asked 12 node(s) in 2 ring(s), reaching 4
        hop(s), in 1.2 s"``."""
        outcome = "not found"
        if self.holders:
            outcome = f"not retrieved from the {self.holders} holder(s) found"
        if self.timed_out:
            outcome += " before the deadline"
        return (f"item {self.content_id} {outcome}: asked {self.hosts_asked} node(s) in {self.rings} ring(s), "
                f"reaching {self.hops} hop(s), in {self.seconds:.1f} s")


class ItemDeleted(ItemNotFound):
    """The item was deleted by its owner: a signed tombstone (:mod:`butter.tombstones`) says so, and no holder
    served it. ``tombstone`` is the tombstone's encoding. An :class:`ItemNotFound`, so code that handles a
    missing item handles a deleted one."""

    def __init__(self, content_id: str, tombstone: bytes, message: str = "") -> None:
        super().__init__(message or f"item {content_id} was deleted by its owner", content_id=content_id)
        self.tombstone = tombstone


# -- encrypted items and signed records (butter.encryption, butter.records) --------------------------------


class InvalidCapability(ButterError, ValueError):
    """A string is not a capability ``bcap1:<content id>:<key>`` (:mod:`butter.encryption`): wrong prefix,
    content id or key. The message says which part is wrong."""


class DecryptionFailed(ButterError):
    """An encrypted item did not authenticate under the capability's key: the key is not the item's, or the
    ciphertext was altered. Nothing of it is returned."""


class RecordRejected(ProtocolError):
    """A signed record (:mod:`butter.records`) failed verification; nothing of it may be used. The
    subclasses say why; a malformed record raises plain :class:`ProtocolError` when decoded."""

    code = "record-rejected"


class RecordSignatureInvalid(RecordRejected):
    """The record's signature does not verify under the public key it carries: it was forged or altered."""

    code = "bad-signature"


class RecordNameMismatch(RecordRejected):
    """The record's name is not the hash of its public key and label, or it is not the name asked for."""

    code = "wrong-name"


class RecordNotFound(ButterError):
    """No peer asked (nor this node) holds a valid, unexpired record of the name; ``name`` is it (hex)."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(message or f"no valid record of name {name}")
        self.name = name


class RecordDeleted(RecordNotFound):
    """The newest valid record of the name is its owner's deletion record (:func:`butter.records.sign_deletion`):
    the name is deleted. ``record`` is that deletion record (a :class:`~butter.records.SignedRecord`)."""

    def __init__(self, name: str, record: object, message: str = "") -> None:
        super().__init__(name, message or f"name {name} was deleted by its owner")
        self.record = record


class RecordExpired(RecordRejected):
    """The record's expiry (``expires_at``, Unix seconds) has passed."""

    code = "record-expired"


class TombstoneRejected(ProtocolError):
    """A tombstone (:mod:`butter.tombstones`) may not be used: its signature does not verify, its key is not
    the owner the item's manifest names (or the item has no owner), it names another item, or it has expired.
    The message says which. A malformed tombstone raises plain :class:`ProtocolError` when decoded."""

    code = "tombstone-rejected"


# -- multi-writer documents (butter.documents) ---------------------------------------------------------------


class DocumentNotFound(ButterError):
    """Neither this node nor a peer asked knows the document ``document_id`` (64 hex); ``answered`` is how
    many peers answered (0: none could be reached, so the document may well exist)."""

    def __init__(self, document_id: str, message: str = "", *, answered: int = 0) -> None:
        super().__init__(message or f"document {document_id} not found: {answered} peer(s) answered")
        self.document_id = document_id
        self.answered = answered


class DocumentDeleted(DocumentNotFound):
    """The document's creator deleted it: a signed tombstone (:mod:`butter.tombstones`) says so.
    ``tombstone`` is its encoding. A :class:`DocumentNotFound`, so code that handles a missing document
    handles a deleted one."""

    def __init__(self, document_id: str, tombstone: bytes, message: str = "") -> None:
        super().__init__(document_id, message or f"document {document_id} was deleted by its creator")
        self.tombstone = tombstone


class RevisionRefused(ProtocolError):
    """A document revision (:mod:`butter.documents`) may not be used: its signature does not verify (forged or
    altered), its author is not on the document's writers list, its clock is not its parents' highest plus
    one, a non-genesis revision names no parents, or it is too large. ``reason`` says which, in words."""

    code = "revision-refused"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


NETWORK_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable, name resolution (socket.gaierror), anyio.ConnectionFailed
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BusyResourceError,
)
"""The library exceptions that mean "the connection failed": a plugin doing its own socket I/O catches these at
its boundary and raises :class:`PeerUnreachable` (or another :class:`TransportError`) instead. Only failures
of the network: a bug (``ValueError``, ``TypeError``) is never mistaken for an unreachable peer."""

CONNECT_ERRORS: tuple[type[Exception], ...] = (*NETWORK_ERRORS, UnicodeError)
"""What opening a connection to a :class:`~butter.peers.PeerAddress` can raise: :data:`NETWORK_ERRORS`, and
``UnicodeError`` for a host name that cannot be encoded for resolution (IDNA: an empty label or one longer
than 63 characters; peer addresses come from the network, so such a name is a peer that cannot be reached,
like one that does not resolve)."""


def describe_network_error(exc: BaseException) -> str:
    """A short human reason for a failure, e.g. ``"Connection refused"`` or ``"connection closed by the
    peer"`` for one of :data:`NETWORK_ERRORS`, the message (or the type's name) for any other exception; for
    error messages and logs."""
    if isinstance(exc, anyio.EndOfStream):
        return "connection closed by the peer"
    if isinstance(exc, anyio.ClosedResourceError):
        return "connection closed"
    if isinstance(exc, anyio.BrokenResourceError):
        cause = exc.__cause__
        return f"connection broken ({describe_network_error(cause)})" if cause is not None else "connection broken"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


ErrorMapping = Mapping[type[Exception] | tuple[type[Exception], ...], Callable[[str], Exception]]
"""Library exception class (or tuple of classes) -> what to raise instead: a :class:`ButterError` class, or any
callable taking the message (``functools.partial(RouteError, "store-full")``)."""


class map_exceptions:  # lower case: a context manager used like a function, as contextlib.suppress
    """Translate the library exceptions escaping a block into Butter's, once per operation (httpcore's idea)::

        with map_exceptions({sqlite3.Error: StoreError}, f"sqlite block store {path}"):
            ...  # every statement of the operation

    An exception matching a key of ``mapping`` (the first key in order wins) is replaced by
    ``mapping[key](message)``, where ``message`` is ``"{context}: {reason}"`` (only the reason when
    ``context`` is empty) and ``reason`` is :func:`describe_network_error`'s; the original is kept as its
    ``__cause__``. Anything else, cancellation included, passes through unchanged.

    Meant for an operation's boundary (opening a store, a listener, a key file); a reader called per item on
    a hot path keeps a plain ``try``/``except``, which costs nothing until it raises (this costs ~1 µs a use).
    """

    __slots__ = ("_context", "_mapping")

    def __init__(self, mapping: ErrorMapping, context: str = "") -> None:
        self._mapping = mapping
        self._context = context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not isinstance(exc, Exception):  # nothing raised, or cancellation
            return
        for source, target in self._mapping.items():
            if isinstance(exc, source):
                reason = describe_network_error(exc)
                raise target(f"{self._context}: {reason}" if self._context else reason) from exc
