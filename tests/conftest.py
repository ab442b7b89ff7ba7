"""Fixtures shared by the tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import butter
from butter.settings import ButterSettings


@pytest.fixture(scope="module")
def two_nodes(request: pytest.FixtureRequest) -> Iterator[tuple[BlockingPortal, butter.Node, butter.Node]]:
    """Two running TCP nodes on 127.0.0.1, the second told the first's address, and the portal they run in,
    for the command-line tests (the CLI runs its own client node in the test's thread). PCG heartbeats every
    0.3 s; a module's ``TWO_NODES_SETTINGS`` (ButterSettings fields) replaces any of these settings."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "discovery": {"drivers": []},
        "persistence": {"options": {"heartbeat_interval": 0.3}},
        "host_manager": {"options": {"refresh_interval": 1.0, "exchange_interval": 0.3}},
        **getattr(request.module, "TWO_NODES_SETTINGS", {}),
    }
    settings = ButterSettings(**values)
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(butter.open_node(settings)) as a, \
            portal.wrap_async_context_manager(butter.open_node(
                settings.model_copy(update={"peers": [str(a.address)]}))) as b:
        yield portal, a, b
