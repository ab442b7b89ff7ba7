"""The retrieval conformance kit (:mod:`butter.testing.conformance_retrieval`) against ``bfs``, with its
default options, on asyncio and trio; and variants of bfs that show the kit's capability checks can fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest

from butter.capabilities import ItemHolders
from butter.errors import ItemNotFound
from butter.hookspecs import hookimpl
from butter.slots import NodeServices
from butter.testing.conformance_retrieval import (
    RETRIEVAL_CHECKS,
    RetrievalFactory,
    check_counters,
    check_without_persistence_capabilities,
)
from butter_retrieve_bfs import BfsOptions, BfsRetrieval

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", RETRIEVAL_CHECKS, ids=lambda c: c.__name__)
async def test_bfs_retrieval_conformance(check: Callable[[RetrievalFactory], Awaitable[None]]) -> None:
    await check(RetrievalFactory("bfs"))


class NeedsHolders(BfsRetrieval):
    """bfs, but it refuses to search without an ItemHolders capability instead of degrading."""

    async def retrieve(self, content_id: str, **_: object) -> bytes:
        if self.node.capability(ItemHolders) is None:
            raise ItemNotFound("no ItemHolders: refusing to search")
        return await super().retrieve(content_id)

    async def stream(self, content_id: str, **_: object) -> AsyncIterator[bytes]:
        if self.node.capability(ItemHolders) is None:
            raise ItemNotFound("no ItemHolders: refusing to search")
        async for block in super().stream(content_id):
            yield block


class SharedCounters(BfsRetrieval):
    """bfs, but ``counters()`` hands out its own mutable state, not a snapshot."""

    def __init__(self, node: NodeServices, options: BfsOptions) -> None:
        super().__init__(node, options)
        self.state = {"retrievals": 0}

    def counters(self) -> Mapping[str, int]:
        return self.state


class Variant:
    def __init__(self, cls: type[BfsRetrieval]) -> None:
        self.cls = cls

    @hookimpl
    def butter_retrieval(self, node: NodeServices) -> BfsRetrieval:
        return self.cls(node, BfsOptions())


async def test_the_kit_catches_a_driver_that_needs_item_holders() -> None:
    with pytest.raises(ItemNotFound, match="no ItemHolders"):
        await check_without_persistence_capabilities(RetrievalFactory("", bound=3.0, plugins=(Variant(NeedsHolders),)))


async def test_the_kit_catches_counters_that_are_not_a_snapshot() -> None:
    with pytest.raises(AssertionError, match="snapshot"):
        await check_counters(RetrievalFactory("", plugins=(Variant(SharedCounters),)))
