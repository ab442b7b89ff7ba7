"""The discovery conformance kit for ``multicast``, run by ``test_discovery_kit.py`` in a subprocess inside a
network namespace that test creates, and nowhere else: multicast never leaves the namespace's own bridge.

Every node listens on the namespace's ``eth0`` address (given in ``KIT_MULTICAST_HOST``, port 0), so the
beacons go out on ``eth0`` and loop back to the other nodes of the same host. Not collected on its own (its
name does not start with ``test_``); collected explicitly outside such a namespace, it skips.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest

from butter.testing.conformance_discovery import DISCOVERY_CHECKS, DiscoveryFactory

from .harness import PREFIX

HOST_VARIABLE = "KIT_MULTICAST_HOST"  # the eth0 address of the namespace's host
NAMESPACE_VARIABLE = "KIT_MULTICAST_NAMESPACE"  # the name of the namespace test_discovery_kit.py created


def in_the_created_namespace() -> bool:
    """Whether this process runs in the lab's network namespace named in ``KIT_MULTICAST_NAMESPACE``."""
    name = os.environ.get(NAMESPACE_VARIABLE, "")
    try:
        mine, lab = os.stat("/proc/self/ns/net"), os.stat(f"/run/netns/{name}")
    except OSError:
        return False
    return name.startswith(f"{PREFIX}-") and (mine.st_dev, mine.st_ino) == (lab.st_dev, lab.st_ino)


pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not (os.environ.get(HOST_VARIABLE) and in_the_created_namespace()),
                       reason="multicast is sent only inside the network namespace test_discovery_kit.py creates"),
]

FACTORY = DiscoveryFactory(
    "multicast",
    {"interval": 0.2, "answer_interval": 0.1},
    host=lambda index: os.environ[HOST_VARIABLE],
    settle=1.0,  # answers to the pings of a lonely node may still be in flight once it knows a peer
    window=1.0,
)


@pytest.mark.parametrize("check", DISCOVERY_CHECKS, ids=lambda c: c.__name__)
async def test_multicast_discovery_conformance(check: Callable[[DiscoveryFactory], Awaitable[None]]) -> None:
    await check(FACTORY)
