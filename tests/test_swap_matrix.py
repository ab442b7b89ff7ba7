"""Every slot truly swappable: store and retrieve across every installed persistence × retrieval pair
(``pcg``, ``single`` × ``bfs``, ``flood`` in this repository), on the memory transport, on asyncio and trio.

Five nodes find each other (static discovery, fast ``diversity`` host management); node 0 stores an item of
several blocks; a node that holds none of it (ground truth: its block store has no manifest) retrieves it,
and the bytes must come back equal."""

from __future__ import annotations

import random

import anyio
import pytest

from butter import installed_drivers
from butter.testing.overlay import open_overlay

pytestmark = pytest.mark.anyio

NODES = 5
PAIRS = [(p, r) for p in installed_drivers("butter.persistence") for r in installed_drivers("butter.retrieval")]


def test_the_matrix_covers_the_drivers_of_this_repository() -> None:
    assert {("pcg", "bfs"), ("pcg", "flood"), ("single", "bfs"), ("single", "flood")} <= set(PAIRS)


@pytest.mark.parametrize(("persistence", "retrieval"), PAIRS, ids=[f"{p}-{r}" for p, r in PAIRS])
async def test_store_on_one_node_retrieve_from_another(persistence: str, retrieval: str) -> None:
    async with open_overlay(NODES, persistence=persistence, retrieval=retrieval) as nodes:
        data = random.Random(1).randbytes(3 * 4096 + 100)
        content_id = await nodes[0].store(data)
        await anyio.sleep(0.5)  # replication, for drivers that replicate
        readers = [n for n in nodes[1:] if not await n.blocks.has(content_id)]
        assert readers, f"{persistence} left no node without the item to retrieve it"
        with anyio.fail_after(10):
            assert await readers[-1].retrieve(content_id) == data, f"{retrieval} over {persistence}: other bytes"
