"""The persistence conformance kit (:mod:`butter.testing.conformance_persistence`) against ``pcg``, with a
0.2 s heartbeat, on asyncio and trio; once more with the ``bfs`` retrieval driver, which must find the item
after its first holder's death. pcg offers every persistence capability, so the kit's capability check
holds it to all of them; variants of pcg that misreport one show that the check can fail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import pytest

from butter.capabilities import ReplicaStatus
from butter.hookspecs import hookimpl
from butter.peers import PeerAddress
from butter.slots import NodeServices
from butter.testing.conformance_persistence import PERSISTENCE_CHECKS, PersistenceFactory, check_capabilities
from butter.testing.conformance_persistence import check_abrupt_death_of_a_holder as check_abrupt_death
from butter_persist_pcg import PcgOptions, PcgPersistence

pytestmark = pytest.mark.anyio
FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "fetch_timeout": 1.0}


@pytest.mark.parametrize("check", PERSISTENCE_CHECKS, ids=lambda c: c.__name__)
async def test_pcg_persistence_conformance(check: Callable[[PersistenceFactory], Awaitable[None]]) -> None:
    await check(PersistenceFactory("pcg", FAST))


async def test_pcg_items_are_retrieved_after_a_death() -> None:
    await check_abrupt_death(PersistenceFactory("pcg", FAST, retrieval="bfs"))


class Misreporting(PcgPersistence):
    """pcg, but one capability misreports (``flaw``)."""

    def __init__(self, node: NodeServices, flaw: str) -> None:
        super().__init__(node, PcgOptions(**FAST))
        self.flaw = flaw

    def holders(self, content_id: str) -> list[PeerAddress]:
        named = super().holders(content_id)
        return named[:1] if self.flaw == "holders" else named

    def kept_items(self) -> list[str]:
        return [*super().kept_items(), "ab" * 32] if self.flaw == "kept_items" else super().kept_items()

    def group_status(self, content_id: str) -> ReplicaStatus | None:
        status = super().group_status(content_id)
        if self.flaw == "group_status" and status is not None:
            return ReplicaStatus(status.replicas + 1, status.target + 1, status.state, ())
        return status

    def counters(self) -> Mapping[str, int]:
        return {**super().counters(), "sheds": -1} if self.flaw == "counters" else super().counters()


class MisreportingPlugin:
    def __init__(self, flaw: str) -> None:
        self.flaw = flaw

    @hookimpl
    def butter_persistence(self, node: NodeServices) -> Misreporting:
        return Misreporting(node, self.flaw)


@pytest.mark.parametrize("flaw", ["holders", "kept_items", "group_status", "counters"])
async def test_the_capability_check_catches_a_misreporting_driver(flaw: str) -> None:
    with pytest.raises(AssertionError, match=rf"{flaw}\("):
        await check_capabilities(PersistenceFactory("", bound=2.0, plugins=(MisreportingPlugin(flaw),)))
