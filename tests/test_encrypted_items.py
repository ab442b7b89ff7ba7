"""Encrypted items end to end (issue 15, item 4), over the memory transport and over TCP on 127.0.0.1: a node
stores with ``encrypt=True`` and gets a capability; another node retrieves the plaintext with it; no holder's
block store contains the plaintext; a wrong key, a tampered block and a bad capability raise clear errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import butter
from butter.encryption import Capability

pytestmark = pytest.mark.anyio

NODES = 3
PLAINTEXT = b"my secret diary, page one. " * 700  # ~19 KB: five blocks
HOSTS = {"refresh_interval": 0.2, "exchange_interval": 0.2, "quality_timeout": 1.0}


def transport(kind: str) -> dict[str, Any]:
    if kind == "memory":
        return {"driver": "memory", "options": {"network": f"enc-{uuid.uuid4().hex[:12]}"}}
    pytest.importorskip("butter_transport_tcp", reason="butter-transport-tcp is not installed")
    return {"driver": "tcp"}


async def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    with anyio.move_on_after(timeout):
        while not await predicate():
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"{what} within {timeout} s")


@asynccontextmanager
async def overlay(kind: str) -> AsyncIterator[list[butter.Node]]:
    pytest.importorskip("butter_persist_pcg", reason="butter-persist-pcg is not installed")
    pytest.importorskip("butter_retrieve_bfs", reason="butter-retrieve-bfs is not installed")
    chosen = transport(kind)
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for _ in range(NODES):
            settings = butter.ButterSettings(
                host="127.0.0.1", peers=[str(n.address) for n in nodes], transport=chosen,
                discovery={"drivers": ["static"], "options": {"static": {"interval": 0.2}}},
                host_manager={"driver": "diversity", "options": HOSTS},
                persistence={"driver": "pcg", "options": {"heartbeat_interval": 0.2}},
                retrieval={"driver": "bfs"},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))

        async def everyone_knows_everyone() -> bool:
            return all(len(n.hosts.peers()) == NODES - 1 for n in nodes)

        await wait_for(everyone_knows_everyone, "the nodes did not all find each other")
        yield nodes


async def stored_bytes(node: butter.Node) -> list[bytes]:
    return [data for block_id in await node.blocks.block_ids() if (data := await node.blocks.get(block_id))]


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_an_encrypted_item_is_read_back_with_its_capability_and_holders_see_only_ciphertext(kind: str) -> None:
    async with overlay(kind) as nodes:
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
    async with overlay("memory") as nodes:
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
    async with overlay("memory") as nodes:
        capability = Capability.parse(await nodes[0].store(b"pay alice 10", encrypt=True))
        ciphertext = await nodes[0].retrieve(capability.content_id)
        tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
        forged_id = await nodes[0].store(tampered)
        with anyio.fail_after(30), pytest.raises(butter.DecryptionFailed):
            await nodes[1].retrieve(str(Capability(forged_id, capability.key)))
