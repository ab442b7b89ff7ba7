"""The node's content API: store items, retrieve them, fetch single blocks.

Storing cuts an item into blocks, puts them in the node's block store and hands the item to the
persistence slot; retrieving delegates to the retrieval slot. With ``encrypt=True`` the item is encrypted
here first and a capability is returned instead of the content id (:mod:`butter.encryption`); retrieving a
capability decrypts what the retrieval slot returns. Two core routes serve content to peers:

* ``fetch-block``, body ``{"block_id": hex}``: the block's bytes, verified on read, or error ``not-found``.
* ``store``, body ``{"blocks": [bytes], "manifest": bytes | nil}``: upload blocks; with the manifest the
  item is complete and persistence keeps it. Served only when a persistence driver is configured (a node
  without one answers ``unknown-route``). An item its owner deleted (this node keeps its tombstone) is
  refused: error ``deleted``.

Retrieving an item this node keeps a tombstone of raises :class:`~butter.errors.ItemDeleted` at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec, encryption
from .blocks import DEFAULT_MEDIA_TYPE, block_id_of, chunk, load_manifest, verify
from .errors import (
    BlockCorrupted,
    ButterConfigError,
    IncompleteItem,
    ItemDeleted,
    ProtocolError,
    RouteError,
    StoreFull,
)
from .peers import PeerAddress
from .records import public_key_bytes

if TYPE_CHECKING:
    from ._deletion import Deletion
    from ._routes import RouteRequest
    from .slots import NodeServices, Persistence, Retrieval

__all__ = ["Content"]


class Content:
    """Store, retrieve and fetch-block for one node, and the ``store`` and ``fetch-block`` routes, which
    it registers on ``node`` when built."""

    def __init__(self, node: NodeServices, persistence: Persistence | None, retrieval: Retrieval | None,
                 deletion: Deletion) -> None:
        self._node = node
        self._deletion = deletion
        self._persistence = persistence
        self._retrieval = retrieval
        node.route("fetch-block", self._serve_fetch_block)
        if persistence is not None:
            node.route("store", self._serve_store)

    async def store(self, data: bytes, *, media_type: str = DEFAULT_MEDIA_TYPE, encrypt: bool = False,
                    owner: Ed25519PrivateKey | None = None) -> str:
        """See :meth:`butter.Node.store`."""
        owner_key = public_key_bytes(owner) if owner is not None else None
        if not encrypt:
            return await self._store(bytes(data), media_type, owner_key)
        if media_type != DEFAULT_MEDIA_TYPE:
            raise ValueError("an encrypted item has no media type: holders would read it (leave media_type out)")
        ciphertext, key = encryption.encrypt(data)
        return str(encryption.Capability(await self._store(ciphertext, DEFAULT_MEDIA_TYPE, owner_key), key))

    async def _store(self, data: bytes, media_type: str, owner: bytes | None) -> str:
        persistence = self._persistence_or_fail()
        blocks = self._node.blocks
        item = chunk(data, block_size=int(self._node.settings.store.block_size), media_type=media_type, owner=owner)
        self._deletion.check(item.content_id)
        new = {block_id: b for block_id, b in item.all_blocks.items() if not await blocks.has(block_id)}
        needed = sum(len(b) for b in new.values())
        if needed > blocks.free:
            raise StoreFull(needed=needed, free=blocks.free)
        for block_id, block in new.items():
            await blocks.put(block_id, block)
        await persistence.keep(item.content_id)
        self._node.emit("butter_item_stored", content_id=item.content_id)
        return item.content_id

    async def retrieve(self, content_id: str, *, timeout: float | None = None) -> bytes:
        """See :meth:`butter.Node.retrieve`."""
        retrieval = self._retrieval_or_fail()
        if not encryption.is_capability(content_id):
            self._deletion.check(content_id)
            return await retrieval.retrieve(content_id, timeout=timeout)
        capability = encryption.Capability.parse(content_id)
        self._deletion.check(capability.content_id)
        return encryption.decrypt(await retrieval.retrieve(capability.content_id, timeout=timeout), capability.key)

    def retrieve_stream(self, content_id: str, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        """See :meth:`butter.Node.retrieve_stream`."""
        if encryption.is_capability(content_id):
            return self._retrieve_whole(content_id, timeout)
        self._deletion.check(content_id)
        return self._retrieval_or_fail().stream(content_id, timeout=timeout)

    async def _retrieve_whole(self, capability: str, timeout: float | None) -> AsyncIterator[bytes]:
        yield await self.retrieve(capability, timeout=timeout)

    async def fetch_block(self, address: PeerAddress, block_id: str, *, timeout: float | None) -> bytes:
        """See :meth:`butter.Node.fetch_block`."""
        body = codec.encode({"block_id": block_id})
        data = await self._node.request(address, "fetch-block", body, timeout=timeout)
        if not verify(block_id, data):
            raise BlockCorrupted(block_id, f"block from {address} does not match its id {block_id[:16]}")
        return data

    def _persistence_or_fail(self) -> Persistence:
        if self._persistence is None:
            raise ButterConfigError("no persistence driver is configured (set persistence.driver, e.g. 'pcg')")
        return self._persistence

    def _retrieval_or_fail(self) -> Retrieval:
        if self._retrieval is None:
            raise ButterConfigError("no retrieval driver is configured (set retrieval.driver, e.g. 'bfs')")
        return self._retrieval

    # -- routes -------------------------------------------------------------------------------------------

    async def _serve_fetch_block(self, request: RouteRequest) -> bytes:
        """Body ``{"block_id": hex}``; reply: the block's bytes, verified on read, or error ``not-found``."""
        fields = codec.Fields.decode(request.body, self._node.settings.max_frame, what="fetch-block body")
        block_id = fields.value("block_id", codec.block_id)
        data = await self._node.blocks.get(block_id)
        if data is None:
            raise RouteError("not-found", f"no block {block_id}")
        self._node.emit("butter_block_served", block_id=block_id)
        return data

    async def _serve_store(self, request: RouteRequest) -> bytes:
        """Body ``{"blocks": [bytes], "manifest": bytes | nil}``: upload blocks (each stored under its own
        id); with the manifest the item is complete and persistence keeps it; reply ``{"cid": hex}`` then,
        else empty. Errors: ``store-full``, ``incomplete``, ``bad-request``."""
        max_frame = int(self._node.settings.max_frame)
        fields = codec.Fields.decode(request.body, max_frame, what="store body")
        blocks = fields.sequence("blocks", _block, max_items=max_frame, default=[])
        manifest = fields.blob("manifest", max_length=max_frame, default=None)
        persistence = self._persistence_or_fail()
        try:
            for block in blocks:
                await self._node.blocks.put(block_id_of(block), block)
            if manifest is None:
                return b""
            content_id = block_id_of(manifest)
            load_manifest(content_id, manifest)
            self._deletion.check(content_id)
            await self._node.blocks.put(content_id, manifest)
            await persistence.keep(content_id)
        except StoreFull as exc:
            raise RouteError("store-full", str(exc)) from None
        except ItemDeleted as exc:
            raise RouteError("deleted", str(exc)) from None
        except IncompleteItem as exc:
            raise RouteError("incomplete", str(exc)) from None
        self._node.emit("butter_item_stored", content_id=content_id)
        return codec.encode({"cid": content_id})


def _block(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"{name} must be bytes")
    return value
