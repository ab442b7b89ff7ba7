"""A small overlay of real nodes for the tests of applications and plugins: every node knows every other, on
the memory transport or on TCP over 127.0.0.1, with timers short enough for a test.

::

    from butter.testing.overlay import open_overlay, wait_for

    async with open_overlay(5, transport="tcp") as nodes:
        content_id = await nodes[0].store(b"hello")

        async def three_replicas() -> bool:
            return sum([await n.blocks.has(content_id) for n in nodes]) == 3

        await wait_for(three_replicas, "three replicas")

Every packet stays on 127.0.0.1 (TCP) or inside the process (memory transport). Nodes find each other with
``static`` discovery (each is given the addresses of those started before it) and ``diversity`` host
management polling every 0.2 s; PCG heartbeats every 0.2 s.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from .._node import Node, open_node
from ..errors import ButterConfigError
from ..settings import ButterSettings

__all__ = ["FAST_HOSTS", "open_overlay", "transport_settings", "wait_for"]

FAST_HOSTS: dict[str, float] = {"refresh_interval": 0.2, "exchange_interval": 0.2, "quality_timeout": 1.0}
"""``diversity`` host management options for tests: a host's quality polled every 0.2 s (seconds)."""

FAST_PERSISTENCE: dict[str, dict[str, Any]] = {"pcg": {"heartbeat_interval": 0.2}}


def transport_settings(kind: str) -> dict[str, Any]:
    """The ``transport`` settings of one test overlay: ``"memory"`` (a fresh memory network of its own, so
    concurrent tests never meet) or ``"tcp"`` (the default TCP transport, secure channel on, on the node's host).
    Raises :class:`~butter.errors.ButterConfigError` for any other kind."""
    if kind == "memory":
        return {"driver": "memory", "options": {"network": f"overlay-{uuid.uuid4().hex[:12]}"}}
    if kind == "tcp":
        return {"driver": "tcp"}
    raise ButterConfigError(f"unknown test transport {kind!r}: expected 'memory' or 'tcp'")


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Call ``predicate`` (plain or async) every 0.05 s until it returns true. Raises :class:`AssertionError`
    saying ``what`` did not happen within ``timeout`` seconds (default 30: generous, so a loaded machine
    passes; the bound is a failure detector, never a measurement)."""
    with anyio.move_on_after(timeout):
        while True:
            outcome = predicate()
            if await outcome if inspect.isawaitable(outcome) else outcome:
                return
            await anyio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


@asynccontextmanager
async def open_overlay(
    count: int = 3,
    *,
    transport: str = "memory",
    persistence: str | dict[str, Any] = "pcg",
    retrieval: str | dict[str, Any] = "bfs",
    timeout: float = 30.0,
    **settings: Any,
) -> AsyncIterator[list[Node]]:
    """Start ``count`` nodes on ``transport`` (see :func:`transport_settings`) and yield them, in start order,
    once each knows every other (``timeout`` seconds at most, else :class:`AssertionError`); they close on
    exit. ``persistence`` and ``retrieval`` name the drivers (``""``: none; PCG gets 0.2 s heartbeats), or are
    the whole slot settings (e.g. ``{"driver": "bfs", "options": {...}}``); ``settings`` are further
    :class:`~butter.settings.ButterSettings` fields, applied over this function's (e.g.
    ``request_timeout=3.0``). Raises
    :class:`~butter.errors.ButterConfigError` for settings the node refuses."""
    chosen = transport_settings(transport)
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        for _ in range(count):
            fields: dict[str, Any] = {
                "host": "127.0.0.1",
                "peers": [str(n.address) for n in nodes],
                "transport": chosen,
                "discovery": {"drivers": ["static"], "options": {"static": {"interval": 0.2}}},
                "host_manager": {"driver": "diversity", "options": FAST_HOSTS},
                "persistence": persistence if isinstance(persistence, dict)
                else {"driver": persistence, "options": FAST_PERSISTENCE.get(persistence, {})},
                "retrieval": retrieval if isinstance(retrieval, dict) else {"driver": retrieval},
            }
            nodes.append(await stack.enter_async_context(open_node(ButterSettings(**(fields | settings)))))
        await wait_for(lambda: all(len(n.hosts.peers()) == count - 1 for n in nodes),
                       f"the {count} nodes did not all find each other", timeout)
        yield nodes
