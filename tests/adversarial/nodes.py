"""Real nodes over TCP on 127.0.0.1 (secure channel on) for the hostile-peer tests, and the check run after
each attack: the target still serves an honest peer and still holds, intact, what it stored before."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import butter
from butter.blocks import load_manifest, verify
from butter.settings import ButterSettings

ITEM = os.urandom(5 * 4096 + 77)  # bytes the target stores before each attack


def tcp_settings(
    *, peers: list[str] | None = None, port: int = 0, refresh: float = 0.5, stack: bool = True,
    **transport_options: Any,
) -> ButterSettings:
    """Settings for a node on 127.0.0.1; ``stack=False``: no persistence and no retrieval (so nothing but host
    management talks to peers, and no module reports a failing peer dead behind the test's back)."""
    extra: dict[str, Any] = {} if stack else {"persistence": {"driver": ""}, "retrieval": {"driver": ""}}
    return ButterSettings(
        **extra,
        host="127.0.0.1",
        port=port,
        peers=peers or [],
        discovery={"drivers": []},
        memory_budget="64MiB",
        request_timeout=3.0,
        shutdown_timeout=1.0,
        transport={"driver": "tcp", "options": transport_options},
        host_manager={"options": {"refresh_interval": refresh, "exchange_interval": 0.5, "quality_timeout": 1.0}},
    )


@asynccontextmanager
async def target_node(refresh: float = 0.5, **transport_options: Any) -> AsyncIterator[tuple[butter.Node, str]]:
    """A node that has stored :data:`ITEM`; yields it and the item's content id."""
    async with butter.open_node(tcp_settings(refresh=refresh, **transport_options)) as node:
        yield node, await node.store(ITEM)


async def assert_intact_and_serving(node: butter.Node, content_id: str) -> None:
    """An honest node, fresh, fetches every block of the item from ``node`` over TCP and checks it."""
    manifest_bytes = await node.blocks.get(content_id)
    assert manifest_bytes is not None, "the target lost its manifest"
    manifest = load_manifest(content_id, manifest_bytes)
    async with butter.open_node(tcp_settings()) as honest:
        assert await honest.fetch_block(node.address, content_id, timeout=5) == manifest_bytes
        for address in manifest.blocks:
            local = await node.blocks.get(address)
            assert local is not None and verify(address, local), f"the target lost block {address}"
            assert await honest.fetch_block(node.address, address, timeout=5) == local
