"""Every route a full node registers (core, PCG, BFS), fed hostile bodies through the node's own dispatcher.

The node runs in-process on the memory transport (in a blocking portal, on asyncio and on trio), so a
thousand bodies take seconds; the route table's ``dispatch`` is exactly what the TCP transport calls for
each request. A reply with code ``handler-error`` means a handler raised something it did not mean to (a decoder let bad
input through): that fails the test. Afterwards the node still serves an honest peer and still holds,
intact, the item it stored before the fuzzing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import butter
from butter.blocks import load_manifest, verify
from butter.capabilities import KeptItems
from butter.settings import ButterSettings
from butter.wire import Request

from .strategies import bodies

ITEM = os.urandom(3 * 4096 + 123)
_networks = itertools.count()


@dataclass
class Target:
    portal: BlockingPortal
    node: butter.Node
    honest: butter.Node
    content_id: str


def memory_settings(network: str) -> ButterSettings:
    return ButterSettings(
        transport={"driver": "memory", "options": {"network": network}},
        discovery={"drivers": []},
        memory_budget="64MiB",
        request_timeout=1.0,
        persistence={"driver": "pcg", "options": {"heartbeat_timeout": 0.5, "fetch_timeout": 0.5}},
    )


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    network = f"adversarial-routes-{next(_networks)}"
    with start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(butter.open_node(memory_settings(network))) as node, \
                portal.wrap_async_context_manager(butter.open_node(memory_settings(network))) as honest:
            content_id = portal.call(node.store, ITEM)
            yield Target(portal, node, honest, content_id)


ROUTE_PICK = st.integers(0, 10_000)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=ROUTE_PICK, body=bodies())
def test_every_route_answers_hostile_bodies_with_deliberate_replies(target: Target, pick: int, body: bytes) -> None:
    routes = target.node.routes
    assert {"ping", "host-quality", "known-hosts", "fetch-block", "store", "pcg-join", "pcg-heartbeat",
            "bfs-query", "bfs-digest"} <= set(routes)
    route = routes[pick % len(routes)]
    reply = target.portal.call(target.node._route_table.dispatch, Request(pick, route, body))
    assert reply.id == pick
    assert reply.error is None or reply.error.code != "handler-error", (route, body, reply.error)


def test_after_the_fuzzing_the_node_serves_and_kept_its_item(target: Target) -> None:
    portal, node = target.portal, target.node
    manifest_bytes = portal.call(node.blocks.get, target.content_id)
    assert manifest_bytes is not None
    manifest = load_manifest(target.content_id, manifest_bytes)
    for address in manifest.blocks:
        data = portal.call(node.blocks.get, address)
        assert data is not None and verify(address, data)
        assert portal.call(target.honest.fetch_block, node.address, address) == data
    kept = node.capability(KeptItems)
    assert kept is not None and target.content_id in kept.kept_items()
