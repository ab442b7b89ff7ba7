"""The discovery conformance kit (:mod:`butter.testing.conformance_discovery`) against ``ambassador``, on
loopback (asyncio and trio): node 0 is the ambassador, every other node a client told its address. Each
node listens on an address of its own in 127.0.0.0/8 and ``public_prefix = 32`` makes each its own
subnetwork, so the ambassador introduces the clients to each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest

from butter.peers import PeerAddress
from butter.testing.conformance_discovery import DISCOVERY_CHECKS, DiscoveryFactory

pytestmark = pytest.mark.anyio

INTERVAL = 1.0  # seconds between a client's publish rounds
INDEX_EXPIRY = 2.5  # seconds an index entry outlives its last publish (more than a round; then a dead client is gone)


def ambassador_then_clients(index: int, earlier: Sequence[PeerAddress]) -> Mapping[str, Any]:
    return {"serve": True, "public_prefix": 32} if index == 0 else {"ambassadors": [str(earlier[0])]}


FACTORY = DiscoveryFactory(
    "ambassador",
    {"interval": INTERVAL, "index_expiry": INDEX_EXPIRY, "upnp": False, "exchange_timeout": 2.0},
    configure=ambassador_then_clients,
    host=lambda index: f"127.0.0.{index + 1}",
    messages=4,  # a client republishes every round: the ambassador dials it back (one request) per round
    forget_timeout=INDEX_EXPIRY + 2 * INTERVAL,
)


@pytest.mark.parametrize("check", DISCOVERY_CHECKS, ids=lambda c: c.__name__)
async def test_ambassador_discovery_conformance(check: Callable[[DiscoveryFactory], Awaitable[None]]) -> None:
    await check(FACTORY)
