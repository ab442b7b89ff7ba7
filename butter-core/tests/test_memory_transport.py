from collections.abc import Awaitable, Callable

import pytest

from butter.peers import PeerAddress
from butter.testing.conformance import TRANSPORT_CHECKS, TransportFactory
from butter.testing.memory import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


class MemoryFactory:
    def __init__(self) -> None:
        self.network = MemoryNetwork("conformance")

    def make(self, max_frame: int) -> MemoryTransport:
        return MemoryTransport(self.network, max_frame=max_frame)

    def unused_address(self) -> PeerAddress:
        return PeerAddress("conformance", 65000)


@pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda c: c.__name__)
async def test_memory_transport_conformance(check: Callable[[TransportFactory], Awaitable[None]]) -> None:
    await check(MemoryFactory())
