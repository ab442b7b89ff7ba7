"""Every slot truly swappable: store and retrieve across every installed persistence × retrieval pair
(``pcg``, ``single`` × ``bfs``, ``flood`` in this repository), on the memory transport, on asyncio and trio.

Five nodes find each other (static discovery, fast ``diversity`` host management); node 0 stores an item of
several blocks; a node that holds none of it (ground truth: its block store has no manifest) retrieves it,
and the bytes must come back equal."""

from __future__ import annotations

import random
import uuid
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import butter
from butter import installed_drivers

pytestmark = pytest.mark.anyio

NODES = 5
HOSTS = {"refresh_interval": 0.2, "exchange_interval": 0.2, "quality_timeout": 1.0}
FAST: dict[str, dict[str, Any]] = {"pcg": {"heartbeat_interval": 0.2}}  # persistence options: short timers
PAIRS = [(p, r) for p in installed_drivers("butter.persistence") for r in installed_drivers("butter.retrieval")]


def test_the_matrix_covers_the_drivers_of_this_repository() -> None:
    assert {("pcg", "bfs"), ("pcg", "flood"), ("single", "bfs"), ("single", "flood")} <= set(PAIRS)


async def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    with anyio.move_on_after(timeout):
        while not await predicate():
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"{what} within {timeout} s")


@pytest.mark.parametrize(("persistence", "retrieval"), PAIRS, ids=[f"{p}-{r}" for p, r in PAIRS])
async def test_store_on_one_node_retrieve_from_another(persistence: str, retrieval: str) -> None:
    network = f"swap-{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for _ in range(NODES):
            settings = butter.ButterSettings(
                host="127.0.0.1", peers=[str(n.address) for n in nodes],
                transport={"driver": "memory", "options": {"network": network}},
                discovery={"drivers": ["static"], "options": {"static": {"interval": 0.2}}},
                host_manager={"driver": "diversity", "options": HOSTS},
                persistence={"driver": persistence, "options": FAST.get(persistence, {})},
                retrieval={"driver": retrieval},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))

        async def everyone_knows_everyone() -> bool:
            return all(len(n.hosts.peers()) == NODES - 1 for n in nodes)

        await wait_for(everyone_knows_everyone, "the nodes did not all find each other")
        data = random.Random(1).randbytes(3 * 4096 + 100)
        content_id = await nodes[0].store(data)
        await anyio.sleep(0.5)  # replication, for drivers that replicate
        readers = [n for n in nodes[1:] if not await n.blocks.has(content_id)]
        assert readers, f"{persistence} left no node without the item to retrieve it"
        with anyio.fail_after(10):
            assert await readers[-1].retrieve(content_id) == data, f"{retrieval} over {persistence}: other bytes"
