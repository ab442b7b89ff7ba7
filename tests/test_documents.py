"""Multi-writer documents over the network (issue 15, items 2, 3, 5 and 8), over the memory transport and over
TCP on 127.0.0.1, on asyncio and trio.

``node.create_document`` / ``append`` / ``read_document`` / ``delete_document``: concurrent writers on
different nodes converge to one head everywhere; a revision whose parent is missing is held back and admitted
when the parent arrives; forged and altered revisions pushed by a hostile peer are refused and counted; the
writers list is enforced; only the creator deletes, and a deleted document reads as ``DocumentDeleted``."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter
from butter import codec
from butter.documents import Revision, sign_revision
from butter.records import public_key_bytes
from butter.testing.overlay import wait_for

pytestmark = pytest.mark.anyio

HOSTS = {"refresh_interval": 0.2, "exchange_interval": 0.2, "quality_timeout": 1.0}


def transport(kind: str) -> dict[str, Any]:
    if kind == "memory":
        return {"driver": "memory", "options": {"network": f"documents-{uuid.uuid4().hex[:12]}"}}
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    return {"driver": "tcp"}


@asynccontextmanager
async def overlay(kind: str = "memory", count: int = 3) -> AsyncIterator[list[butter.Node]]:
    """``count`` nodes that all know each other, without persistence or retrieval (documents need neither)."""
    chosen = transport(kind)
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for _ in range(count):
            settings = butter.ButterSettings(
                host="127.0.0.1", peers=[str(n.address) for n in nodes], transport=chosen,
                discovery={"drivers": ["static"], "options": {"static": {"interval": 0.2}}},
                host_manager={"driver": "diversity", "options": HOSTS},
                persistence={"driver": ""}, retrieval={"driver": ""},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))

        async def everyone_knows_everyone() -> bool:
            return all(len(n.hosts.peers()) == count - 1 for n in nodes)

        await wait_for(everyone_knows_everyone, "every node knows the others")
        yield nodes


def put_body(document_id: str, *revisions: Revision) -> bytes:
    return codec.encode({"doc": document_id, "revisions": [r.encode() for r in revisions]})


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_two_writers_appending_at_once_on_different_nodes_converge_to_one_head_everywhere(kind: str) -> None:
    async with overlay(kind) as (a, b, c):
        document_id = await a.create_document(b"first draft")
        assert (await c.read_document(document_id)).body == b"first draft"
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.append, document_id, b"b's edit")
            tg.start_soon(c.append, document_id, b"c's edit")
        for _ in range(2):  # the first round of reads repairs; the second sees the same everywhere
            documents = [await node.read_document(document_id) for node in (a, b, c)]
        assert len({d.current.id for d in documents}) == 1
        assert {d.body for d in documents} <= {b"b's edit", b"c's edit"}
        assert all(len(d.history) == len(documents[0].history) for d in documents)
        assert all(d.answered == 2 and d.asked == 2 for d in documents)
        merged = await a.append(document_id, b"merged")
        assert merged.clock == max(h.clock for h in documents[0].heads) + 1
        assert set(merged.parents) == {h.id for h in documents[0].heads}
        again = [await node.read_document(document_id) for node in (a, b, c)]
        assert {d.body for d in again} == {b"merged"} and all(len(d.heads) == 1 for d in again)
        assert again[0].history[0].body == b"first draft" and len(again[0].history) == 4


async def test_five_nodes_each_appending_three_times_at_once_converge_after_reads() -> None:
    async with overlay("memory", 5) as nodes:
        document_id = await nodes[0].create_document(b"start")

        async def write(node: butter.Node, n: int) -> None:
            for i in range(3):
                await node.append(document_id, b"node %d edit %d" % (n, i))

        async with anyio.create_task_group() as tg:
            for n, node in enumerate(nodes):
                tg.start_soon(write, node, n)
        for _ in range(2):
            documents = [await node.read_document(document_id) for node in nodes]
        assert len({(d.current.id, len(d.history), len(d.heads)) for d in documents}) == 1
        assert len(documents[0].history) == 16


async def test_a_revision_whose_parent_is_missing_is_held_back_and_admitted_when_the_parent_arrives() -> None:
    async with overlay() as (a, b, _):
        writer = Ed25519PrivateKey.generate()
        document_id = await a.create_document(b"v0")
        genesis = a.documents.get(document_id)
        assert genesis is not None
        first = sign_revision(writer, b"v1", document_id=document_id, parents=[genesis.genesis], at=int(time.time()))
        second = sign_revision(writer, b"v2", document_id=document_id, parents=[first], at=int(time.time()))
        reply = codec.Fields.decode(await b.request(a.address, "put-revisions", put_body(document_id, second)))
        assert reply.submap("outcomes").raw == {"pending": 1} and reply.boolean("lacking")
        assert (await a.read_document(document_id, fanout=0)).body == b"v0"  # held back, never trusted
        other = sign_revision(writer, b"aside", document_id=document_id, parents=[genesis.genesis], at=0)
        reply = codec.Fields.decode(await b.request(a.address, "put-revisions", put_body(document_id, other)))
        assert reply.submap("outcomes").raw == {"accepted": 1} and not reply.boolean("lacking")  # these lack nothing
        reply = codec.Fields.decode(await b.request(a.address, "put-revisions", put_body(document_id, first)))
        assert reply.submap("outcomes").raw == {"accepted": 1} and not reply.boolean("lacking")
        read = await a.read_document(document_id, fanout=0)
        assert read.body == b"v2" and [r.body for r in read.history if r != other] == [b"v0", b"v1", b"v2"]


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_adversarial_forged_and_altered_revisions_pushed_by_a_peer_are_refused_and_counted(kind: str) -> None:
    async with overlay(kind, 2) as (a, b):
        document_id = await a.create_document(b"honest")
        state = a.documents.get(document_id)
        assert state is not None
        honest = sign_revision(Ed25519PrivateKey.generate(), b"x", document_id=document_id,
                               parents=[state.genesis], at=int(time.time()))
        altered = dataclasses.replace(honest, body=b"altered after signing")
        impostor = dataclasses.replace(honest, author=public_key_bytes(Ed25519PrivateKey.generate()))
        wrong_clock = sign_revision(Ed25519PrivateKey.generate(), b"y", document_id=document_id,
                                    parents=[state.genesis], at=0)
        wrong_clock = dataclasses.replace(wrong_clock, clock=5)  # re-signed below so only the clock is wrong
        forger = Ed25519PrivateKey.generate()
        wrong_clock = dataclasses.replace(wrong_clock, author=public_key_bytes(forger), signature=bytes(64))
        wrong_clock = dataclasses.replace(wrong_clock, signature=forger.sign(wrong_clock.signed_bytes()))
        before = dict(a.documents.counts)
        reply = codec.Fields.decode(await b.request(a.address, "put-revisions",
                                                    put_body(document_id, altered, impostor, wrong_clock)))
        assert reply.submap("outcomes").raw == {"forged": 2, "refused": 1}
        assert a.documents.counts["forged"] == before["forged"] + 2
        assert a.documents.counts["refused"] == before["refused"] + 1
        assert (await a.read_document(document_id, fanout=0)).body == b"honest"
        with pytest.raises(butter.RemoteError, match="bad-request"):
            await b.request(a.address, "put-revisions", codec.encode({"doc": document_id, "revisions": [b"\xc1"]}))
        flood = [dataclasses.replace(honest, body=b"forged %d" % i) for i in range(100)]
        reply = codec.Fields.decode(await b.request(a.address, "put-revisions", put_body(document_id, *flood)))
        assert reply.submap("outcomes").raw == {"forged": 16}  # the rest of a lying message is not even checked
        with pytest.raises(butter.RemoteError, match="bad-request"):  # more than 512 in one message
            await b.request(a.address, "put-revisions", put_body(document_id, *[honest] * 513))


async def test_adversarial_a_peer_answering_forged_revisions_cannot_change_what_reads() -> None:
    async with overlay("memory", 2) as (a, b):
        document_id = await a.create_document(b"honest")
        state = a.documents.get(document_id)
        assert state is not None
        forged = dataclasses.replace(
            sign_revision(Ed25519PrivateKey.generate(), b"lie", document_id=document_id, parents=[state.genesis],
                          at=int(time.time())), body=b"a bigger lie")

        @b.route("get-document")
        async def lie(request: butter.RouteRequest) -> bytes:
            return codec.encode({"revisions": [forged.encode(), b"\x00not a revision"], "heads": [forged.id]})

        read = await a.read_document(document_id)
        assert read.body == b"honest" and read.answered == 0  # the malformed answer is left out
        @b.route("get-document")
        async def answer(request: butter.RouteRequest) -> bytes:
            return codec.encode({"revisions": [forged.encode()], "heads": [forged.id]})

        read = await a.read_document(document_id)
        assert read.body == b"honest" and read.answered == 1 and a.documents.counts["forged"] >= 1


async def test_the_writers_list_is_enforced_on_append_and_on_every_replica() -> None:
    async with overlay() as (a, b, c):
        allowed = Ed25519PrivateKey.generate()
        outsider = Ed25519PrivateKey.generate()
        document_id = await a.create_document(b"members only", writers=[public_key_bytes(allowed)])
        read = await b.read_document(document_id)
        assert read.writers is not None and set(read.writers) == {public_key_bytes(allowed), read.creator}
        await b.append(document_id, b"by a member", owner=allowed)
        await a.append(document_id, b"by the creator")
        with pytest.raises(butter.RevisionRefused, match="writers list"):
            await c.append(document_id, b"by an outsider", owner=outsider)
        state = a.documents.get(document_id)
        assert state is not None
        sneaked = sign_revision(outsider, b"sneaked in", document_id=document_id, parents=[state.current()],
                                at=int(time.time()))
        reply = codec.Fields.decode(await c.request(b.address, "put-revisions", put_body(document_id, sneaked)))
        assert reply.submap("outcomes").raw == {"refused": 1}
        assert {(await node.read_document(document_id)).body for node in (a, b, c)} == {b"by the creator"}


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_only_the_creator_deletes_and_a_deleted_document_reads_as_deleted_everywhere(kind: str) -> None:
    async with overlay(kind) as (a, b, c):
        creator = Ed25519PrivateKey.generate()
        document_id = await b.create_document(b"short-lived", owner=creator)
        await c.append(document_id, b"an edit")
        with pytest.raises(butter.TombstoneRejected, match="another creator"):
            await c.delete_document(document_id)
        assert await a.delete_document(document_id, owner=creator) == 2
        for node in (a, b, c):
            with pytest.raises(butter.DocumentDeleted) as raised:
                await node.read_document(document_id)
            assert isinstance(raised.value, butter.DocumentNotFound) and raised.value.tombstone
            assert node.documents.get(document_id) is None
        with pytest.raises(butter.DocumentDeleted):
            await c.append(document_id, b"too late")
        state_genesis = a.documents.genesis(document_id)
        assert state_genesis is not None
        late = sign_revision(creator, b"late", document_id=document_id, parents=[state_genesis], at=int(time.time()))
        reply = codec.Fields.decode(await c.request(b.address, "put-revisions", put_body(document_id, late)))
        assert reply.submap("outcomes").raw == {"deleted": 1}


async def test_a_read_that_learns_of_the_tombstone_passes_it_on_to_the_peers_it_asked() -> None:
    async with overlay() as (a, b, c):
        document_id = await a.create_document(b"soon gone", fanout=0)
        await b.read_document(document_id)
        serve = b._documents._serve_get

        @b.route("get-document")
        async def without_hops(request: butter.RouteRequest) -> bytes:  # b answers from what it has only
            body = {**codec.decode_map(request.body), "hops": 0}
            return await serve(dataclasses.replace(request, body=codec.encode(body)))

        await a.delete_document(document_id, fanout=0)  # only a knows
        assert b.documents.get(document_id) is not None
        with pytest.raises(butter.DocumentDeleted):
            await c.read_document(document_id)  # a answers the tombstone; b a replica: c sends b the tombstone
        assert b.documents.get(document_id) is None and b.tombstones.get(document_id, now=time.time()) is not None


async def test_an_unknown_document_is_not_found_and_a_bad_id_is_refused() -> None:
    async with overlay("memory", 2) as (a, _):
        with pytest.raises(butter.DocumentNotFound) as raised:
            await a.read_document("ab" * 32)
        assert raised.value.answered == 1
        with pytest.raises(ValueError, match="64 lowercase hex"):
            await a.read_document("not-an-id")
        with pytest.raises(ValueError, match="16384"):
            await a.create_document(b"x" * (16 * 1024 + 1))
        a.documents.capacity = 1
        await a.create_document(b"the one this node has room for", fanout=0)
        with pytest.raises(butter.RevisionRefused, match="no more documents"):
            await a.create_document(b"one too many", fanout=0)


async def test_get_document_with_hops_asks_the_peers_of_the_peer_first() -> None:
    async with overlay() as (a, b, c):
        document_id = await a.create_document(b"one hop further", fanout=0)

        async def ask(hops: int) -> list[bytes]:
            body = codec.encode({"doc": document_id, "heads": [], "hops": hops})
            reply = codec.Fields.decode(await c.request(b.address, "get-document", body))
            return [Revision.decode(r).body for r in reply.raw["revisions"]]

        assert await ask(0) == [] and b.documents.get(document_id) is None
        assert await ask(1) == [b"one hop further"]  # b asked a (not the caller) first, and kept it
        assert b.documents.get(document_id) is not None


async def test_a_document_larger_than_one_reply_is_read_in_several_rounds() -> None:
    async with overlay("memory", 2) as (a, b):
        document_id = await a.create_document(b"big", fanout=0)
        for i in range(140):  # 140 x 16 KiB: more than the 2 MiB of one get-document reply
            await a.append(document_id, bytes([i]) * (16 * 1024), fanout=0)
        read = await b.read_document(document_id)
        assert len(read.history) == 141 and read.body == bytes([139]) * (16 * 1024) and read.answered == 1
