import itertools
from collections.abc import Awaitable, Callable

import pytest

from butter.peers import PeerAddress
from butter.testing.conformance import TRANSPORT_CHECKS, TransportFactory
from butter.testing.memory import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


class MemoryFactory:
    """Transports without node ids, or (``authenticates=True``) each with its own."""

    def __init__(self, *, authenticates: bool = False) -> None:
        self.network = MemoryNetwork("conformance")
        self.authenticates = authenticates
        self._ids = itertools.count(1)

    def make(self, max_frame: int) -> MemoryTransport:
        node_id = f"node-{next(self._ids)}" if self.authenticates else None
        return MemoryTransport(self.network, max_frame=max_frame, node_id=node_id)

    def unused_address(self) -> PeerAddress:
        return PeerAddress("conformance", 65000)


@pytest.mark.parametrize("authenticates", [False, True], ids=["anonymous", "with-ids"])
@pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda c: c.__name__)
async def test_memory_transport_conformance(
    check: Callable[[TransportFactory], Awaitable[None]], authenticates: bool
) -> None:
    await check(MemoryFactory(authenticates=authenticates))
