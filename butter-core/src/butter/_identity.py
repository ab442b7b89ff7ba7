"""A node's persistent identity: an Ed25519 key pair kept in its data directory.

The node id is the first 16 bytes of SHA-256 over the raw 32-byte public key, as 32 hex characters. Other
modules use it to tell nodes apart (PCG leader choice, duplicate suppression), never the address, which can
change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ButterConfigError, map_exceptions

__all__ = ["KEY_FILE", "Identity", "node_id_from_public_key", "read_key_file", "write_key_file"]

KEY_FILE = "node_key.pem"


def node_id_from_public_key(public_bytes: bytes) -> str:
    return hashlib.sha256(public_bytes).hexdigest()[:32]


@dataclass(frozen=True)
class Identity:
    """An Ed25519 private key and the node id derived from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def node_id(self) -> str:
        return node_id_from_public_key(self.public_bytes)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh, unsaved identity (for tests, simulation and ephemeral nodes)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """Load ``data_dir/node_key.pem``, creating it (mode 0600) on first use.

        Raises :class:`ButterConfigError` if the file exists but is not an Ed25519 private key, or the
        directory cannot be written.
        """
        directory = Path(data_dir)
        if directory.exists() and not directory.is_dir():
            raise ButterConfigError(f"data_dir {directory} is not a directory (it is a file): name a directory")
        path = directory / KEY_FILE
        if path.exists():
            return cls(read_key_file(path))
        identity = cls.generate()
        with map_exceptions({OSError: ButterConfigError}, f"cannot create data_dir {directory}"):
            directory.mkdir(parents=True, exist_ok=True)  # FileExistsError too: a file where a parent should be
        if not write_key_file(path, identity.private_key):  # another process created it first: use theirs
            return cls.load_or_create(directory)
        return identity


def read_key_file(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM (PKCS #8, unencrypted) file ``path``. Raises
    :class:`ButterConfigError` when it is missing, unreadable or another kind of key."""
    if not path.exists():
        raise ButterConfigError(f"key file {path} does not exist")
    with map_exceptions({(ValueError, TypeError, OSError): ButterConfigError}, f"cannot read key file {path}"):
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ButterConfigError(f"key file {path} is not an Ed25519 private key")
    return key


def write_key_file(path: Path, key: Ed25519PrivateKey) -> bool:
    """Write ``key`` to a new file ``path`` (PEM, PKCS #8, mode 0600); ``False`` when the file already exists
    (it is left alone). Raises :class:`ButterConfigError` when it cannot be written."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with map_exceptions({OSError: ButterConfigError}, f"cannot write key file {path}"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return True


_P = 2**255 - 19  # the field prime of Ed25519's curve
_Y8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})  # the y of the 8 points of order 1, 2, 4 and 8


def small_order(public_key: bytes) -> bool:
    """Whether the raw 32-byte Ed25519 public key is one of the 8 points of small order (in any encoding). A
    signature "by" such a key verifies for many messages with no private key at all (RFC 8032's cofactorless
    check, as OpenSSL does it, accepts the all-zero signature under the all-zero key for about one message in
    four), so it proves nothing."""
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    return y % _P in _SMALL_ORDER_Y


def signature_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is an Ed25519 signature (RFC 8032) of ``message`` by ``public_key`` (32 raw
    bytes): ``False`` for a malformed key, a key of small order (:func:`small_order`) or a signature that
    does not verify. The one signature check of records, tombstones and document revisions."""
    if small_order(public_key):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
