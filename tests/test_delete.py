"""Delete by the owner (issue 15, item 3) on real nodes, PCG keeping items and BFS retrieving them, over the
memory transport and TCP on 127.0.0.1: the owner's tombstone makes every honest holder drop the item's blocks
and retrieval answer ItemDeleted; anyone else's tombstone is refused and the data kept; an item without owner
cannot be deleted; a stale holder recruiting the item back is told of the tombstone and drops it."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter
from butter import codec
from butter.blocks import load_manifest
from butter.testing.overlay import open_overlay, wait_for
from butter.tombstones import ROUTE_DELETE, delete_body, sign_tombstone
from butter_persist_pcg._messages import JoinReply

pytestmark = pytest.mark.anyio

DATA = b"a diary page the owner will take back. " * 300  # ~12 KB: three blocks


def overlay(kind: str, count: int = 5) -> AbstractAsyncContextManager[list[butter.Node]]:
    """``count`` nodes that all know each other; PCG keeps items (3 replicas), BFS retrieves them."""
    return open_overlay(count, transport=kind, retrieval={"driver": "bfs", "options": {"retrieve_timeout": 10.0}},
                        request_timeout=3.0)


async def holders(nodes: list[butter.Node], content_id: str) -> list[butter.Node]:
    return [n for n in nodes if await n.blocks.has(content_id)]


async def replicated(nodes: list[butter.Node], content_id: str) -> list[butter.Node]:
    async def three() -> bool:
        return len(await holders(nodes, content_id)) == 3

    await wait_for(three, "the item did not reach three replicas")
    return await holders(nodes, content_id)


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_the_owner_deletes_and_every_holder_drops_the_blocks_and_retrieval_says_deleted(kind: str) -> None:
    async with overlay(kind) as nodes:
        owner = Ed25519PrivateKey.generate()
        content_id = await nodes[0].store(DATA, owner=owner)
        manifest = load_manifest(content_id, await nodes[0].blocks.get(content_id) or b"")
        kept = await replicated(nodes, content_id)
        outsider = next(n for n in nodes if n not in kept)
        with anyio.fail_after(30):
            assert await outsider.retrieve(content_id) == DATA
        block_ids = {content_id, *manifest.blocks}

        with anyio.fail_after(30):
            accepted = await outsider.delete(content_id, owner=owner)  # not a holder: it searches for them
        assert accepted >= 1

        async def every_block_gone() -> bool:
            return not any([await n.blocks.has(b) for n in nodes for b in block_ids])

        await wait_for(every_block_gone, "holders kept blocks of the deleted item")
        for holder in kept:
            assert holder.tombstones.get(content_id, now=time.time()) is not None
        for reader in (kept[0], outsider):  # one with the tombstone at hand, one that must search
            with anyio.fail_after(30), pytest.raises(butter.ItemDeleted, match="deleted"):
                await reader.retrieve(content_id)
            with anyio.fail_after(30), pytest.raises(butter.ItemDeleted):
                async for _ in reader.retrieve_stream(content_id):
                    raise AssertionError("a deleted item was served")
        with pytest.raises(butter.ItemDeleted):
            await kept[0].store(DATA, owner=owner)  # nor stored again where the tombstone is kept
        with anyio.fail_after(30), pytest.raises(butter.ItemDeleted):
            await outsider.delete(content_id, owner=owner)


async def test_a_tombstone_by_anyone_else_or_altered_is_refused_and_the_data_kept() -> None:
    async with overlay("memory") as nodes:
        owner, mallory = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        content_id = await nodes[0].store(DATA, owner=owner)
        kept = await replicated(nodes, content_id)
        outsider = next(n for n in nodes if n not in kept)
        now = int(time.time())
        forged = sign_tombstone(mallory, content_id, deleted_at=now, expires_at=now + 3600)
        genuine = sign_tombstone(owner, content_id, deleted_at=now, expires_at=now + 3600)
        altered = forged.__class__(**{**forged.__dict__, "public_key": genuine.public_key})  # owner's key, bad sig
        for tombstone, outcome in ((forged, "forged"), (altered, "forged")):
            reply = await outsider.request(kept[0].address, ROUTE_DELETE, delete_body(tombstone))
            assert codec.decode_map(reply) == {"outcome": outcome}
        with anyio.fail_after(30), pytest.raises(butter.TombstoneRejected, match="another owner"):
            await outsider.delete(content_id, owner=mallory)
        await anyio.sleep(1.0)  # heartbeats go on: nothing was dropped
        assert len(await holders(nodes, content_id)) == 3
        assert all(n.tombstones.get(content_id, now=time.time()) is None for n in nodes)
        with anyio.fail_after(30):
            assert await outsider.retrieve(content_id) == DATA
        reply = await outsider.request(kept[0].address, ROUTE_DELETE, delete_body(genuine))
        assert codec.decode_map(reply) == {"outcome": "accepted"}
        reply = await outsider.request(kept[0].address, ROUTE_DELETE, delete_body(genuine))  # replayed
        assert codec.decode_map(reply) == {"outcome": "duplicate"}


async def test_an_item_stored_without_owner_cannot_be_deleted() -> None:
    async with overlay("memory", count=3) as nodes:
        content_id = await nodes[0].store(DATA)
        with pytest.raises(butter.TombstoneRejected, match="no owner"):
            await nodes[0].delete(content_id)
        with anyio.fail_after(30), pytest.raises(butter.ItemNotFound):
            await nodes[1].delete("ab" * 32)
        assert await nodes[0].blocks.has(content_id)


async def test_a_stale_copy_recruiting_the_item_back_is_told_of_the_tombstone_and_dropped() -> None:
    """The node that never held the item stores it again, as a holder that missed the deletion would keep
    it: the holders it invites answer ``deleted`` and send it the tombstone; it drops the item, and so does
    any node it recruited meanwhile."""
    async with overlay("memory") as nodes:
        owner = Ed25519PrivateKey.generate()
        content_id = await nodes[0].store(DATA, owner=owner)
        kept = await replicated(nodes, content_id)
        with anyio.fail_after(30):
            await nodes[0].delete(content_id, owner=owner)

        async def dropped() -> bool:
            return not await holders(nodes, content_id)

        await wait_for(dropped, "holders kept the deleted item")
        stale = next(n for n in nodes if n not in kept)
        assert stale.tombstones.get(content_id, now=time.time()) is None
        assert await stale.store(DATA, owner=owner) == content_id
        join = codec.encode({"items": [{"cid": content_id, "size": len(DATA),
                                        "members": [[stale.node_id, stale.address.to_wire(), 0.0]]}]})
        reply = JoinReply.decode(await stale.request(kept[0].address, "pcg-join", join))
        assert [(r.content_id, r.code) for r in reply.refused] == [(content_id, "deleted")]
        await wait_for(dropped, "the stale copy came back", timeout=30)
        assert stale.tombstones.get(content_id, now=time.time()) is not None


async def test_an_encrypted_item_is_deleted_by_its_capability() -> None:
    async with overlay("memory", count=3) as nodes:
        capability = await nodes[0].store(b"secret" * 100, encrypt=True, owner=nodes[0].identity.private_key)
        content_id = capability.split(":")[1]
        await replicated(nodes, content_id)

        async def dropped() -> bool:
            return not await holders(nodes, content_id)

        with anyio.fail_after(30):
            assert await nodes[1].retrieve(capability) == b"secret" * 100
            await nodes[0].delete(capability)  # the owner key defaults to the node's identity key
            await wait_for(dropped, "holders kept the deleted item")
            with pytest.raises(butter.ItemDeleted):
                await nodes[1].retrieve(capability)
        with pytest.raises(ValueError, match="64 lowercase hex"):
            await nodes[0].delete("not-an-id")


async def test_a_stale_holders_heartbeat_to_a_node_keeping_the_tombstone_makes_it_drop_the_item() -> None:
    """A lone holder that missed the deletion (replicas=1: it recruits no one, so no invitation reaches a
    node that knows) heartbeats a former member: the tombstone comes back with the reply, and it drops the
    item."""
    from butter_persist_pcg._messages import GroupBeat, Heartbeat

    async with overlay("memory", count=4) as nodes:
        owner = Ed25519PrivateKey.generate()
        content_id = await nodes[0].store(DATA, owner=owner)
        kept = await replicated(nodes, content_id)
        with anyio.fail_after(30):
            await nodes[0].delete(content_id, owner=owner)

        async def dropped() -> bool:
            return not await holders(nodes, content_id)

        await wait_for(dropped, "holders kept the deleted item")
        settings = nodes[0].settings.model_copy(update={
            "peers": [], "persistence": nodes[0].settings.persistence.model_copy(
                update={"options": {"heartbeat_interval": 0.2, "replicas": 1}})})
        async with butter.open_node(settings) as stale:
            assert await stale.store(DATA, owner=owner) == content_id
            beat = Heartbeat(stale.node_id, stale.address, False,
                             [GroupBeat(content_id, len(DATA), 0, [(stale.node_id, stale.address, 0.0)])])
            reply = codec.decode_map(await stale.request(kept[0].address, "pcg-heartbeat", beat.encode()))
            assert reply["unknown"] == [content_id]

            async def stale_dropped() -> bool:
                return not await stale.blocks.has(content_id)

            await wait_for(stale_dropped, "the stale holder kept the item")
            assert stale.tombstones.get(content_id, now=time.time()) is not None


async def test_a_block_another_item_uses_is_kept_when_one_item_is_deleted() -> None:
    shared, own_a, own_b = b"s" * 4096, b"a" * 1000, b"b" * 1000  # one 4 KiB block in common
    async with overlay("memory", count=3) as nodes:  # three replicas on three nodes: every node holds both
        owner = Ed25519PrivateKey.generate()
        deleted = await nodes[0].store(shared + own_a, owner=owner)
        kept = await nodes[0].store(shared + own_b, owner=owner)
        await replicated(nodes, deleted)
        await replicated(nodes, kept)
        manifest = load_manifest(deleted, await nodes[0].blocks.get(deleted) or b"")
        shared_id, own_id = manifest.blocks
        with anyio.fail_after(30):
            await nodes[1].delete(deleted, owner=owner)

        async def dropped() -> bool:
            return not any([await n.blocks.has(b) for n in nodes for b in (deleted, own_id)])

        await wait_for(dropped, "holders kept blocks only the deleted item used")
        assert all([await n.blocks.has(shared_id) for n in nodes])
        with anyio.fail_after(30):
            assert await nodes[2].retrieve(kept) == shared + own_b
