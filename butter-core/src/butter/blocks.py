"""Content addressing: blocks, manifests and content ids (the wire shapes: docs/protocol/index.md).

Rules this module keeps:

* Content is cut into blocks of ``block_size`` bytes (default 4,096); the last block is shorter, never
  zero-padded, so an item comes back exactly as it went in (the original PCG overlay padded and lost the
  length). Empty content has no blocks.
* A block's **address** is the SHA-256 of its bytes as 64 lowercase hex characters (:data:`BlockId`).
* A **manifest** is itself a block: the msgpack map ``{"v": 1, "size": bytes, "media_type": str,
  "block_size": bytes, "blocks": [addresses in order]}``. It records what the recommendation asks each
  chunk to carry (``total_parts`` is ``len(blocks)``, ``original_length`` is ``size``) once, for the whole
  item, so that blocks can be fetched in parallel from different peers. An item stored with an owner adds
  ``"owner": 32 bytes``, the owner's raw Ed25519 public key, after ``blocks``: the content id commits to it,
  and only that key may delete the item (:mod:`butter.tombstones`). A manifest without it has no owner and
  cannot be deleted.
* An item's **content id** (:data:`ContentId`) is the address of its manifest block. It names the item and
  lets a reader check everything it receives: the manifest against the content id, each block against the
  address the manifest lists, and each block's length against ``size`` and ``block_size``.
* Data read back is verified before it is returned; a mismatch raises :class:`~butter.errors.BlockCorrupted`
  and the bad bytes are dropped, never handed to the caller.

Use :func:`chunk` to turn bytes into an :class:`Item`, :func:`assemble` (all blocks at hand) or
:func:`iter_assemble` / :func:`aiter_assemble` (one block at a time from a getter, for large items) to get
the bytes back, and :meth:`Manifest.decode` / :func:`load_manifest` to read a manifest from the network.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from .errors import (
    BlockCorrupted,
    BlockNotFound,
    IncompleteItem,
    InvalidManifest,
    ItemTooLarge,
    ProtocolError,
    map_exceptions,
)
from .wire import decode_payload, encode_payload

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MAX_BLOCKS",
    "DEFAULT_MEDIA_TYPE",
    "MANIFEST_VERSION",
    "MAX_BLOCK_SIZE",
    "MAX_MEDIA_TYPE_LENGTH",
    "Block",
    "BlockId",
    "ContentId",
    "Item",
    "Manifest",
    "aiter_assemble",
    "assemble",
    "block_id_of",
    "chunk",
    "is_block_id",
    "iter_assemble",
    "load_manifest",
    "verify",
]

BlockId: TypeAlias = str
"""SHA-256 of a block's bytes, 64 lowercase hex characters."""

ContentId: TypeAlias = str
"""The :data:`BlockId` of an item's manifest block; the id handed to users."""

MANIFEST_VERSION = 1
DEFAULT_BLOCK_SIZE = 4096  # bytes (the original's 4,096-byte chunk size)
MAX_BLOCK_SIZE = 1024 * 1024  # bytes; the largest ``block_size`` settings accept
DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_MEDIA_TYPE_LENGTH = 255  # characters
# Each address costs 66 bytes of msgpack, so a manifest of 60,000 blocks is ~3.96 MB and still fits in the
# default 4 MiB frame. At 4,096-byte blocks that is items of up to ~234 MiB.
DEFAULT_MAX_BLOCKS = 60_000

_ADDRESS = re.compile(r"[0-9a-f]{64}")


def block_id_of(data: bytes | bytearray | memoryview) -> BlockId:
    """The address of ``data``: its SHA-256 as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def verify(address: BlockId, data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` hashes to ``address``. Never raises: a malformed address simply does not match."""
    return isinstance(address, str) and block_id_of(data) == address


def is_block_id(value: object) -> bool:
    """Whether ``value`` is a well-formed :data:`BlockId` (a str of 64 lowercase hex characters)."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Block:
    """One block: its ``address`` and its ``data`` (at most ``block_size`` bytes)."""

    address: BlockId
    data: bytes


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an item is made of: ``size`` (bytes), ``media_type``, ``block_size`` (bytes), the
    block addresses in order (``blocks``; an address may repeat when content repeats) and the ``owner``'s raw
    32-byte Ed25519 public key (``None``: no owner, the item cannot be deleted).

    Construction checks the fields and their consistency: ``len(blocks)`` must be ``ceil(size /
    block_size)``. Raises :class:`~butter.errors.InvalidManifest` otherwise.
    """

    size: int
    blocks: tuple[BlockId, ...]
    block_size: int = DEFAULT_BLOCK_SIZE
    media_type: str = DEFAULT_MEDIA_TYPE
    owner: bytes | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.size) or self.size < 0:
            raise InvalidManifest(f"manifest size must be a non-negative integer, got {self.size!r}")
        if not _is_int(self.block_size) or not 1 <= self.block_size <= MAX_BLOCK_SIZE:
            raise InvalidManifest(
                f"manifest block_size must be an integer from 1 to {MAX_BLOCK_SIZE} bytes, got {self.block_size!r}"
            )
        if not isinstance(self.media_type, str) or not 0 < len(self.media_type) <= MAX_MEDIA_TYPE_LENGTH:
            raise InvalidManifest(f"manifest media_type must be a string of 1 to {MAX_MEDIA_TYPE_LENGTH} characters")
        if not isinstance(self.blocks, tuple):
            raise InvalidManifest("manifest blocks must be a tuple of addresses")
        if self.owner is not None and (type(self.owner) is not bytes or len(self.owner) != 32):
            raise InvalidManifest("manifest owner must be a 32-byte Ed25519 public key")
        for index, address in enumerate(self.blocks):
            if not is_block_id(address):
                raise InvalidManifest(f"manifest block {index} is not 64 lowercase hex characters: {address!r:.80}")
        expected = -(-self.size // self.block_size)
        if len(self.blocks) != expected:
            raise InvalidManifest(
                f"manifest lists {len(self.blocks)} blocks but {self.size} bytes in blocks of {self.block_size} "
                f"bytes need {expected}"
            )

    def __repr__(self) -> str:  # a manifest may list 60,000 addresses: keep logs readable
        return (
            f"Manifest(size={self.size}, blocks=<{len(self.blocks)} addresses>, block_size={self.block_size}, "
            f"media_type={self.media_type!r}, owner={self.owner.hex() if self.owner else None})"
        )

    def block_length(self, index: int) -> int:
        """Length in bytes of block ``index`` (every block is ``block_size`` bytes except the last)."""
        if not 0 <= index < len(self.blocks):
            raise IndexError(f"block index {index} out of range for {len(self.blocks)} blocks")
        return min(self.block_size, self.size - index * self.block_size)

    def encode(self) -> bytes:
        """The manifest block's bytes (msgpack map, keys in a fixed order, so one manifest has one encoding;
        ``owner`` last and only when set, so a manifest without one encodes as before it existed)."""
        fields: dict[str, Any] = {
            "v": MANIFEST_VERSION,
            "size": self.size,
            "media_type": self.media_type,
            "block_size": self.block_size,
            "blocks": list(self.blocks),
        }
        if self.owner is not None:
            fields["owner"] = self.owner
        return encode_payload(fields)

    @classmethod
    def decode(cls, data: bytes, *, max_blocks: int = DEFAULT_MAX_BLOCKS) -> Manifest:
        """Parse a manifest block. Unknown keys are ignored, so optional fields can be added within v1.

        Raises :class:`~butter.errors.InvalidManifest` (a :class:`~butter.errors.ProtocolError`) with the
        reason for anything but a valid version-1 manifest listing at most ``max_blocks`` blocks. It never
        raises anything else, whatever ``data`` holds. It does not check the bytes against a content id;
        :func:`load_manifest` does.
        """
        with map_exceptions({ProtocolError: InvalidManifest}, "manifest is not msgpack"):
            obj = decode_payload(bytes(data))
        if not isinstance(obj, dict):
            raise InvalidManifest(f"manifest must be a map, got {type(obj).__name__}")
        version = obj.get("v")
        if not _is_int(version) or version != MANIFEST_VERSION:
            raise InvalidManifest(f"unsupported manifest version {version!r:.40}")
        blocks = obj.get("blocks")
        if not isinstance(blocks, list):
            raise InvalidManifest("manifest blocks must be a list of addresses")
        if len(blocks) > max_blocks:
            raise InvalidManifest(f"manifest lists {len(blocks)} blocks, more than the maximum of {max_blocks}")
        for key, kind in (("size", "an integer"), ("block_size", "an integer"), ("media_type", "a string")):
            if key not in obj:
                raise InvalidManifest(f"manifest has no {key}")
            ok = isinstance(obj[key], str) if kind == "a string" else _is_int(obj[key])
            if not ok:
                raise InvalidManifest(f"manifest {key} must be {kind}, got {type(obj[key]).__name__}")
        owner = obj.get("owner")
        if owner is not None and (not isinstance(owner, bytes) or len(owner) != 32):
            raise InvalidManifest("manifest owner must be a 32-byte Ed25519 public key")
        return cls(obj["size"], tuple(blocks), obj["block_size"], obj["media_type"], owner)


def load_manifest(content_id: ContentId, data: bytes, *, max_blocks: int = DEFAULT_MAX_BLOCKS) -> Manifest:
    """Check ``data`` against ``content_id``, then decode it as a manifest.

    Raises :class:`~butter.errors.BlockCorrupted` when the bytes do not hash to ``content_id`` and
    :class:`~butter.errors.InvalidManifest` when they are not a valid manifest.
    """
    if not verify(content_id, data):
        raise BlockCorrupted(content_id, f"manifest block does not match content id {content_id!r:.80}")
    return Manifest.decode(data, max_blocks=max_blocks)


@dataclass(frozen=True, slots=True)
class Item:
    """Content cut into blocks by :func:`chunk`.

    * ``content_id``: the address of ``manifest_block``.
    * ``manifest`` and ``manifest_block`` (its encoded bytes).
    * ``blocks``: the distinct data blocks (address -> bytes, read-only) in the order they first appear;
      content that repeats gives one entry, its address repeated in ``manifest.blocks``. The manifest
      block is not among them; :attr:`all_blocks` adds it.

    Items compare equal when their content ids are equal.
    """

    content_id: ContentId
    manifest: Manifest = field(compare=False)
    manifest_block: bytes = field(compare=False, repr=False)
    blocks: Mapping[BlockId, bytes] = field(compare=False, repr=False)

    @property
    def size(self) -> int:
        """The content's length in bytes."""
        return self.manifest.size

    @property
    def all_blocks(self) -> Mapping[BlockId, bytes]:
        """Every distinct block to store for this item, the manifest block first (address -> bytes)."""
        return {self.content_id: self.manifest_block, **self.blocks}

    @property
    def stored_size(self) -> int:
        """Bytes a store needs to hold every distinct block of this item, manifest included."""
        return sum(len(data) for data in self.all_blocks.values())

    def ordered_blocks(self) -> Iterator[Block]:
        """The data blocks in content order, repeats included (``manifest.blocks`` with their data)."""
        for address in self.manifest.blocks:
            yield Block(address, self.blocks[address])


def chunk(
    data: bytes | bytearray | memoryview,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    media_type: str = DEFAULT_MEDIA_TYPE,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    owner: bytes | None = None,
) -> Item:
    """Cut ``data`` into blocks of ``block_size`` bytes (the last shorter, no padding) and build its manifest,
    naming ``owner`` (a raw 32-byte Ed25519 public key; default none) when given.

    Empty data gives a manifest with no blocks. Raises :class:`~butter.errors.ItemTooLarge` when more than
    ``max_blocks`` blocks would be needed, and :class:`~butter.errors.InvalidManifest` for a ``block_size``
    outside 1 byte to 1 MiB, a ``media_type`` that is empty or longer than 255 characters or an ``owner``
    that is not 32 bytes.
    """
    if not _is_int(block_size) or not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise InvalidManifest(f"block_size must be an integer from 1 to {MAX_BLOCK_SIZE} bytes, got {block_size!r}")
    content = bytes(data)
    count = -(-len(content) // block_size)
    if count > max_blocks:
        raise ItemTooLarge(
            f"{len(content)} bytes in blocks of {block_size} bytes need {count} blocks, more than the maximum of "
            f"{max_blocks}"
        )
    addresses: list[BlockId] = []
    blocks: dict[BlockId, bytes] = {}
    for start in range(0, len(content), block_size):
        piece = content[start : start + block_size]
        address = block_id_of(piece)
        addresses.append(address)
        blocks.setdefault(address, piece)
    manifest = Manifest(len(content), tuple(addresses), block_size, media_type, owner)
    manifest_block = manifest.encode()
    return Item(block_id_of(manifest_block), manifest, manifest_block, MappingProxyType(blocks))


def assemble(manifest: Manifest, blocks: Mapping[BlockId, bytes]) -> bytes:
    """Rebuild an item's bytes from ``blocks`` (address -> data), checking every block it uses.

    Raises :class:`~butter.errors.IncompleteItem` listing every missing address (in manifest order),
    :class:`~butter.errors.BlockCorrupted` when a block does not hash to its address, and
    :class:`~butter.errors.InvalidManifest` when a block's length contradicts ``size`` and ``block_size``.
    """
    missing = tuple(dict.fromkeys(a for a in manifest.blocks if a not in blocks))
    if missing:
        raise IncompleteItem(missing, f"{len(missing)} of {len(manifest.blocks)} blocks missing, first {missing[0]}")
    return b"".join(_checked(manifest, i, address, blocks[address]) for i, address in enumerate(manifest.blocks))


def iter_assemble(manifest: Manifest, get: Callable[[BlockId], bytes | None]) -> Iterator[bytes]:
    """Yield an item's blocks in order, each verified, fetching one at a time with ``get(address)``.

    For items too large to hold at once: only one block is in memory at a time. ``get`` returns the bytes
    or ``None`` when the block is not available. Raises :class:`~butter.errors.BlockNotFound` (an
    :class:`~butter.errors.IncompleteItem`) when ``get`` returns ``None``, and
    :class:`~butter.errors.BlockCorrupted` or :class:`~butter.errors.InvalidManifest` as :func:`assemble`
    does; the bad block is never yielded.
    """
    for index, address in enumerate(manifest.blocks):
        data = get(address)
        if data is None:
            raise BlockNotFound(address, f"block {index} of {len(manifest.blocks)} ({address}) not found")
        yield _checked(manifest, index, address, data)


async def aiter_assemble(
    manifest: Manifest, get: Callable[[BlockId], Awaitable[bytes | None]]
) -> AsyncIterator[bytes]:
    """Like :func:`iter_assemble`, with an async getter such as a :class:`~butter.store.BlockStore`'s
    ``get``: ``async for piece in aiter_assemble(manifest, store.get): ...``."""
    for index, address in enumerate(manifest.blocks):
        data = await get(address)
        if data is None:
            raise BlockNotFound(address, f"block {index} of {len(manifest.blocks)} ({address}) not found")
        yield _checked(manifest, index, address, data)


def _checked(manifest: Manifest, index: int, address: BlockId, data: bytes) -> bytes:
    if not verify(address, data):
        raise BlockCorrupted(address, f"block {index} ({address}) does not match its address; discarded")
    expected = manifest.block_length(index)
    if len(data) != expected:
        raise InvalidManifest(
            f"block {index} ({address}) is {len(data)} bytes, but the manifest implies {expected} bytes"
        )
    return bytes(data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
