"""A churn simulator: hundreds to thousands of real nodes in one process, on the memory transport, under a
virtual clock (the report's churn testbed, made reproducible).

Every node runs the real protocol code (host management, persistence). Time is virtual: run it on trio with
``trio.testing.MockClock(autojump_threshold=0)`` (see :func:`run_churn_sync`), and a 30-second churn
takes only as long as the CPU needs. The churn model is the original harness's: each second every
node past its ``grace`` period dies with probability ``death_rate``, abruptly and with its data; a
replacement node (storing nothing) starts so the population stays at ``nodes``.

The same configuration (seed included) gives the same result however loaded the machine is: nothing in a
run reads the wall clock or waits for a thread, every random choice is drawn from a generator seeded from
``seed`` (node identities, host management, persistence, bfs retrieval, link loss, churn), and trio's scheduler,
which shuffles runnable tasks, is made deterministic and seeded for the run (:func:`deterministic_scheduling`).
``wall_seconds`` is the only figure that varies.

Retention is measured against ground truth: an item is retained when at least one live node keeps it (the
persistence driver's :class:`~butter.capabilities.KeptItems`) and holds its manifest. The single-copy
baseline is the real ``single`` driver (``persistence="single"``): each item stays on the node that stored
it. Maintenance traffic is read from the driver's :class:`~butter.capabilities.Counters` (PCG's heartbeats,
joins and sheds; ``single`` sends none).
"""

from __future__ import annotations

import gc
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._identity import Identity
from .._node import Node, open_node, unwrap_single_error
from ..capabilities import Counters, KeptItems
from ..errors import ButterConfigError, ButterError
from ..settings import ButterSettings, HostManagerSettings

__all__ = [
    "MAINTENANCE_COUNTERS",
    "RETRIEVAL_BATCH",
    "RETRIEVAL_COUNTERS",
    "SAMPLE_INTERVAL",
    "SIM_GC_THRESHOLD",
    "ChurnConfig",
    "ChurnResult",
    "Population",
    "Retrievals",
    "deterministic_scheduling",
    "free_network_name",
    "run_churn",
    "run_churn_sync",
]

SAMPLE_INTERVAL = 5.0
"""Virtual seconds between two samples of :attr:`ChurnResult.timeline`."""

MAINTENANCE_COUNTERS = ("heartbeats_sent", "joins_sent", "sheds")
"""The persistence driver's counters (:class:`~butter.capabilities.Counters`) that count maintenance messages."""

RETRIEVAL_COUNTERS = ("search_requests", "fetch_requests")
"""The retrieval driver's counters (:class:`~butter.capabilities.Counters`) that count a retrieval's requests."""

RETRIEVAL_BATCH = 50
"""Retrievals of ``retrieve_all`` run at once (each on its own node)."""

SIM_GC_THRESHOLD = (100_000, 50, 1000)
"""The garbage collector's thresholds (:func:`gc.set_threshold`) while :func:`run_churn_sync` runs."""


@dataclass(frozen=True)
class ChurnConfig:
    """One churn experiment. Units: seconds, bytes, probability per node per second.

    ``persistence`` is the driver every node runs (``"pcg"``, or ``"single"`` for the single-copy
    baseline); ``heartbeat`` and ``replicas`` are PCG's options (``heartbeat_interval``, ``replicas``),
    given to ``pcg`` only; ``persistence_options`` go to any driver, over those.

    ``topology`` sets who meets whom at start: an adjacency mapping of the first ``nodes`` nodes (indexes
    0 to ``nodes - 1``, in start order) to their neighbours, e.g. ``networkx.to_dict_of_lists(graph)`` of any
    networkx graph. Node ``i`` is given the addresses of its neighbours started before it as its peers
    (instead of ``bootstrap_peers`` random ones); host management then grows the overlay from there as it
    would from any first contacts. Replacements during churn still join ``bootstrap_peers`` random live
    nodes. Raises :class:`~butter.errors.ButterConfigError` (at :func:`run_churn`) for an index outside the
    population.

    Retrieval (through each node's retrieval driver, ``bfs`` by default): ``queries`` is how many items are
    retrieved while churn runs: when a node that stored an item dies, a random live node retrieves that item
    at once, until ``queries`` retrievals have been started. ``retrieve_all``: after ``settle``, every item
    is retrieved once, each by a random live node (up to :data:`RETRIEVAL_BATCH` at a time, on distinct
    nodes), as a burst of popularity would. ``linger`` is virtual seconds more, with no churn, before the
    final measurement (an hour shows whether groups shed back to their target once popularity fades).
    """

    nodes: int = 250
    death_rate: float = 0.02
    churn: float = 30.0
    grace: float = 10.0
    warmup: float = 10.0
    settle: float = 30.0
    heartbeat: float = 2.0
    replicas: int = 3
    items_per_node: int = 1
    item_size: int = 100
    bootstrap_peers: int = 4
    replace: bool = True
    latency: float = 0.0
    loss: float = 0.0
    seed: int = 1
    persistence: str = "pcg"
    persistence_options: dict[str, Any] = field(default_factory=dict)
    topology: Mapping[int, Collection[int]] | None = None
    queries: int = 0
    retrieve_all: bool = False
    linger: float = 0.0

    def check(self) -> None:
        """Raise :class:`~butter.errors.ButterConfigError` if ``topology`` names a node outside ``nodes``."""
        if self.topology is None:
            return
        named = set(self.topology) | {j for neighbours in self.topology.values() for j in neighbours}
        outside = sorted(i for i in named if not 0 <= i < self.nodes)
        if outside:
            raise ButterConfigError(f"topology names nodes {outside[:5]} outside the population 0..{self.nodes - 1}")


@dataclass
class Retrievals:
    """Retrievals made during a run.

    ``started``; ``abandoned`` (the querying node died before the answer: counted nowhere else); of the
    finished ones, ``found`` (the bytes stored came back) and the rest missed; ``requests`` (the retrieval
    driver's :data:`RETRIEVAL_COUNTERS` over the finished ones), split into ``requests_found`` and
    ``requests_missed``. Ground truth, as retention reads it: ``live`` finished retrievals whose item some
    live node kept (:class:`~butter.capabilities.KeptItems`) when the retrieval started, ``live_found`` of
    them found. A retrieval of an item the churn had already lost cannot succeed: :attr:`success_live` is
    the share that counts a search's quality, :attr:`success` the share a user sees."""

    started: int = 0
    found: int = 0
    abandoned: int = 0
    requests: int = 0
    requests_found: int = 0
    requests_missed: int = 0
    live: int = 0
    live_found: int = 0

    @property
    def finished(self) -> int:
        return self.started - self.abandoned

    @property
    def missed(self) -> int:
        """Finished retrievals that did not return the item."""
        return self.finished - self.found

    @property
    def success(self) -> float:
        """Share of the finished retrievals that found the item (1.0 when none finished)."""
        return self.found / self.finished if self.finished else 1.0

    @property
    def success_live(self) -> float:
        """Share of the finished retrievals of items still kept somewhere that found them (1.0 when none)."""
        return self.live_found / self.live if self.live else 1.0

    @property
    def requests_per_query(self) -> float:
        return self.requests / self.finished if self.finished else 0.0

    @property
    def requests_per_found(self) -> float:
        return self.requests_found / self.found if self.found else 0.0

    @property
    def requests_per_missed(self) -> float:
        return self.requests_missed / self.missed if self.missed else 0.0

    def add(self, *, found: bool, live: bool, requests: int) -> None:
        """Count one finished retrieval: whether it ``found`` the item, whether the item was ``live`` (kept by
        a live node) when it started, and the ``requests`` it sent."""
        self.found += found
        self.live += live
        self.live_found += live and found
        self.requests += requests
        if found:
            self.requests_found += requests
        else:
            self.requests_missed += requests


@dataclass
class ChurnResult:
    """What one run measured. ``timeline`` holds a sample every :data:`SAMPLE_INTERVAL` virtual seconds from
    the moment the items are stored to the end of ``settle``: ``t`` (seconds since then), ``alive`` (nodes),
    ``retention`` (share of the items some live node keeps, by :class:`~butter.capabilities.KeptItems`
    alone: the final figure also checks the manifest is held), ``replicas_per_item`` (live keepers per
    retained item) and ``maintenance_per_node_second`` (maintenance messages sent since the previous sample,
    per live node per second), ``known_hosts`` and ``known_hosts_max`` (mean and largest known-host list over
    the live nodes) and ``requests_per_node_second`` (requests sent since the previous sample, every route,
    per live node per second).

    ``requests_by_route`` is the requests sent over the whole run by route (counted by the memory network,
    :attr:`~butter.testing.memory.MemoryNetwork.requests`, so requests of nodes that died count too), per node
    per second as ``requests_per_node_second`` counts them: what grows with the population shows here.

    ``churn_queries`` are the retrievals made while churn ran (``config.queries``), ``popularity`` those of
    ``retrieve_all``; ``replicas_per_item`` is measured at the very end (after ``linger``)."""

    config: ChurnConfig
    items: int = 0
    retained: int = 0
    deaths: int = 0
    replacements: int = 0
    replicas_per_item: float = 0.0
    maintenance_per_node_second: float = 0.0
    requests_per_node_second: float = 0.0
    requests_by_route: dict[str, float] = field(default_factory=dict)
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    churn_queries: Retrievals = field(default_factory=Retrievals)
    popularity: Retrievals = field(default_factory=Retrievals)
    timeline: list[dict[str, float]] = field(default_factory=list)

    @property
    def retention(self) -> float:
        return self.retained / self.items if self.items else 1.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["retention"] = self.retention
        for name in ("churn_queries", "popularity"):
            retrievals: Retrievals = getattr(self, name)
            out[name].update(
                missed=retrievals.missed, success=retrievals.success, success_live=retrievals.success_live,
                requests_per_query=retrievals.requests_per_query, requests_per_found=retrievals.requests_per_found,
                requests_per_missed=retrievals.requests_per_missed,
            )
        return out


class Population:
    """The live nodes of one experiment on the memory network named ``network``, for drivers built beside
    :func:`run_churn` (e.g. a benchmark with its own workload).

    ``alive`` maps node id to ``(node, its cancel scope, virtual birth time)``; ``rng`` (seeded from
    ``config.seed``) draws deaths and bootstrap peers, so one seed gives one run. :meth:`spawn` starts the
    next node in a task group (settings from :meth:`settings`), :meth:`kill` stops one abruptly (no
    hand-off), counting its requests and maintenance messages in ``requests_of_dead`` and
    ``maintenance_of_dead``."""

    def __init__(self, config: ChurnConfig, network: str) -> None:
        self.config = config
        self.network = network
        self.rng = random.Random(config.seed)
        self.alive: dict[str, tuple[Node, anyio.CancelScope, float]] = {}
        self.counter = 0
        self.first: list[str] = []  # the addresses of the first ``nodes`` nodes, in start order (topology)
        self.requests_of_dead = 0
        self.maintenance_of_dead = 0
        self.items: dict[str, bytes] = {}  # content id -> the bytes stored
        self.querying: set[str] = set()  # nodes retrieving now (one retrieval per node at a time)
        self.query_rng = random.Random(config.seed + 1)  # apart from ``rng``: queries change no death
        self.template: ButterSettings | None = None  # what every node's settings share (settings())

    def settings(self) -> tuple[ButterSettings, Identity]:
        """The next node's settings and identity, every seed in them drawn from the run's ``seed``."""
        self.counter += 1
        index, topology = self.counter - 1, self.config.topology
        if topology is not None and index < self.config.nodes:
            neighbours = set(topology.get(index, ())) | {i for i, near in topology.items() if index in near}
            peers = [self.first[i] for i in sorted(neighbours) if i < index]
        else:
            peers = [str(n.address) for n, _, _ in self.rng.sample(
                list(self.alive.values()), min(self.config.bootstrap_peers, len(self.alive)))]
        seed = self.config.seed * 1_000_003 + self.counter
        if self.template is None:  # read the environment (BUTTER_*) and validate once, not once per node
            self.template = ButterSettings(
                host="127.0.0.1",
                transport={"driver": "memory", "options": {"network": self.network}},
                discovery={"drivers": ["static"], "options": {"static": {"interval": 1.0}}},
                persistence={"driver": self.config.persistence, "options": self._persistence_options(seed)},
            )
        template = self.template
        update: dict[str, Any] = {
            "peers": peers,  # live nodes' own addresses: valid
            "host_manager": HostManagerSettings(driver="diversity", options={"seed": seed}),
            "persistence": template.persistence.model_copy(update={"options": self._persistence_options(seed)}),
        }
        if template.retrieval.driver == "bfs":  # the retrieval driver is the environment's, bfs by default
            update["retrieval"] = template.retrieval.model_copy(
                update={"options": {**template.retrieval.options, "seed": seed}})
        key = Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))
        return template.model_copy(update=update), Identity(key)

    def _persistence_options(self, seed: int) -> dict[str, Any]:
        pcg = {"replicas": self.config.replicas, "heartbeat_interval": self.config.heartbeat, "seed": seed}
        return {**(pcg if self.config.persistence == "pcg" else {}), **self.config.persistence_options}

    def requests(self) -> Counter[str]:
        """Requests sent on the run's network so far, by route (its ``MemoryNetwork.requests``)."""
        from .memory import MemoryNetwork

        return MemoryNetwork.named(self.network).requests

    async def spawn(self, tg: TaskGroup) -> Node:
        node: Node = await tg.start(self._life, *self.settings())
        if len(self.first) < self.config.nodes:
            self.first.append(str(node.address))
        return node

    async def _life(self, settings: ButterSettings, identity: Identity, *, task_status: TaskStatus[Node]) -> None:
        scope = anyio.CancelScope()
        with scope:
            async with open_node(settings, identity=identity) as node:
                if not isinstance(node.persistence, KeptItems):
                    raise ButterConfigError(f"the simulator counts kept items: persistence driver "
                                            f"{self.config.persistence!r} does not offer KeptItems")
                self.alive[node.node_id] = (node, scope, anyio.current_time())
                task_status.started(node)
                await anyio.sleep_forever()

    async def retrieve(self, content_id: str, tally: Retrievals) -> None:
        """Retrieve ``content_id`` from a random live node not retrieving already, and count the outcome
        in ``tally``; a node that dies meanwhile makes it ``abandoned``."""
        idle = [node_id for node_id in self.alive if node_id not in self.querying]
        if not idle:
            return
        node_id = self.query_rng.choice(idle)
        node = self.alive[node_id][0]
        self.querying.add(node_id)
        tally.started += 1
        live = self.kept_anywhere(content_id)
        before = _retrieval_requests(node)
        try:
            found = await node.retrieve(content_id) == self.items[content_id]
        except ButterError:
            found = False
        finally:
            self.querying.discard(node_id)
        if node_id not in self.alive:
            tally.abandoned += 1
            return
        tally.add(found=found, live=live, requests=_retrieval_requests(node) - before)

    def kept_anywhere(self, content_id: str) -> bool:
        """Whether some live node keeps ``content_id`` (:class:`~butter.capabilities.KeptItems`); reads memory
        only, so asking does not change the run."""
        return any(content_id in _kept(node) for node, _, _ in self.alive.values())

    async def kill(self, node_id: str) -> None:
        node, scope, _ = self.alive.pop(node_id)
        self.requests_of_dead += node.stats.requests_sent
        self.maintenance_of_dead += _maintenance(node)
        await node.aclose(graceful=False)
        scope.cancel()


def _retrieval_requests(node: Node) -> int:
    """Requests ``node``'s retrieval driver sent for its retrievals (its :data:`RETRIEVAL_COUNTERS`)."""
    if not isinstance(node.retrieval, Counters):
        return 0
    counters = node.retrieval.counters()
    return sum(counters.get(name, 0) for name in RETRIEVAL_COUNTERS)


def _maintenance(node: Node) -> int:
    """Maintenance messages ``node``'s persistence driver sent (its :data:`MAINTENANCE_COUNTERS`)."""
    if not isinstance(node.persistence, Counters):
        return 0
    counters = node.persistence.counters()
    return sum(counters.get(name, 0) for name in MAINTENANCE_COUNTERS)


def _kept(node: Node) -> Collection[str]:
    """The items ``node``'s persistence driver keeps (:class:`~butter.capabilities.KeptItems`; none without it)."""
    return node.persistence.kept_items() if isinstance(node.persistence, KeptItems) else ()


async def _holders(population: Population, content_ids: list[str]) -> list[int]:
    """For each item, the live nodes that keep it (KeptItems) and hold its manifest."""
    counts = dict.fromkeys(content_ids, 0)
    for node, _, _ in population.alive.values():
        for content_id in counts.keys() & set(_kept(node)):
            counts[content_id] += await node.blocks.has(content_id)
    return [counts[content_id] for content_id in content_ids]


async def run_churn(config: ChurnConfig, on_progress: Callable[[str, float], None] | None = None) -> ChurnResult:
    """Run one experiment; ``on_progress(phase, fraction)`` is called as virtual time passes."""
    from .memory import MemoryNetwork

    config.check()
    wall = time.perf_counter()
    network_name = free_network_name(f"sim-{config.seed}")
    network = MemoryNetwork.named(network_name)
    network.latency, network.loss = config.latency, config.loss
    network._random.seed(config.seed)
    network.requests.clear()  # a network kept from an earlier run under this name starts counting afresh
    population = Population(config, network_name)
    result = ChurnResult(config)
    with unwrap_single_error():
        async with anyio.create_task_group() as tg:
            await _experiment(population, result, tg, on_progress or (lambda phase, fraction: None))
            tg.cancel_scope.cancel()
    result.wall_seconds = time.perf_counter() - wall
    return result


async def _experiment(
    population: Population, result: ChurnResult, tg: TaskGroup, progress: Callable[[str, float], None]
) -> None:
    """Start the nodes in ``tg``, store, churn, settle, then measure into ``result``."""
    config = population.config
    start = anyio.current_time()
    for i in range(config.nodes):
        await population.spawn(tg)
        progress("starting", (i + 1) / config.nodes)
    content_ids: list[str] = []
    stored: dict[str, list[str]] = {}  # node id -> the content ids it stored
    payload_rng = random.Random(config.seed)
    for node, _, _ in list(population.alive.values()):
        for _ in range(config.items_per_node):
            data = bytes(payload_rng.getrandbits(8) for _ in range(config.item_size))
            content_ids.append(await node.store(data))
            stored.setdefault(node.node_id, []).append(content_ids[-1])
            population.items[content_ids[-1]] = data
    result.items = len(content_ids)
    sampler = _Sampler(population, result, content_ids)
    await sampler.sleep(config.warmup)
    async with anyio.create_task_group() as queries:  # exits once the retrievals started during churn end
        for second in range(int(config.churn)):
            now = anyio.current_time()
            for node_id, (_, _, born) in list(population.alive.items()):
                if now - born >= config.grace and population.rng.random() < config.death_rate:
                    await population.kill(node_id)
                    result.deaths += 1
                    for content_id in stored.get(node_id, ()):
                        if result.churn_queries.started < config.queries:
                            queries.start_soon(population.retrieve, content_id, result.churn_queries)
                    if config.replace:
                        await population.spawn(tg)
                        result.replacements += 1
            progress("churn", (second + 1) / config.churn)
            await sampler.sleep(1.0)
    await sampler.sleep(config.settle)
    if config.retrieve_all:
        for first in range(0, len(content_ids), RETRIEVAL_BATCH):
            async with anyio.create_task_group() as batch:
                for content_id in content_ids[first:first + RETRIEVAL_BATCH]:
                    batch.start_soon(population.retrieve, content_id, result.popularity)
            progress("retrieving", min(1.0, (first + RETRIEVAL_BATCH) / len(content_ids)))
    await sampler.sleep(config.linger)
    progress("measuring", 1.0)
    holders = await _holders(population, content_ids)
    result.retained = sum(1 for h in holders if h > 0)
    kept = [h for h in holders if h > 0]
    result.replicas_per_item = sum(kept) / len(kept) if kept else 0.0
    result.virtual_seconds = anyio.current_time() - start
    node_seconds = (config.nodes + result.replacements) * result.virtual_seconds or 1.0
    alive = [n for n, _, _ in population.alive.values()]
    requests = population.requests_of_dead + sum(n.stats.requests_sent for n in alive)
    maintenance = population.maintenance_of_dead + sum(_maintenance(n) for n in alive)
    result.requests_per_node_second = requests / node_seconds
    by_route = sorted(population.requests().items())
    result.requests_by_route = {route: count / node_seconds for route, count in by_route}
    result.maintenance_per_node_second = maintenance / node_seconds


class _Sampler:
    """Sleeps in virtual time, appending a sample to ``result.timeline`` every :data:`SAMPLE_INTERVAL`
    seconds. A sample reads memory only (never awaits), so taking one does not change the run."""

    def __init__(self, population: Population, result: ChurnResult, content_ids: list[str]) -> None:
        self.population, self.result, self.content_ids = population, result, content_ids
        self.start = self.last = anyio.current_time()
        self.sent = self._maintenance()
        self.requests = self._requests()
        self._sample()

    async def sleep(self, seconds: float) -> None:
        end = anyio.current_time() + seconds
        while (now := anyio.current_time()) < end:
            due = self.last + SAMPLE_INTERVAL
            await anyio.sleep(min(end, due) - now)
            if anyio.current_time() >= due:
                self._sample()

    def _maintenance(self) -> int:
        alive = (n for n, _, _ in self.population.alive.values())
        return self.population.maintenance_of_dead + sum(_maintenance(n) for n in alive)

    def _requests(self) -> int:
        return sum(self.population.requests().values())

    def _sample(self) -> None:
        now, alive = anyio.current_time(), [n for n, _, _ in self.population.alive.values()]
        keepers = dict.fromkeys(self.content_ids, 0)
        for node in alive:
            for content_id in keepers.keys() & set(_kept(node)):
                keepers[content_id] += 1
        retained = [count for count in keepers.values() if count]
        sent, requests, elapsed = self._maintenance(), self._requests(), now - self.last
        known = [len(node.hosts.peers()) for node in alive]
        node_seconds = len(alive) * elapsed
        self.result.timeline.append({
            "t": round(now - self.start, 3), "alive": len(alive),
            "retention": len(retained) / len(keepers) if keepers else 1.0,
            "replicas_per_item": sum(retained) / len(retained) if retained else 0.0,
            "maintenance_per_node_second": (sent - self.sent) / node_seconds if node_seconds else 0.0,
            "known_hosts": sum(known) / len(known) if known else 0.0, "known_hosts_max": max(known, default=0),
            "requests_per_node_second": (requests - self.requests) / node_seconds if node_seconds else 0.0,
        })
        self.last, self.sent, self.requests = now, sent, requests


def free_network_name(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ... when a run in progress uses it. The name is part of every
    address, and addresses are hashed into sets: a name that differed between runs (an object id, a
    counter) would change set orders, and with them the run."""
    from .memory import MemoryNetwork

    name, n = base, 1
    while (network := MemoryNetwork._named.get(name)) is not None and network.addresses:
        n += 1
        name = f"{base}-{n}"
    return name


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Make trio's scheduler deterministic while the block runs, then restore it.

    trio runs each batch of runnable tasks in an order drawn from an unseeded generator (reversed half
    the time), and breaks ties between timers due at the same instant by object id (a memory address):
    either changes a simulation from run to run. trio's own switch for Hypothesis (sort each batch by task
    creation order, then shuffle it with trio's generator) is turned on here, with that generator seeded
    from ``seed``. These are trio internals (checked with trio 0.35); if they are gone this raises
    :class:`~butter.errors.ButterConfigError` rather than run a simulation that cannot be reproduced.
    """
    from trio._core import _run

    if not (hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING") and isinstance(getattr(_run, "_r", None),
                                                                           random.Random)):
        raise ButterConfigError("this trio version has no deterministic scheduling switch: the simulator "
                                "cannot promise reproducible runs")
    allowed, state = _run._ALLOW_DETERMINISTIC_SCHEDULING, _run._r.getstate()
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = allowed  # type: ignore[misc]
        _run._r.setstate(state)


@contextmanager
def _collect_rarely() -> Iterator[None]:
    """Run the block with the garbage collector's thresholds at :data:`SIM_GC_THRESHOLD`, then restore them.

    A simulation allocates millions of short-lived objects (requests, tasks, cancel scopes) on a heap of
    thousands of nodes; at Python's default (700, 10, 10) the collector walks that heap again and again.
    Only the simulation's own process-wide run (:func:`run_churn_sync`) sets this, never the library."""
    old = gc.get_threshold()
    gc.set_threshold(*SIM_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def run_churn_sync(config: ChurnConfig, on_progress: Callable[[str, float], None] | None = None) -> ChurnResult:
    """Run :func:`run_churn` on trio under a virtual clock (``MockClock(autojump_threshold=0)``) with
    deterministic scheduling (:func:`deterministic_scheduling`): the same ``config`` gives the same result.
    The garbage collector runs less often meanwhile (:data:`SIM_GC_THRESHOLD`), restored after."""
    from trio.testing import MockClock

    with deterministic_scheduling(config.seed), _collect_rarely():
        return anyio.run(run_churn, config, on_progress, backend="trio",
                         backend_options={"clock": MockClock(autojump_threshold=0)})
