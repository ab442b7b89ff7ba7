"""Encrypted items and the capabilities that read them (formats: docs/protocol/records.md).

An encrypted item is an ordinary item whose bytes are a ciphertext: holders store, replicate and serve it
like any other, and never see the plaintext or its media type. The format, version 1:

* **Key**: 32 random bytes, fresh for every item (``os.urandom``), used for that one item only.
* **Cipher**: ChaCha20-Poly1305 (RFC 8439, from ``cryptography``) over the whole plaintext, with the
  all-zero 12-byte nonce and the associated data ``b"butter encrypted item v1"``. A fixed nonce is safe
  because a key never encrypts a second message; storing the same bytes twice gives two unrelated items.
* **Stored item**: the ciphertext (plaintext length + 16 bytes of tag), cut into blocks like any item; its
  manifest says ``application/octet-stream``. The content id is the manifest's block id, as always, so
  every block is still verified against its id before decryption.
* **Capability**: ``bcap1:<content id>:<key>``, the content id as 64 lowercase hex characters and the key
  as 43 characters of unpadded base64url (RFC 4648 §5). Whoever holds the string can read the item;
  whoever holds only the content id (every holder) cannot.

The tag authenticates the item as a whole, so an encrypted item is decrypted only once all of it has
arrived: :func:`decrypt` returns all of the plaintext or raises :class:`~butter.errors.DecryptionFailed`.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import DecryptionFailed, InvalidCapability

__all__ = [
    "ASSOCIATED_DATA",
    "CAPABILITY_PREFIX",
    "KEY_SIZE",
    "TAG_SIZE",
    "Capability",
    "decrypt",
    "encrypt",
    "is_capability",
]

CAPABILITY_PREFIX = "bcap1:"
KEY_SIZE = 32  # bytes
TAG_SIZE = 16  # bytes the ciphertext adds to the plaintext
ASSOCIATED_DATA = b"butter encrypted item v1"
_NONCE = bytes(12)  # safe: each key encrypts exactly one item
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")


def _key_text(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Capability:
    """What reads an encrypted item: its ``content_id`` (64 hex characters) and its 32-byte ``key``.

    ``str(capability)`` is the one-string form ``bcap1:<content id>:<key>``; :meth:`parse` reads it back.
    """

    content_id: str
    key: bytes

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.content_id) or len(self.key) != KEY_SIZE:
            raise InvalidCapability("a capability needs a content id (64 lowercase hex) and a 32-byte key")

    def __str__(self) -> str:
        return f"{CAPABILITY_PREFIX}{self.content_id}:{_key_text(self.key)}"

    def __repr__(self) -> str:  # the key is a secret: keep it out of logs and tracebacks
        return f"Capability(content_id={self.content_id!r}, key=<{KEY_SIZE} bytes>)"

    @classmethod
    def parse(cls, text: str) -> Capability:
        """Read ``bcap1:<content id>:<key>``. Only the canonical form is accepted (the one :class:`str`
        writes), so one capability has one spelling. Raises :class:`~butter.errors.InvalidCapability`
        naming the part that is wrong."""
        if not is_capability(text):
            raise InvalidCapability(f"a capability starts with {CAPABILITY_PREFIX!r}")
        parts = text[len(CAPABILITY_PREFIX):].split(":")
        if len(parts) != 2:
            raise InvalidCapability("a capability is bcap1:<content id>:<key>, with exactly two colons")
        content_id, key_text = parts
        if not _HEX64.fullmatch(content_id):
            raise InvalidCapability("the capability's content id must be 64 lowercase hex characters")
        if not _KEY_TEXT.fullmatch(key_text):
            raise InvalidCapability("the capability's key must be 43 characters of unpadded base64url")
        key = base64.urlsafe_b64decode(key_text + "=")
        if _key_text(key) != key_text:
            raise InvalidCapability("the capability's key is not in canonical base64url")
        return cls(content_id, key)


def is_capability(text: str) -> bool:
    """Whether ``text`` claims to be a capability (starts with ``bcap1:``), as opposed to a content id; it
    may still be malformed (:meth:`Capability.parse` says)."""
    return text.startswith(CAPABILITY_PREFIX)


def encrypt(plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` under a fresh key; returns ``(ciphertext, key)``, the ciphertext
    :data:`TAG_SIZE` bytes longer than the plaintext and the key :data:`KEY_SIZE` bytes."""
    key = os.urandom(KEY_SIZE)
    return ChaCha20Poly1305(key).encrypt(_NONCE, bytes(plaintext), ASSOCIATED_DATA), key


def decrypt(ciphertext: bytes, key: bytes) -> bytes:
    """The plaintext of ``ciphertext`` under ``key`` (32 bytes). Raises
    :class:`~butter.errors.DecryptionFailed` when it does not authenticate (a wrong key, altered or
    truncated ciphertext)."""
    try:
        return ChaCha20Poly1305(key).decrypt(_NONCE, bytes(ciphertext), ASSOCIATED_DATA)
    except (InvalidTag, ValueError):
        raise DecryptionFailed(
            "the encrypted item does not authenticate under this capability's key: a wrong key, or altered data"
        ) from None
