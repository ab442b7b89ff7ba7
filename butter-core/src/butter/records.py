"""Signed mutable records: a name that its owner can point at new values (formats: docs/protocol/records.md).

Sans-IO: this module encodes, signs, verifies and orders records, and keeps the newest one per name
(:class:`RecordBook`); it sends nothing. The format, version 1:

* **Name**: SHA-256 over ``b"butter record name v1\\x00"``, the owner's raw 32-byte Ed25519 public key and
  the label in UTF-8, as 64 lowercase hex characters (:func:`record_name`). One owner key has any number of
  names, one per label; nobody else can make a record for them.
* **Record**: the msgpack map ``{"v": 1, "name": hex, "label": str, "value": str | bytes, "seq": int,
  "exp": int, "key": 32 bytes, "sig": 64 bytes, "del": bool}`` (:class:`SignedRecord`, at most 4 KiB
  encoded). ``value`` is a content id (64 hex), a capability (``bcap1:...``, :mod:`butter.encryption`) or
  inline bytes (at most 1 KiB); ``seq`` is the owner's sequence number; ``exp`` the expiry in Unix seconds;
  ``del`` (optional, default false) marks the name's **deletion record**: the owner's signed word that the
  name is deleted (its value is empty bytes), which replaces older records like any newer one
  (:func:`sign_deletion`).
* **Signature**: Ed25519 (RFC 8032) by the owner over ``b"butter record v1\\x00"`` followed by the msgpack
  list ``[v, name, label, value, seq, exp, key]``, with ``true`` appended for a deletion record
  (:meth:`SignedRecord.signed_bytes`).
* **Order** (:meth:`SignedRecord.replaces`): between two valid records of one name the higher ``seq``
  wins; on equal ``seq`` the later ``exp``, then the greater signature (bytes), so that every replica picks
  the same one.

:meth:`SignedRecord.verify` refuses a record whose name is not its key's and label's, or not the name asked
for (:class:`~butter.errors.RecordNameMismatch`), whose signature does not verify
(:class:`~butter.errors.RecordSignatureInvalid`) or whose expiry has passed
(:class:`~butter.errors.RecordExpired`). Decoding a malformed record raises
:class:`~butter.errors.ProtocolError`, whatever the bytes.

The owner key is an Ed25519 private key: the node's identity (``node.identity.private_key``) or a key file
of its own (:func:`load_owner_key`, :func:`create_owner_key`), which moves between machines with its user.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import codec
from ._identity import read_key_file, signature_valid, write_key_file
from .codec import wire
from .encryption import Capability, is_capability
from .errors import (
    ButterConfigError,
    InvalidCapability,
    ProtocolError,
    RecordExpired,
    RecordNameMismatch,
    RecordSignatureInvalid,
)

__all__ = [
    "MAX_INLINE_VALUE",
    "MAX_LABEL_LENGTH",
    "MAX_RECORD_SIZE",
    "RECORD_VERSION",
    "ROUTE_GET_RECORD",
    "Offer",
    "RecordBook",
    "RecordValue",
    "SignedRecord",
    "create_owner_key",
    "load_owner_key",
    "newest",
    "public_key_bytes",
    "record_name",
    "sign_deletion",
    "sign_record",
]

RECORD_VERSION = 1
MAX_LABEL_LENGTH = 128  # characters
MAX_INLINE_VALUE = 1024  # bytes of an inline value
MAX_RECORD_SIZE = 4096  # bytes of an encoded record
ROUTE_GET_RECORD = "get-record"  # the core route answering a node's newest record of a name: ``{"name": hex}``
_NAME_DOMAIN = b"butter record name v1\x00"
_SIGNING_DOMAIN = b"butter record v1\x00"

RecordValue = str | bytes
"""What a record points at: a content id (64 hex), a capability (``bcap1:...``) or inline bytes (≤ 1 KiB)."""

Offer = Literal["accepted", "duplicate", "stale", "forged", "expired", "full"]
"""What :meth:`RecordBook.offer` did with a record: kept it as the newest of its name (``accepted``), had it
already (``duplicate``), or refused it as older than the one kept (``stale``), with a bad name or signature
(``forged``), past its expiry (``expired``), or because the book holds ``capacity`` names (``full``)."""


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def record_name(public_key: bytes, label: str) -> str:
    """The name of the records that the owner of ``public_key`` (raw, 32 bytes) publishes under ``label``:
    64 lowercase hex characters. Raises ``ValueError`` for a key that is not 32 bytes or a label that is
    not valid Unicode (a lone surrogate)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(_NAME_DOMAIN + public_key + label.encode()).hexdigest()


def _value(value: Any, name: str) -> RecordValue:
    if type(value) is bytes:
        if len(value) > MAX_INLINE_VALUE:
            raise ProtocolError(f"{name} must be at most {MAX_INLINE_VALUE} bytes inline")
        return value
    if type(value) is str:
        if is_capability(value):
            try:
                Capability.parse(value)
            except InvalidCapability as exc:
                raise ProtocolError(f"{name}: {exc}") from None
            return value
        return codec.content_id(value, name)
    raise ProtocolError(f"{name} must be a content id, a capability or bytes")


class SignedRecord(codec.Record):
    """One version of a named value, signed by its owner (see the module docstring for the format).

    Build one with :func:`sign_record`; read one from the network with :meth:`decode` (raises
    :class:`~butter.errors.ProtocolError`), then :meth:`verify` it before use.
    """

    MAX_SIZE = MAX_RECORD_SIZE

    version: int = wire("v", codec.integer(RECORD_VERSION, RECORD_VERSION))
    name: str = wire("name", codec.content_id)
    label: str = wire("label", codec.string(max_length=MAX_LABEL_LENGTH))
    value: RecordValue = wire("value", _value)
    sequence: int = wire("seq", codec.integer())
    expires_at: int = wire("exp", codec.integer())  # Unix seconds
    public_key: bytes = wire("key", codec.blob(size=32))
    signature: bytes = wire("sig", codec.blob(size=64))
    deleted: bool = wire("del", codec.boolean, default=False)

    def signed_bytes(self) -> bytes:
        """What the owner signs: the domain ``b"butter record v1\\x00"``, then the msgpack list of every
        field but the signature, in the order ``[v, name, label, value, seq, exp, key]``, with ``True``
        appended for a deletion record (so a signature over one never verifies the other)."""
        fields: list[object] = [self.version, self.name, self.label, self.value, self.sequence, self.expires_at,
                                self.public_key]
        if self.deleted:
            fields.append(True)
        return _SIGNING_DOMAIN + codec.encode(fields)

    def verify(self, *, now: float, name: str | None = None) -> SignedRecord:
        """Return this record if it may be used at time ``now`` (Unix seconds), as the record of ``name``
        when given. Raises :class:`~butter.errors.RecordNameMismatch` (its name is not its key's and
        label's, or not ``name``), :class:`~butter.errors.RecordSignatureInvalid` (forged or altered) or
        :class:`~butter.errors.RecordExpired` (``expires_at <= now``), checked in that order."""
        if record_name(self.public_key, self.label) != self.name:
            raise RecordNameMismatch(f"record {self.name[:16]}: its name is not the hash of its key and label")
        if name is not None and name != self.name:
            raise RecordNameMismatch(f"asked for record {name[:16]}, got one for {self.name[:16]}")
        if not signature_valid(self.public_key, self.signature, self.signed_bytes()):
            raise RecordSignatureInvalid(
                f"record {self.name[:16]} seq {self.sequence}: the signature does not verify (forged, altered, or "
                "a key of small order)"
            )
        if self.expires_at <= now:
            raise RecordExpired(f"record {self.name[:16]} seq {self.sequence} expired at {self.expires_at}")
        return self

    def replaces(self, other: SignedRecord) -> bool:
        """Whether this record wins over ``other`` of the same name (both verified): a higher sequence; on
        equal sequences a later expiry, then the greater signature. ``False`` for another name."""
        if other.name != self.name:
            return False
        return (self.sequence, self.expires_at, self.signature) > (other.sequence, other.expires_at, other.signature)


def sign_record(
    owner: Ed25519PrivateKey, label: str, value: RecordValue, *, sequence: int, expires_at: int,
    deleted: bool = False,
) -> SignedRecord:
    """A record of ``owner``'s name for ``label`` pointing at ``value``, with ``sequence`` (0 to 2**63 - 1)
    and ``expires_at`` (Unix seconds), signed; with ``deleted`` a deletion record (use :func:`sign_deletion`).
    Raises ``ValueError`` for a label longer than 128 characters, a value that is not a content id, a
    capability or at most 1 KiB of bytes, or a sequence or expiry out of range."""
    public_key = public_key_bytes(owner)
    try:  # the decoder's checks, so that every record signed here is one every peer accepts
        unsigned = SignedRecord(RECORD_VERSION, record_name(public_key, label), label, value, sequence,
                                expires_at, public_key, bytes(64), deleted)
        SignedRecord.decode(unsigned.encode())
    except (ProtocolError, UnicodeEncodeError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot sign this record: {exc}") from None
    return dataclasses.replace(unsigned, signature=owner.sign(unsigned.signed_bytes()))


def sign_deletion(owner: Ed25519PrivateKey, label: str, *, sequence: int, expires_at: int) -> SignedRecord:
    """The deletion record of ``owner``'s name for ``label``: ``deleted`` set, value empty bytes, with
    ``sequence`` (above every earlier record's, so it replaces them) and ``expires_at`` (Unix seconds: holders
    keep it, and refuse the name's older records, until then). Raises ``ValueError`` as :func:`sign_record`."""
    return sign_record(owner, label, b"", sequence=sequence, expires_at=expires_at, deleted=True)


def newest(records: Iterable[SignedRecord]) -> SignedRecord | None:
    """The record that :meth:`SignedRecord.replaces` every other of ``records`` (all verified, of one
    name), or ``None`` when there are none."""
    best: SignedRecord | None = None
    for record in records:
        if best is None or record.replaces(best):
            best = record
    return best


def load_owner_key(path: Path) -> Ed25519PrivateKey:
    """The owner key in file ``path`` (PEM, PKCS #8; a node's ``node_key.pem`` is one). Raises
    :class:`~butter.errors.ButterConfigError` when the file is missing, unreadable or not an Ed25519 key."""
    return read_key_file(Path(path))


def create_owner_key(path: Path) -> Ed25519PrivateKey:
    """Create a new owner key in file ``path`` (mode 0600) and return it. Raises
    :class:`~butter.errors.ButterConfigError` when the file exists (an owner key is never overwritten) or
    cannot be written."""
    key = Ed25519PrivateKey.generate()
    if not write_key_file(Path(path), key):
        raise ButterConfigError(f"key file {path} already exists: it is not overwritten")
    return key


class RecordBook:
    """The newest valid record of each name a holder keeps, and counts of what it refused.

    ``capacity`` is the number of names kept (default 10,000); offers of a new name beyond it are refused
    ``full``. ``counts`` maps each :data:`Offer` outcome to how often it happened.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.counts: dict[Offer, int] = dict.fromkeys(("accepted", "duplicate", "stale", "forged", "expired",
                                                       "full"), 0)
        self._records: dict[str, SignedRecord] = {}

    def offer(self, record: SignedRecord, *, now: float, name: str | None = None) -> Offer:
        """Verify ``record`` at ``now`` (Unix seconds), as the record of ``name`` when given (one of another
        name is ``forged``), and keep it if it is newer than the one kept for its name; returns (and counts)
        the outcome. Never raises for a bad record: it is counted."""
        try:
            record.verify(now=now, name=name)
        except RecordExpired:
            return self._count("expired")
        except (RecordNameMismatch, RecordSignatureInvalid):
            return self._count("forged")
        kept = self._records.get(record.name)
        if kept is not None and kept.expires_at <= now:
            del self._records[record.name]
            kept = None
        if kept is not None and not record.replaces(kept):
            return self._count("duplicate" if kept == record else "stale")
        if kept is None and len(self._records) >= self.capacity:
            self.prune(now=now)
            if len(self._records) >= self.capacity:
                return self._count("full")
        self._records[record.name] = record
        return self._count("accepted")

    def get(self, name: str, *, now: float) -> SignedRecord | None:
        """The newest record kept for ``name``, unless it has expired by ``now`` (Unix seconds)."""
        record = self._records.get(name)
        return record if record is not None and record.expires_at > now else None

    def sequences(self) -> dict[str, int]:
        """Name -> sequence of each record kept (what a holder advertises so replicas converge)."""
        return {name: record.sequence for name, record in self._records.items()}

    def discard(self, name: str) -> None:
        """Forget the record kept for ``name``, if any (a cached copy gone stale)."""
        self._records.pop(name, None)

    def prune(self, *, now: float) -> int:
        """Drop the records expired by ``now``; returns how many."""
        expired = [name for name, record in self._records.items() if record.expires_at <= now]
        for name in expired:
            del self._records[name]
        return len(expired)

    def __len__(self) -> int:
        return len(self._records)

    def _count(self, outcome: Offer) -> Offer:
        self.counts[outcome] += 1
        return outcome
