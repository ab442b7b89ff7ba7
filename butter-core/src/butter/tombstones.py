"""Signed tombstones: the owner of an item deletes it (the rules: docs/protocol/delete.md).

Sans-IO: this module encodes, signs and verifies tombstones, and keeps the valid ones until they expire
(:class:`TombstoneBook`); it sends nothing. The format, version 1:

* **Tombstone**: the msgpack map ``{"v": 1, "cid": hex, "at": int, "exp": int, "key": 32 bytes, "sig":
  64 bytes}`` (:class:`Tombstone`, at most 512 bytes encoded): item ``cid`` deleted at ``at`` (Unix seconds),
  the tombstone kept until ``exp`` (Unix seconds, after ``at``), by the owner's raw Ed25519 public ``key``.
* **Signature**: Ed25519 (RFC 8032) by the owner over ``b"butter tombstone v1\\x00"`` followed by the msgpack
  list ``[v, cid, at, exp, key]`` (:meth:`Tombstone.signed_bytes`).
* **Owner**: only the key that the item's manifest names as its ``owner`` (:class:`~butter.blocks.Manifest`;
  the content id commits to it) may delete the item. An item stored without an owner cannot be deleted.
  A multi-writer document is deleted the same way: its id (64 hex) is the ``cid``, and its genesis
  revision (the document id commits to it) names the owner, its creator (:mod:`butter.documents`).

:meth:`Tombstone.verify` refuses, with :class:`~butter.errors.TombstoneRejected`, a tombstone for another
item, one whose key is not the manifest's owner (or an item without one), a bad signature, or an expired
one. Decoding a malformed tombstone raises :class:`~butter.errors.ProtocolError`, whatever the bytes. The
owner key is the one records use (:func:`butter.records.load_owner_key`; default the node's identity key).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from ._identity import signature_valid
from .codec import wire
from .errors import ProtocolError, TombstoneRejected
from .records import public_key_bytes

__all__ = [
    "DEFAULT_TOMBSTONE_EXPIRY",
    "MAX_TOMBSTONE_SIZE",
    "ROUTE_DELETE",
    "TOMBSTONE_VERSION",
    "Offer",
    "Owned",
    "Tombstone",
    "TombstoneBook",
    "delete_body",
    "sign_tombstone",
]

TOMBSTONE_VERSION = 1
MAX_TOMBSTONE_SIZE = 512  # bytes of an encoded tombstone (a valid one is ~200)
DEFAULT_TOMBSTONE_EXPIRY = 30 * 86_400  # seconds a tombstone is kept: longer than a holder is expected to be away
ROUTE_DELETE = "delete-item"  # the core route a holder takes a tombstone on: body ``{"tombstone": bytes}``
_SIGNING_DOMAIN = b"butter tombstone v1\x00"

Offer = Literal["accepted", "duplicate", "forged", "expired", "unowned", "unknown", "full"]
"""What a holder did with a tombstone (:meth:`TombstoneBook.offer`, the ``delete-item`` reply): kept it and
dropped the item (``accepted``), had it already (``duplicate``), refused it for a bad signature or another
key than the owner's (``forged``), past its expiry (``expired``), because the item has no owner
(``unowned``), because this node holds no manifest to check it against (``unknown``), or because the book
holds ``capacity`` tombstones (``full``)."""


class Owned(Protocol):
    """What a tombstone is checked against: an item's :class:`~butter.blocks.Manifest`, or a document's
    :class:`~butter.documents.DocumentState`; ``owner`` is the raw 32-byte Ed25519 key that may delete it
    (``None``: nobody may)."""

    @property
    def owner(self) -> bytes | None: ...


class Tombstone(codec.Record):
    """The owner's signed word that item ``content_id`` is deleted (see the module docstring for the format).

    Build one with :func:`sign_tombstone`; read one from the network with :meth:`decode` (raises
    :class:`~butter.errors.ProtocolError`), then :meth:`verify` it against the item's manifest before use.
    """

    MAX_SIZE = MAX_TOMBSTONE_SIZE

    version: int = wire("v", codec.integer(TOMBSTONE_VERSION, TOMBSTONE_VERSION))
    content_id: str = wire("cid", codec.content_id)
    deleted_at: int = wire("at", codec.integer())  # Unix seconds
    expires_at: int = wire("exp", codec.integer())  # Unix seconds
    public_key: bytes = wire("key", codec.blob(size=32))
    signature: bytes = wire("sig", codec.blob(size=64))

    def signed_bytes(self) -> bytes:
        """What the owner signs: the domain ``b"butter tombstone v1\\x00"``, then the msgpack list of every
        field but the signature, in the order ``[v, cid, at, exp, key]``."""
        fields = [self.version, self.content_id, self.deleted_at, self.expires_at, self.public_key]
        return _SIGNING_DOMAIN + codec.encode(fields)

    def check_signature(self) -> Tombstone:
        """Return this tombstone if its signature verifies under its own key (whoever that is). Raises
        :class:`~butter.errors.TombstoneRejected` otherwise. A querier that no longer finds the manifest can
        check no more than this; a holder checks the owner too (:meth:`verify`)."""
        if not signature_valid(self.public_key, self.signature, self.signed_bytes()):
            raise TombstoneRejected(
                f"tombstone of item {self.content_id[:16]}: the signature does not verify (forged, altered, or a "
                "key of small order)")
        return self

    def verify(self, content_id: str, manifest: Owned, *, now: float) -> Tombstone:
        """Return this tombstone if it deletes item ``content_id``, whose manifest is ``manifest``, at time
        ``now`` (Unix seconds). Raises :class:`~butter.errors.TombstoneRejected` when it names another item,
        the item has no owner, its key is not the owner's, its signature does not verify, or it has expired
        (``expires_at <= now``), checked in that order."""
        if self.content_id != content_id:
            raise TombstoneRejected(f"a tombstone of item {self.content_id[:16]} offered for {content_id[:16]}")
        if manifest.owner is None:
            raise TombstoneRejected(f"item {content_id[:16]} has no owner: it cannot be deleted")
        if manifest.owner != self.public_key:
            raise TombstoneRejected(f"item {content_id[:16]}: the tombstone's key is not the item's owner")
        self.check_signature()
        if self.expires_at <= now:
            raise TombstoneRejected(f"tombstone of item {content_id[:16]} expired at {self.expires_at}")
        return self


def sign_tombstone(owner: Ed25519PrivateKey, content_id: str, *, deleted_at: int, expires_at: int) -> Tombstone:
    """A tombstone of item ``content_id`` by ``owner``, deleted at ``deleted_at`` and kept until ``expires_at``
    (Unix seconds, 0 to 2**63 - 1, ``expires_at`` after ``deleted_at``), signed. Raises ``ValueError`` for a
    content id that is not 64 lowercase hex characters or times out of range."""
    if not 0 <= deleted_at < expires_at:
        raise ValueError(f"a tombstone expires after it is made: at {deleted_at}, exp {expires_at}")
    key = public_key_bytes(owner)
    try:  # the decoder's checks, so that every tombstone signed here is one every peer accepts
        unsigned = Tombstone(TOMBSTONE_VERSION, content_id, deleted_at, expires_at, key, bytes(64))
        Tombstone.decode(unsigned.encode())
    except (ProtocolError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot sign this tombstone: {exc}") from None
    return dataclasses.replace(unsigned, signature=owner.sign(unsigned.signed_bytes()))


def delete_body(tombstone: Tombstone) -> bytes:
    """The body of route ``delete-item`` (:data:`ROUTE_DELETE`): ``{"tombstone": bytes}``."""
    return codec.encode({"tombstone": tombstone.encode()})


class TombstoneBook:
    """The valid tombstones a node keeps, one per item, until they expire, and counts of what it refused.

    ``capacity`` is the number of tombstones kept (default 10,000, ~2 MB); offers beyond it are refused
    ``full`` (the item is then not deleted here). ``counts`` maps each :data:`Offer` outcome to how often it
    happened.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.counts: dict[Offer, int] = dict.fromkeys(
            ("accepted", "duplicate", "forged", "expired", "unowned", "unknown", "full"), 0)
        self._tombstones: dict[str, Tombstone] = {}

    def offer(self, tombstone: Tombstone, manifest: Owned | None, *, now: float) -> Offer:
        """Verify ``tombstone`` against the item's ``manifest`` (``None``: this node holds none) at ``now``
        (Unix seconds) and keep it; returns (and counts) the outcome. A tombstone already kept is a
        ``duplicate`` without a manifest. Never raises for a bad tombstone: it is counted."""
        kept = self.get(tombstone.content_id, now=now)
        if kept is not None and kept == tombstone:
            return self._count("duplicate")
        if manifest is None:
            return self._count("unknown")
        if manifest.owner is None:
            return self._count("unowned")
        try:
            tombstone.verify(tombstone.content_id, manifest, now=now)
        except TombstoneRejected:
            owners = manifest.owner == tombstone.public_key
            try:
                signed = owners and bool(tombstone.check_signature())
            except TombstoneRejected:
                signed = False
            return self._count("expired" if signed and tombstone.expires_at <= now else "forged")
        if kept is not None:  # another valid one for the item (deleted again): keep the later expiry
            if tombstone.expires_at > kept.expires_at:
                self._tombstones[tombstone.content_id] = tombstone
            return self._count("duplicate")
        if len(self._tombstones) >= self.capacity:
            self.prune(now=now)
            if len(self._tombstones) >= self.capacity:
                return self._count("full")
        self._tombstones[tombstone.content_id] = tombstone
        return self._count("accepted")

    def get(self, content_id: str, *, now: float) -> Tombstone | None:
        """The tombstone kept for ``content_id``, unless it has expired by ``now`` (Unix seconds)."""
        tombstone = self._tombstones.get(content_id)
        return tombstone if tombstone is not None and tombstone.expires_at > now else None

    def prune(self, *, now: float) -> int:
        """Drop the tombstones expired by ``now``; returns how many."""
        expired = [cid for cid, tombstone in self._tombstones.items() if tombstone.expires_at <= now]
        for cid in expired:
            del self._tombstones[cid]
        return len(expired)

    def __len__(self) -> int:
        return len(self._tombstones)

    def _count(self, outcome: Offer) -> Offer:
        self.counts[outcome] += 1
        return outcome
