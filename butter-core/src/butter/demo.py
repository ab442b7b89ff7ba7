"""``butter demo``: a small local network on 127.0.0.1 that shows nodes finding each other and talking.

Every node runs in this process with its own port on loopback (TCP by default) and ``static`` discovery:
node 0 knows nobody, every other node is told node 0's address. The known-host exchange (SPEC §4.8) then
spreads the view until every node knows every other; each node finally sends a ``reverse`` request to a
random peer and checks the answer. Nothing leaves 127.0.0.1, and every loop is bounded in time.
"""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import ButterError
from .node import Node, RouteRequest, open_node
from .settings import ButterSettings

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What the demo saw: ``nodes`` started, seconds to a full view (``None`` if never), requests sent and
    answered correctly."""

    nodes: int
    full_view_after: float | None
    requests: int = 0
    correct: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.full_view_after is not None and self.correct == self.requests == self.nodes


def _settings(transport: str, peers: list[str]) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1",
        port=0,
        peers=peers,
        transport={"driver": transport, "options": {"network": "demo"} if transport == "memory" else {}},
        discovery={"drivers": ["static"], "options": {"static": {"interval": 0.5}}},
        host_manager={"driver": "diversity", "options": {"refresh_interval": 2.0, "exchange_interval": 0.3}},
    )


async def _reverse(request: RouteRequest) -> bytes:
    return request.body[::-1]


async def run_demo(
    nodes: int = 8, *, transport: str = "tcp", timeout: float = 30.0, console: Console | None = None
) -> DemoResult:
    """Start ``nodes`` nodes, wait (at most ``timeout`` seconds) for every node to know all the others,
    exchange one request per node, print what happened and return it.

    Raises :class:`~butter.errors.ButterConfigError` if the transport driver is not installed.
    """
    console = console or Console()
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_node(_settings(transport, [])))
        network: list[Node] = [first]
        for _ in range(nodes - 1):
            network.append(await stack.enter_async_context(open_node(_settings(transport, [str(first.address)]))))
        for node in network:
            node.route("reverse", _reverse)
        console.print(f"[bold]Started {nodes} nodes[/] on {transport} (node 0 at {first.address}); "
                      "every other node was told only node 0's address.")

        full_view_after = await _wait_for_full_view(network, timeout, console, started)
        console.print(_table(network))
        result = DemoResult(nodes, full_view_after)
        rng = random.Random(1)
        for node in network:
            peers = node.hosts.peers()
            if not peers:
                result.errors.append(f"{node.node_id[:8]} knows nobody")
                continue
            target = rng.choice(peers)
            text = f"hello from {node.node_id[:8]}"
            result.requests += 1
            try:
                answer = await node.request(target, "reverse", text.encode(), timeout=5)
            except ButterError as exc:
                result.errors.append(f"{node.node_id[:8]} -> {target.node_id[:8]}: {exc}")
                continue
            if answer == text[::-1].encode():
                result.correct += 1
            console.print(f"  {node.node_id[:8]} -> {target.node_id[:8]}  reverse({text!r}) = {answer.decode()!r}")
    _summary(result, console)
    return result


async def _wait_for_full_view(network: list[Node], timeout: float, console: Console, started: float) -> float | None:
    goal = len(network) * (len(network) - 1)
    with Progress(TextColumn("known-host links"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("links", total=goal)
        with anyio.move_on_after(timeout):
            while True:
                links = sum(len(n.hosts.peers()) for n in network)
                progress.update(task, completed=links)
                if links >= goal:
                    return time.perf_counter() - started
                await anyio.sleep(0.1)
    return None


def _table(network: list[Node]) -> Table:
    table = Table(title="Known hosts per node")
    for column in ("node", "address", "known hosts", "known by", "uptime (s)"):
        table.add_column(column)
    holders = [{p.node_id for p in node.hosts.peers()} for node in network]
    for node in network:
        known_by = sum(node.node_id in held for held in holders)
        table.add_row(node.node_id[:8], str(node.address), str(len(node.hosts.peers())), str(known_by),
                      f"{node.uptime:.1f}")
    return table


def _summary(result: DemoResult, console: Console) -> None:
    view = f"full view after {result.full_view_after:.1f} s" if result.full_view_after else "no full view"
    style = "green" if result.ok else "red"
    console.print(f"[{style}]{result.nodes} nodes, {view}, {result.correct}/{result.requests} requests answered "
                  "correctly[/]")
    for error in result.errors:
        console.print(f"[red]  {error}[/]")
