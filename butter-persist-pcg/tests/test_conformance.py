"""The persistence conformance kit (:mod:`butter.testing.conformance_persistence`) against ``pcg``, with a
0.2 s heartbeat, on asyncio and trio; once more with the ``bfs`` retrieval driver, which must find the item
after its first holder's death."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from butter.testing.conformance_persistence import PERSISTENCE_CHECKS, PersistenceFactory
from butter.testing.conformance_persistence import check_abrupt_death_of_a_holder as check_abrupt_death

pytestmark = pytest.mark.anyio
FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0}


@pytest.mark.parametrize("check", PERSISTENCE_CHECKS, ids=lambda c: c.__name__)
async def test_pcg_persistence_conformance(check: Callable[[PersistenceFactory], Awaitable[None]]) -> None:
    await check(PersistenceFactory("pcg", FAST))


async def test_pcg_items_are_retrieved_after_a_death() -> None:
    await check_abrupt_death(PersistenceFactory("pcg", FAST, retrieval="bfs"))
