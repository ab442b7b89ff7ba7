"""butter-retrieve-flood against Butter's retrieval conformance kit (:mod:`butter.testing.conformance_retrieval`):
the kit builds the overlay and loads the driver by its entry-point name, as a user's setting would. Runs on
asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from butter.testing.conformance_retrieval import RETRIEVAL_CHECKS, RetrievalFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", RETRIEVAL_CHECKS, ids=lambda c: c.__name__)
async def test_flood_retrieval_conformance(check: Callable[[RetrievalFactory], Awaitable[None]]) -> None:
    await check(RetrievalFactory("flood"))  # the entry-point name is all the kit needs
