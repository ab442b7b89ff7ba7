"""Encrypted items and signed mutable records over the network (issue 15, items 1, 4 and 5), over the memory
transport and over TCP on 127.0.0.1.

Encrypted items: a node stores with ``encrypt=True`` and gets a capability; another node retrieves the
plaintext with it; no holder's block store contains the plaintext; a wrong key, a tampered ciphertext and a
bad capability raise clear errors. Records: ``node.publish`` / ``node.resolve``; the newest sequence wins;
an owner key file moves between nodes; forged, replayed and misnamed records from hostile peers are refused
and counted."""

from __future__ import annotations

import dataclasses
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter
from butter import codec
from butter.encryption import Capability
from butter.records import SignedRecord, create_owner_key, load_owner_key, public_key_bytes, record_name, sign_record
from butter.testing.overlay import open_overlay, wait_for

pytestmark = pytest.mark.anyio

CID = "3f" * 32
PLAINTEXT = b"my secret diary, page one. " * 700  # ~19 KB: five blocks


def overlay(kind: str, count: int = 3, *, content: bool = False) -> AbstractAsyncContextManager[list[butter.Node]]:
    """``count`` nodes that all know each other; with ``content``, PCG keeps items and BFS retrieves them."""
    drivers = ("pcg", "bfs") if content else ("", "")
    return open_overlay(count, transport=kind, persistence=drivers[0], retrieval=drivers[1])


# -- encrypted items ------------------------------------------------------------------------------------------

async def stored_bytes(node: butter.Node) -> list[bytes]:
    return [data for block_id in await node.blocks.block_ids() if (data := await node.blocks.get(block_id))]


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_an_encrypted_item_is_read_back_with_its_capability_and_holders_see_only_ciphertext(kind: str) -> None:
    async with overlay(kind, content=True) as nodes:
        capability = await nodes[0].store(PLAINTEXT, encrypt=True)
        parsed = Capability.parse(capability)

        async def replicated() -> bool:
            return all([await n.blocks.has(parsed.content_id) for n in nodes])

        await wait_for(replicated, "the encrypted item did not reach every node")
        for node in nodes:
            blocks = await stored_bytes(node)
            assert blocks and not any(b"secret diary" in block for block in blocks)
        with anyio.fail_after(30):
            assert await nodes[-1].retrieve(capability) == PLAINTEXT
            chunks = [chunk async for chunk in nodes[1].retrieve_stream(capability)]
            ciphertext = await nodes[1].retrieve(parsed.content_id)  # the content id alone: ciphertext only
        assert chunks == [PLAINTEXT]
        assert len(ciphertext) == len(PLAINTEXT) + 16 and b"secret diary" not in ciphertext


async def test_a_wrong_key_or_a_bad_capability_raises_a_clear_error() -> None:
    async with overlay("memory", content=True) as nodes:
        capability = Capability.parse(await nodes[0].store(b"secret", encrypt=True))
        wrong = Capability(capability.content_id, bytes(32))
        with anyio.fail_after(30), pytest.raises(butter.DecryptionFailed, match="wrong key"):
            await nodes[1].retrieve(str(wrong))
        with pytest.raises(butter.InvalidCapability, match="content id"):
            await nodes[1].retrieve("bcap1:xyz:" + "A" * 43)
        with pytest.raises(ValueError, match="media type"):
            await nodes[0].store(b"secret", encrypt=True, media_type="text/plain")


async def test_a_tampered_ciphertext_is_refused() -> None:
    """A holder that alters the ciphertext and re-stores it under the altered item's own ids serves an item the
    capability's key does not authenticate: the reader gets DecryptionFailed, never altered plaintext."""
    async with overlay("memory", content=True) as nodes:
        capability = Capability.parse(await nodes[0].store(b"pay alice 10", encrypt=True))
        ciphertext = await nodes[0].retrieve(capability.content_id)
        tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
        forged_id = await nodes[0].store(tampered)
        with anyio.fail_after(30), pytest.raises(butter.DecryptionFailed):
            await nodes[1].retrieve(str(Capability(forged_id, capability.key)))


# -- signed records -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_a_published_name_resolves_everywhere_to_its_newest_value(kind: str) -> None:
    async with overlay(kind) as (a, b, c):
        first = await a.publish("blog", CID)
        assert first.name == record_name(a.identity.public_bytes, "blog")
        assert (await b.resolve(first.name)).value == CID
        second = await a.publish("blog", b"inline value")
        assert second.sequence > first.sequence
        resolved = await c.resolve(first.name)
        assert resolved == second and resolved.value == b"inline value"
        assert b.records.get(first.name, now=time.time()) == second  # pushed to every peer by the publish


async def test_an_owner_key_file_publishes_from_any_node_and_the_later_publish_wins(tmp_path: Path) -> None:
    key = create_owner_key(tmp_path / "me.pem")
    async with overlay("memory") as (a, b, c):
        on_a = await a.publish("home", b"written on a", owner=load_owner_key(tmp_path / "me.pem"))
        on_b = await b.publish("home", b"written on b", owner=key)  # the user moved to another machine
        assert on_a.name == on_b.name == record_name(public_key_bytes(key), "home") != record_name(
            a.identity.public_bytes, "home")
        assert on_b.sequence > on_a.sequence
        assert (await c.resolve(on_a.name)).value == b"written on b"
        assert (await a.resolve(on_a.name)).value == b"written on b"


async def test_an_unknown_name_is_not_found_and_a_bad_name_is_refused() -> None:
    async with overlay("memory", 2) as (a, _):
        with pytest.raises(butter.RecordNotFound, match="the 1 peer"):
            await a.resolve("ab" * 32)
        with pytest.raises(ValueError, match="64 lowercase hex"):
            await a.resolve("not-a-name")


async def test_resolve_repairs_peers_that_answered_an_older_record_or_none() -> None:
    async with overlay("memory") as (a, b, c):
        record = sign_record(Ed25519PrivateKey.generate(), "x", CID, sequence=5, expires_at=int(time.time()) + 60)
        assert a.records.offer(record, now=time.time()) == "accepted"  # only a has it
        assert await a.resolve(record.name) == record
        for node in (b, c):
            assert node.records.get(record.name, now=time.time()) == record


async def test_adversarial_forged_and_replayed_records_pushed_by_a_peer_are_refused_and_counted() -> None:
    async with overlay("memory", 2) as (a, mallory):
        genuine = await a.publish("blog", CID)
        older = sign_record(a.identity.private_key, "blog", b"old", sequence=genuine.sequence - 1,
                            expires_at=genuine.expires_at)
        forged = dataclasses.replace(genuine, sequence=genuine.sequence + 1, value=b"mallory was here")
        forged = dataclasses.replace(forged, signature=Ed25519PrivateKey.generate().sign(forged.signed_bytes()))
        outcomes = []
        for record in (forged, older, genuine):
            reply = await mallory.request(a.address, "put-record", codec.encode({"record": record.encode()}))
            outcomes.append(codec.decode_map(reply)["outcome"])
        assert outcomes == ["forged", "stale", "duplicate"]
        assert a.records.get(genuine.name, now=time.time()) == genuine
        assert a.records.counts["forged"] == 1 and a.records.counts["stale"] == 1
        with pytest.raises(butter.RemoteError) as info:
            await mallory.request(a.address, "put-record", codec.encode({"record": b"\x81\xa1v\x02"}))
        assert info.value.code == "bad-request"


async def test_adversarial_a_peer_answering_forged_misnamed_or_old_records_cannot_change_what_resolves() -> None:
    async with overlay("memory", 4) as (a, honest, liar, reader):
        genuine = await a.publish("blog", CID)
        old = sign_record(a.identity.private_key, "blog", b"old", sequence=genuine.sequence - 1,
                          expires_at=genuine.expires_at)
        forged = dataclasses.replace(genuine, sequence=genuine.sequence + 7, value=b"forged")
        other = await liar.publish("elsewhere", b"not the name asked for")
        lies = iter([forged, other, old] * 10)

        @liar.route("get-record")
        async def lie(request: butter.RouteRequest) -> bytes:
            return codec.encode({"record": next(lies).encode()})

        for name in (honest, reader):  # reader keeps what honest and a answer, never the lies
            for _ in range(3):
                assert await name.resolve(genuine.name) == genuine
        assert reader.records.counts["forged"] >= 2  # the forged and the misnamed answers
        assert reader.records.get(genuine.name, now=time.time()) == genuine


async def test_expired_records_are_neither_served_nor_kept() -> None:
    async with overlay("memory", 2) as (a, b):
        record = await a.publish("short", b"soon gone", record_expiry=1.0)
        await anyio.sleep(2.1)  # past the expiry (whole seconds)
        with pytest.raises(butter.RecordNotFound):
            await b.resolve(record.name)
        reply = await b.request(a.address, "get-record", codec.encode({"name": record.name}))
        assert codec.decode_map(reply)["record"] is None
        assert SignedRecord.decode(record.encode()) == record


async def test_get_record_with_hops_asks_the_peers_of_the_peer_first() -> None:
    async with overlay("memory") as (a, b, c):
        record = sign_record(Ed25519PrivateKey.generate(), "x", CID, sequence=1, expires_at=int(time.time()) + 60)
        a.records.offer(record, now=time.time())  # only a has it
        direct = await b.request(c.address, "get-record", codec.encode({"name": record.name}))
        assert codec.decode_map(direct)["record"] is None
        forwarded = await b.request(c.address, "get-record", codec.encode({"name": record.name, "hops": 1}))
        assert SignedRecord.decode(codec.decode_map(forwarded)["record"]) == record
        with pytest.raises(butter.RemoteError) as info:
            await b.request(c.address, "get-record", codec.encode({"name": record.name, "hops": 3}))
        assert info.value.code == "bad-request"
