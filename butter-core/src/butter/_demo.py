"""``butter demo``: the main job end to end on a local network on 127.0.0.1.

1. Start ``nodes`` nodes in this process, each with its own TCP port on loopback and ``static`` discovery
   (node 0 knows nobody, every other node is told node 0's address); wait until the known-host exchange has
   connected them.
2. Store a real corpus (default: every ``.py`` file of the running Python's standard library), each file
   on a random node; Peer Content Groups replicate every item to ``replicas`` nodes.
3. Kill a third of the nodes one after another, with their data and without a word (no graceful exit),
   leaving between kills the repair time the configuration implies (member timeout + one heartbeat round +
   a margin).
4. Start a fresh node that never held anything and retrieve every item from it (random TTL breadth-first
   search, then the blocks in parallel, each verified), and compare byte for byte with the files.

5. Stop every node at once, abruptly: the demo is over, nothing needs handing off.

Nothing leaves 127.0.0.1, and every phase is bounded in time. Before it starts, the demo prints how long it
expects to take, and after each phase how long is left (:mod:`butter._demo_forecast`).
"""

from __future__ import annotations

import math
import random
import sysconfig
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ._demo_forecast import PHASES, REFERENCE_SAMPLE, Forecast, duration, work_sample
from ._node import Node, open_node
from .capabilities import KeptItems
from .errors import ButterError
from .settings import ButterSettings

__all__ = ["DemoResult", "default_corpus", "run_demo"]

HEARTBEAT = 1.0  # seconds between PCG heartbeat rounds in the demo
MEMBER_TIMEOUT = 2.5 * HEARTBEAT
REPAIR = MEMBER_TIMEOUT + HEARTBEAT + 1.5  # seconds waited after each kill, at least
REPAIR_WAIT = 60.0  # seconds waited after each kill for every group to be back to 3 replicas, at most
STALL = 10.0  # seconds without any group recovering after which that wait ends early
REPLICAS = 3


@dataclass
class DemoResult:
    """What the demo saw. ``retrieved`` counts items retrieved and equal byte for byte to their file."""

    nodes: int
    items: int = 0
    bytes: int = 0
    killed: int = 0
    retrieved: int = 0
    search_requests: int = 0
    expected: float = 0.0  # seconds the demo expected to take, when it started
    phases: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def retention(self) -> float:
        return self.retrieved / self.items if self.items else 0.0

    @property
    def ok(self) -> bool:
        return self.items > 0 and self.retrieved == self.items


def default_corpus() -> Path:
    """The running Python's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path, limit: int | None = None) -> list[Path]:
    """Every ``.py`` file under ``root`` (third-party ``site-packages`` excluded), sorted; the first
    ``limit`` when given."""
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    return files[:limit] if limit else files


def _settings(transport: str, peers: list[str], seed: int, plugins: dict[str, Any]) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1",
        peers=peers,
        transport={"driver": transport, "options": {"network": f"demo-{seed}"} if transport == "memory" else {}},
        discovery={"drivers": ["static"], "options": {"static": {"interval": 0.5}}},
        host_manager={"driver": "diversity", "options": {"refresh_interval": 2.0, "exchange_interval": 0.3}},
        persistence={"driver": "pcg", "options": {"heartbeat_interval": HEARTBEAT, "member_timeout": MEMBER_TIMEOUT}},
        retrieval={"driver": "bfs"},
        request_timeout=10.0,
        plugins=plugins,
    )


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("left"), TimeRemainingColumn(), console=console, transient=False)


async def run_demo(
    nodes: int = 20,
    *,
    corpus: Path | None = None,
    limit: int | None = None,
    transport: str = "tcp",
    kill_fraction: float = 1 / 3,
    seed: int = 1,
    console: Console | None = None,
    plugins: dict[str, Any] | None = None,
) -> DemoResult:
    """Run the four phases above and print a summary; returns what happened.

    ``corpus`` is a directory whose ``.py`` files are stored (default :func:`default_corpus`), ``limit`` caps
    how many; ``plugins`` are every node's observer options (setting ``plugins``). Raises
    :class:`~butter.errors.ButterConfigError` if a driver (tcp, pcg, bfs) is missing.
    """
    console = console or Console()
    observers = plugins or {}
    rng = random.Random(seed)
    files = corpus_files(corpus or default_corpus(), limit)
    result = DemoResult(nodes)
    kills = int(nodes * kill_fraction)
    forecast = Forecast(nodes=nodes, items=len(files), kills=kills, repair=REPAIR,
                        slowness=work_sample() / REFERENCE_SAMPLE)
    size = sum(path.stat().st_size for path in files)
    result.expected = forecast.remaining()
    console.print(f"Expected duration: [bold]{duration(result.expected)}[/] for {len(files)} files "
                  f"({size / 1e6:.1f} MB) on {nodes} nodes, this machine running at {1 / forecast.slowness:.1f}x "
                  "the reference machine's speed (an estimate, updated after each phase)")
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.phases[name] = now - clock
        clock = now
        if name in PHASES:
            forecast.observe(name, result.phases[name])
        left = forecast.remaining()
        if left > 0:
            console.print(f"[dim]{name} took {result.phases[name]:.1f} s; {duration(left)} left[/]")

    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_node(_settings(transport, [], seed, observers)))
        network: list[Node] = [first]
        for _ in range(nodes - 1):
            network.append(await stack.enter_async_context(
                open_node(_settings(transport, [str(first.address)], seed, observers))))
        console.print(f"[bold]1. Started {nodes} nodes[/] on {transport}, 127.0.0.1 only "
                      f"(node 0 at {first.address}; the others were told only its address)")
        await _wait_for_overlay(network, console)
        phase("overlay")

        console.print(f"[bold]2. Storing {len(files)} files[/] from {corpus or default_corpus()}, "
                      "each on a random node")
        stored: dict[str, Path] = {}
        with _progress(console) as progress:
            task = progress.add_task("stored", total=len(files))
            for path in files:
                data = path.read_bytes()
                node = rng.choice(network)
                try:
                    stored[await node.store(data, media_type="text/x-python")] = path
                except ButterError as exc:
                    result.failures.append(f"store {path.name}: {exc}")
                result.bytes += len(data)
                progress.advance(task)
        result.items = len(stored)
        phase("store")
        await _wait_for_replicas(network, list(stored), console)
        phase("replicate")

        victims = rng.sample(network[1:], kills)
        console.print(f"[bold]3. Killing {len(victims)} nodes[/] one after another, with their data; after each, "
                      f"at least {REPAIR:.1f} s (member timeout {MEMBER_TIMEOUT:g} s + one heartbeat + margin) "
                      f"and until every group is back to {REPLICAS} replicas (at most {REPAIR_WAIT:g} s; "
                      f"less if no group recovers for {STALL:g} s)")
        with _progress(console) as progress:
            task = progress.add_task("killed", total=len(victims))
            for victim in victims:
                started = time.perf_counter()
                await victim.aclose(graceful=False)
                network.remove(victim)
                result.killed += 1
                progress.advance(task)
                await anyio.sleep(REPAIR)
                await _wait_for_replicas(network, list(stored), console, timeout=REPAIR_WAIT, stall=STALL,
                                         quiet=True)
                forecast.observe_kill(time.perf_counter() - started)
        phase("churn")

        reader = await stack.enter_async_context(
            open_node(_settings(transport, [str(network[0].address)], seed, observers)))
        console.print(f"[bold]4. Retrieving every item[/] from a fresh node ({reader.node_id[:8]}) that never held any")
        with anyio.fail_after(30):
            while not reader.hosts.peers():  # noqa: ASYNC110 (polls another object's state, bounded)
                await anyio.sleep(0.1)
        await anyio.sleep(1.0)
        before = reader.stats.requests_sent
        with _progress(console) as progress:
            task = progress.add_task("retrieved and verified", total=len(stored))
            limiter = anyio.CapacityLimiter(16)

            async def fetch(content_id: str, path: Path) -> None:
                async with limiter:
                    try:
                        data = await reader.retrieve(content_id)
                    except ButterError as exc:
                        result.failures.append(f"{path.name}: {exc}")
                        return
                if data == await anyio.Path(path).read_bytes():
                    result.retrieved += 1
                else:
                    result.failures.append(f"{path.name}: retrieved bytes differ from the file")
                progress.advance(task)

            async with anyio.create_task_group() as tg:
                for content_id, path in stored.items():
                    tg.start_soon(fetch, content_id, path)
        result.search_requests = reader.stats.requests_sent - before
        phase("retrieve")
        with anyio.CancelScope(shield=True):  # the demo is over: no hand-off, every node just stops
            for node in [*network, reader]:
                await node.aclose(graceful=False)
        phase("stop")
    _summary(result, console)
    return result


async def _wait_for_overlay(network: list[Node], console: Console, timeout: float = 60.0) -> None:
    want = min(len(network) - 1, 8)
    with _progress(console) as progress:
        task = progress.add_task(f"nodes knowing ≥ {want} peers", total=len(network))
        with anyio.move_on_after(timeout):
            while True:
                ready = sum(len(n.hosts.peers()) >= want for n in network)
                progress.update(task, completed=ready)
                if ready == len(network):
                    return
                await anyio.sleep(0.1)


async def _wait_for_replicas(network: list[Node], content_ids: list[str], console: Console,
                             timeout: float = 60.0, stall: float = math.inf, quiet: bool = False) -> None:
    """Wait (at most ``timeout`` seconds, or until ``stall`` seconds pass without one more item reaching 3
    replicas) until every item is kept by 3 live nodes, as their persistence drivers say (the
    :class:`~butter.capabilities.KeptItems` capability; without it, says so and waits not)."""
    kept = [node.capability(KeptItems) for node in network]
    if any(k is None for k in kept):
        console.print("[yellow]the persistence driver offers no KeptItems: replication cannot be watched[/]")
        return
    with _progress(console) as progress:
        progress.disable = quiet
        task = progress.add_task("items with 3 replicas", total=len(content_ids))
        best, since = -1, anyio.current_time()
        with anyio.move_on_after(timeout):
            while True:
                holders = dict.fromkeys(content_ids, 0)
                for items in kept:
                    for cid in items.kept_items() if items is not None else ():
                        if cid in holders:
                            holders[cid] += 1
                done = sum(count >= REPLICAS for count in holders.values())
                progress.update(task, completed=done)
                if done == len(content_ids):
                    return
                if done > best:
                    best, since = done, anyio.current_time()
                elif anyio.current_time() - since >= stall:
                    break
                await anyio.sleep(0.2)
    if quiet and best < len(content_ids):
        console.print(f"[yellow]  {len(content_ids) - best} item(s) still below {REPLICAS} replicas; going on[/]")


def _summary(result: DemoResult, console: Console) -> None:
    table = Table(title="butter demo", show_header=False)
    table.add_row("nodes (killed)", f"{result.nodes} ({result.killed})")
    table.add_row("items stored", f"{result.items} ({result.bytes / 1e6:.1f} MB)")
    table.add_row("retrieved and verified", f"{result.retrieved} ({result.retention:.1%})")
    per_query = result.search_requests / result.items if result.items else 0
    table.add_row("requests per item (search + blocks)", f"{per_query:.1f}")
    table.add_row("time", ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.phases.items())
                  + f"; total {sum(result.phases.values()):.1f} s (expected {result.expected:.0f} s)")
    console.print(table)
    for failure in result.failures[:10]:
        console.print(f"[red]  {failure}[/]")
    if len(result.failures) > 10:
        console.print(f"[red]  ... and {len(result.failures) - 10} more[/]")
    style = "green" if result.ok else "red"
    console.print(f"[{style}]{'OK' if result.ok else 'FAILED'}: {result.retrieved}/{result.items} items "
                  f"retrieved byte for byte after {result.killed} of {result.nodes} nodes died[/]")
