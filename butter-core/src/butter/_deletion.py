"""The node's delete API: the owner deletes an item with a signed tombstone (formats: :mod:`butter.tombstones`).

Every node keeps a :class:`~butter.tombstones.TombstoneBook` and serves one core route:

* ``delete-item``, body ``{"tombstone": bytes}``: reply ``{"outcome": str}``, one of
  :data:`~butter.tombstones.Offer`'s. A node that holds the item's manifest verifies the tombstone against
  the owner it names; when it is ``accepted`` the node keeps it until it expires, tells persistence to forget
  the item (the :class:`~butter.capabilities.ForgetItems` capability: pcg frees the blocks no other item uses),
  deletes the manifest block, and forwards the tombstone once to the other holders it knows
  (:class:`~butter.capabilities.ItemHolders`). A node without the manifest keeps nothing (``unknown``): it
  cannot tell the owner's tombstone from anyone's.

Deleting (:meth:`Deletion.delete`) finds the manifest (in the local store, else from the holders that
retrieval's search finds: the :class:`~butter.capabilities.LocateItems` capability), checks that the key is
the owner's, signs a tombstone, applies it here and sends it to every holder found. A node holding a
tombstone answers retrieval with :class:`~butter.errors.ItemDeleted` and refuses to store the item again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec, encryption
from ._spread import each_peer
from .blocks import Manifest, is_block_id, load_manifest
from .capabilities import ForgetItems, ItemHolders, LocateItems
from .errors import ButterError, ItemDeleted, ItemNotFound, TombstoneRejected
from .peers import PeerAddress
from .records import public_key_bytes
from .tombstones import (
    MAX_TOMBSTONE_SIZE,
    ROUTE_DELETE,
    Offer,
    Tombstone,
    TombstoneBook,
    delete_body,
    sign_tombstone,
)

if TYPE_CHECKING:
    from ._routes import RouteRequest
    from .slots import NodeServices

__all__ = ["TOMBSTONE_BOOK_CAPACITY", "Deletion"]

log = logging.getLogger("butter.node")

TOMBSTONE_BOOK_CAPACITY = 10_000  # tombstones a node keeps (each ~200 bytes)


class Deletion:
    """Delete for one node, and the ``delete-item`` route, which it registers on ``node`` when built."""

    def __init__(self, node: NodeServices, owner: Ed25519PrivateKey) -> None:
        self._node = node
        self._owner = owner
        self.book = TombstoneBook(TOMBSTONE_BOOK_CAPACITY)
        self._said_no_forget = False  # the missing ForgetItems is logged once
        node.route(ROUTE_DELETE, self._serve_delete)

    def check(self, content_id: str) -> None:
        """Raise :class:`~butter.errors.ItemDeleted` when this node keeps a tombstone of ``content_id``."""
        tombstone = self.book.get(content_id, now=time.time())
        if tombstone is not None:
            raise ItemDeleted(content_id, tombstone.encode())

    async def delete(self, content_id: str, *, owner: Ed25519PrivateKey | None, tombstone_expiry: float,
                     timeout: float | None) -> int:
        """See :meth:`butter.Node.delete`."""
        if encryption.is_capability(content_id):
            content_id = encryption.Capability.parse(content_id).content_id
        if not is_block_id(content_id):
            raise ValueError(f"a content id is 64 lowercase hex characters, got {content_id!r:.80}")
        self.check(content_id)
        key = owner if owner is not None else self._owner
        manifest, holders = await self._find(content_id, timeout)
        if manifest.owner is None:
            raise TombstoneRejected(f"item {content_id} has no owner: it was stored without one and cannot be "
                                    "deleted")
        if manifest.owner != public_key_bytes(key):
            raise TombstoneRejected(f"item {content_id} belongs to another owner key: only it can delete the item")
        now = int(time.time())
        tombstone = sign_tombstone(key, content_id, deleted_at=now, expires_at=now + int(tombstone_expiry))
        holders = [*holders, *self._holders(content_id)]
        await self.accept(tombstone, manifest, forward=False)  # sent to every holder just below
        outcomes = await self._send(tombstone, holders, timeout)
        return sum(outcome in ("accepted", "duplicate") for outcome in outcomes.values())

    async def _find(self, content_id: str, timeout: float | None) -> tuple[Manifest, list[PeerAddress]]:
        """The item's manifest, and the holders found (none when the manifest is local). Raises
        :class:`~butter.errors.ItemNotFound` (or :class:`~butter.errors.ItemDeleted`)."""
        data = await self._node.blocks.get(content_id)
        if data is not None:
            return load_manifest(content_id, data), []
        locate = self._node.capability(LocateItems)
        if locate is None:
            raise ItemNotFound(f"item {content_id} is not stored here and no retrieval driver offers LocateItems "
                               "to find its holders", content_id=content_id)
        holders = [a for a in await locate.locate(content_id, timeout=timeout) if a != self._node.address]
        for holder in holders:
            try:
                block = await self._node.fetch_block(holder, content_id, timeout=timeout)
                return load_manifest(content_id, block), holders
            except ButterError as exc:
                log.debug("no manifest of %s from %s: %s", content_id[:12], holder, exc)
        raise ItemNotFound(f"none of the {len(holders)} holder(s) found served the manifest of {content_id}",
                           content_id=content_id, holders=len(holders))

    def _holders(self, content_id: str) -> list[PeerAddress]:
        holders = self._node.capability(ItemHolders)
        found = holders.holders(content_id) if holders is not None else []
        return [a for a in found if a != self._node.address]

    async def accept(self, tombstone: Tombstone, manifest: Manifest | None, *, forward: bool = True) -> Offer:
        """Offer ``tombstone`` to the book; when accepted, drop the item here and, with ``forward``, send the
        tombstone to the other holders this node knows, once (in the background)."""
        outcome = self.book.offer(tombstone, manifest, now=time.time())
        if outcome != "accepted":
            return outcome
        content_id = tombstone.content_id
        holders = self._holders(content_id)
        forget = self._node.capability(ForgetItems)
        if forget is not None:
            await forget.forget_item(content_id)
        elif not self._said_no_forget:
            self._said_no_forget = True
            log.info("no driver of this node offers ForgetItems (a persistence capability): a deleted item's "
                     "manifest block is deleted, its data blocks stay in the store")
        await self._node.blocks.delete(content_id)
        log.info("item %s deleted by its owner; tombstone kept until %d", content_id[:12], tombstone.expires_at,
                 extra={"event": "item_deleted"})
        if holders and forward:
            self._node.spawn(self._send, tombstone, holders, None)
        return outcome

    async def _send(self, tombstone: Tombstone, holders: list[PeerAddress], timeout: float | None) -> dict[
            PeerAddress, str]:
        """Send ``tombstone`` to each of ``holders`` at once; what each answered (failures left out)."""
        body = delete_body(tombstone)

        async def send(address: PeerAddress) -> str:
            try:
                reply = await self._node.request(address, ROUTE_DELETE, body, timeout=timeout)
                outcome: str = codec.Fields.decode(reply, 1024).string("outcome", max_length=16)
            except ButterError as exc:
                log.debug("tombstone of %s to %s failed: %s", tombstone.content_id[:12], address, exc)
                raise
            return outcome

        return await each_peer(holders, send)

    async def _serve_delete(self, request: RouteRequest) -> bytes:
        """Body ``{"tombstone": bytes}``; reply ``{"outcome": str}``. Error ``bad-request`` for a malformed
        one."""
        fields = codec.Fields.decode(request.body, MAX_TOMBSTONE_SIZE * 2, what="delete-item body")
        tombstone = Tombstone.decode(fields.blob("tombstone", max_length=MAX_TOMBSTONE_SIZE))
        data = await self._node.blocks.get(tombstone.content_id)
        manifest = None
        if data is not None:
            try:
                manifest = load_manifest(tombstone.content_id, data)
            except ButterError:
                manifest = None  # a data block that happens to have this address: not an item
        return codec.encode({"outcome": await self.accept(tombstone, manifest)})
