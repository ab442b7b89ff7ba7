"""The retrieval conformance kit (:mod:`butter.testing.conformance_retrieval`) against ``bfs``, with its
default options, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from butter.testing.conformance_retrieval import RETRIEVAL_CHECKS, RetrievalFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", RETRIEVAL_CHECKS, ids=lambda c: c.__name__)
async def test_bfs_retrieval_conformance(check: Callable[[RetrievalFactory], Awaitable[None]]) -> None:
    await check(RetrievalFactory("bfs"))
