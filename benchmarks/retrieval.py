"""The report's retrieval experiment IR1 on the simulator: exhaustive BFS vs random BFS vs ``bfs``'s defaults.

    uv run python benchmarks/retrieval.py                  # 100 nodes (dense, sparse) and 1,000 nodes, 100 queries
    uv run python benchmarks/retrieval.py --quick          # 100 nodes only (dense and sparse)
    uv run python benchmarks/retrieval.py --sweep          # 100 nodes: the parameter sweep behind the defaults
    uv run python benchmarks/retrieval.py --host-manager random   # the baseline: Gnutella-style known hosts

Setup: ``n`` nodes on the memory transport under trio's MockClock (virtual time, 5 ms
latency each way), each with the default stack (diversity host management, PCG persistence with r = 3 and a
2 s heartbeat, bfs retrieval), bootstrapped from 4 random earlier nodes (static discovery). Each node stores
one random 100-byte item. Fresh nodes that store nothing (1 on 100 nodes, n / 50 above 300 nodes) join
15 s (10 s) before the end of the warm-up (40 s; 20 s above 300 nodes: groups form, known hosts spread,
digests are pulled); then each retrieves its share of ``queries`` ids, one at a time, with every strategy in
turn (the order rotated per id) on the same network. No churn. Measured per retrieval: requests sent
(search and block fetch apart), replies received, success (bytes equal to what was stored), latency on the
virtual clock and on the wall clock (the latter includes simulating every other node meanwhile). Ground
truth: the number of live nodes holding each item before the queries. Also the digest pulls per node per
second, and on 100 nodes a further 120 s with no queries (requests answered per route, holders per item at its end).
The sparse run caps known hosts at 8 per node.
Above 300 nodes the flood strategies (n requests per query) and "defaults, no hints" are skipped (--all).
``--host-manager random`` runs the same with the ``random`` host manager (admit while there is room, evict
at random when full): the baseline that shows what diverse known-host lists buy retrieval.

Writes benchmarks/results/retrieval.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from butter import Node, hookimpl, open_node
from butter.errors import ButterError
from butter.settings import ButterSettings
from butter.testing.memory import MemoryNetwork
from butter_retrieve_bfs import BfsOptions, BfsRetrieval, Ring

OUT = Path(__file__).parent / "results" / "retrieval.json"
DEFAULTS = BfsOptions()


@dataclass(frozen=True)
class Strategy:
    name: str
    rings: tuple[Ring, ...]
    parallelism: int
    hints: bool

    def describe(self) -> str:
        rings = " then ".join(f"TTL {r.ttl or '∞'} f {r.fraction:g}" for r in self.rings)
        return f"{rings}, P {self.parallelism}, hints {'on' if self.hints else 'off'}"


def ir1_strategies() -> list[Strategy]:
    p = DEFAULTS.parallelism
    exhaustive = (Ring(ttl=None, fraction=1.0),)
    random_bfs = (Ring(ttl=4, fraction=0.5),)
    return [
        Strategy("BFS exhaustive, flood", exhaustive, 1024, False),
        Strategy("RBFS 0.5, flood", random_bfs, 1024, False),
        Strategy("BFS exhaustive", exhaustive, p, False),
        Strategy("RBFS 0.5", random_bfs, p, False),
        Strategy("defaults, no hints", tuple(DEFAULTS.rings), p, False),
        Strategy("defaults", tuple(DEFAULTS.rings), p, DEFAULTS.hints),
    ]


def sweep_strategies() -> list[Strategy]:
    out = []
    for hints in (False, True):
        tag = ", hints" if hints else ""
        for parallelism in (1, 2, 4, 8, 16):
            out.append(Strategy(f"P {parallelism}{tag}", (Ring(ttl=4, fraction=0.5),), parallelism, hints))
        for fraction in (0.25, 0.5, 1.0):
            for ttl in (2, 3, 4):
                out.append(Strategy(f"TTL {ttl} f {fraction:g}{tag}", (Ring(ttl=ttl, fraction=fraction),),
                                    DEFAULTS.parallelism, hints))
    return out


@dataclass(frozen=True)
class Setup:
    nodes: int = 100
    queries: int = 100
    item_size: int = 100  # bytes
    replicas: int = 3
    heartbeat: float = 2.0  # seconds
    bootstrap_peers: int = 4
    warmup: float = 40.0  # virtual seconds from storing the items to the first query
    querier_warmup: float = 15.0  # of which the fresh queriers are there for the last ones
    queriers: int = 1  # fresh nodes querying at once, each one query at a time (more: less virtual time)
    latency: float = 0.005  # seconds each way
    host_capacity: int | None = None  # known hosts per node; None: from the memory budget (8,947)
    host_manager: str = "diversity"  # or "random", the baseline
    digest_interval: float = DEFAULTS.digest_interval
    steady: float = 0.0  # virtual seconds of maintenance only, measured after the queries
    seed: int = 1


@dataclass
class Row:
    strategy: str
    description: str
    queries: int = 0
    found: int = 0
    search_requests: list[int] = field(default_factory=list)
    fetch_requests: list[int] = field(default_factory=list)
    replies: list[int] = field(default_factory=list)
    nodes_asked: list[int] = field(default_factory=list)
    virtual_seconds: list[float] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)
    local: int = 0

    def summary(self) -> dict[str, Any]:
        requests = [s + f for s, f in zip(self.search_requests, self.fetch_requests, strict=True)]
        return {
            "strategy": self.strategy,
            "description": self.description,
            "queries": self.queries,
            "success": self.found / self.queries if self.queries else 0.0,
            "requests_mean": statistics.mean(requests),
            "requests_p95": sorted(requests)[int(0.95 * (len(requests) - 1))],
            "requests_max": max(requests),
            "search_requests_mean": statistics.mean(self.search_requests),
            "fetch_requests_mean": statistics.mean(self.fetch_requests),
            "replies_mean": statistics.mean(self.replies),
            "nodes_asked_mean": statistics.mean(self.nodes_asked),
            "virtual_ms_mean": 1000 * statistics.mean(self.virtual_seconds),
            "virtual_ms_p95": 1000 * sorted(self.virtual_seconds)[int(0.95 * (len(self.virtual_seconds) - 1))],
            "wall_ms_mean": 1000 * statistics.mean(self.wall_seconds),
            "local": self.local,
        }


class RouteCounter:
    """Counts the requests every node answered, by route (event ``butter_request_served``)."""

    def __init__(self) -> None:
        self.served: Counter[str] = Counter()

    @hookimpl
    def butter_request_served(self, route: str) -> None:
        self.served[route] += 1


class Population:
    def __init__(self, setup: Setup, network: str) -> None:
        self.setup = setup
        self.network = network
        self.rng = random.Random(setup.seed)
        self.nodes: list[Node] = []
        self.counter = 0
        self.routes = RouteCounter()

    def settings(self) -> ButterSettings:
        self.counter += 1
        seed = self.setup.seed * 1_000_003 + self.counter
        peers = [str(n.address) for n in self.rng.sample(self.nodes, min(self.setup.bootstrap_peers, len(self.nodes)))]
        hosts: dict[str, Any] = {"seed": seed}
        if self.setup.host_capacity:
            hosts["capacity"] = self.setup.host_capacity
        return ButterSettings(
            host="127.0.0.1",
            peers=peers,
            transport={"driver": "memory", "options": {"network": self.network}},
            discovery={"drivers": ["static"], "options": {"static": {"interval": 1.0}}},
            host_manager={"driver": self.setup.host_manager, "options": hosts},
            persistence={"driver": "pcg", "options": {
                "replicas": self.setup.replicas, "heartbeat_interval": self.setup.heartbeat, "seed": seed}},
            retrieval={"driver": "bfs", "options": {"seed": seed, "digest_interval": self.setup.digest_interval}},
        )

    async def spawn(self, tg: TaskGroup) -> Node:
        node: Node = await tg.start(self._life, self.settings())
        node.subscribe(self.routes)
        self.nodes.append(node)
        return node

    async def _life(self, settings: ButterSettings, *, task_status: TaskStatus[Node]) -> None:
        async with open_node(settings) as node:
            task_status.started(node)
            await anyio.sleep_forever()


def bfs(node: Node) -> BfsRetrieval:
    assert isinstance(node.retrieval, BfsRetrieval)
    return node.retrieval


async def run(setup: Setup, strategies: list[Strategy], progress: bool = True) -> dict[str, Any]:
    wall = time.perf_counter()
    name = f"ir1-{setup.nodes}-{setup.seed}-{id(setup)}"
    network = MemoryNetwork.named(name)
    network.latency = setup.latency
    population = Population(setup, name)
    items: dict[str, bytes] = {}
    out: dict[str, Any] = {"setup": asdict(setup)}
    async with anyio.create_task_group() as tg:
        for i in range(setup.nodes):
            await population.spawn(tg)
            if progress and (i + 1) % 100 == 0:
                print(f"  started {i + 1} nodes ({time.perf_counter() - wall:.0f} s wall)", file=sys.stderr)
        payload = random.Random(setup.seed)
        for node in population.nodes:
            data = payload.randbytes(setup.item_size)
            items[await node.store(data)] = data
        start = anyio.current_time()
        join_at = max(0.0, setup.warmup - setup.querier_warmup)
        while (elapsed := anyio.current_time() - start) < join_at:
            await anyio.sleep(min(10.0, join_at - elapsed))
            if progress:
                known = statistics.mean(len(n.hosts.peers()) for n in population.nodes)
                sent = sum(n.stats.requests_sent for n in population.nodes)
                print(f"  t={anyio.current_time() - start:.0f} s virtual: {known:.0f} known hosts per node, "
                      f"{sent} requests so far ({time.perf_counter() - wall:.0f} s wall)", file=sys.stderr)
        queriers = [await population.spawn(tg) for _ in range(setup.queriers)]
        await anyio.sleep(max(0.0, setup.warmup - (anyio.current_time() - start)))
        ready = anyio.current_time()
        originals = population.nodes[: setup.nodes]
        known = [len(n.hosts.peers()) for n in originals]
        out["network"] = {
            "known_hosts_mean": statistics.mean(known),
            "known_hosts_min": min(known),
            "querier_known_hosts": statistics.mean(len(q.hosts.peers()) for q in queriers),
            "querier_digests": statistics.mean(len(bfs(q).book) for q in queriers),
            "warmup_wall_seconds": time.perf_counter() - wall,
        }
        ids = random.Random(setup.seed + 1).sample(sorted(items), min(setup.queries, len(items)))
        holders = {cid: sum([await n.blocks.has(cid) for n in originals]) for cid in ids}
        out["network"]["holders_mean"] = statistics.mean(holders.values())
        out["network"]["items_without_holder"] = sum(1 for h in holders.values() if h == 0)
        digests_before = sum(bfs(n).totals.digest_requests for n in population.nodes)
        before_dup = sum(bfs(n).handler.stats.duplicates for n in population.nodes)
        before_handled = sum(bfs(n).handler.stats.handled for n in population.nodes)
        rows = {s.name: Row(s.name, s.describe()) for s in strategies}
        assert len(rows) == len(strategies), "strategy names must differ"

        async def work(querier: Node, share: list[str], offset: int) -> None:
            for k, cid in enumerate(share):
                turn = (offset + k) % len(strategies)  # rotate the order, so no strategy always goes first
                for strategy in strategies[turn:] + strategies[:turn]:
                    row = rows[strategy.name]
                    t0, w0 = anyio.current_time(), time.perf_counter()
                    try:
                        data = await bfs(querier).retrieve(
                            cid, rings=strategy.rings, parallelism=strategy.parallelism, hints=strategy.hints)
                        ok = data == items[cid]
                    except ButterError:
                        ok = False
                    stats = bfs(querier).last_query
                    assert stats is not None
                    row.queries += 1
                    row.found += ok
                    row.local += stats.local
                    row.search_requests.append(stats.search_requests)
                    row.fetch_requests.append(stats.fetch_requests)
                    row.replies.append(stats.replies)
                    row.nodes_asked.append(stats.nodes_asked)
                    row.virtual_seconds.append(anyio.current_time() - t0)
                    row.wall_seconds.append(time.perf_counter() - w0)
                    await anyio.sleep(0.05)  # let abandoned requests land before the next query

        async with anyio.create_task_group() as queries:
            for i, querier in enumerate(queriers):
                queries.start_soon(work, querier, ids[i :: len(queriers)], i)
        out["queries"] = {
            "duplicates_refused": sum(bfs(n).handler.stats.duplicates for n in population.nodes) - before_dup,
            "queries_handled": sum(bfs(n).handler.stats.handled for n in population.nodes) - before_handled,
            "search_requests_sent": sum(sum(r.search_requests) for r in rows.values()),
            "virtual_seconds": anyio.current_time() - ready,
            "wall_seconds": time.perf_counter() - wall - out["network"]["warmup_wall_seconds"],
        }
        if progress:
            print(f"  queries done ({time.perf_counter() - wall:.0f} s wall)", file=sys.stderr)
        node_seconds = len(population.nodes) * (anyio.current_time() - start)
        out["maintenance"] = {
            "digest_requests_per_node_second":
                sum(bfs(n).totals.digest_requests for n in population.nodes) / node_seconds,
            "digest_bytes_per_node_second": sum(bfs(n).totals.digest_bytes for n in population.nodes) / node_seconds,
            "all_requests_per_node_second": sum(n.stats.requests_sent for n in population.nodes) / node_seconds,
            "digest_requests_per_node_second_while_querying":
                (sum(bfs(n).totals.digest_requests for n in population.nodes) - digests_before)
                / (len(population.nodes) * out["queries"]["virtual_seconds"]),
        }
        out["rows"] = [row.summary() for row in rows.values()]
        if setup.steady:
            digests = sum(bfs(n).totals.digest_requests for n in population.nodes)
            sent = sum(n.stats.requests_sent for n in population.nodes)
            served = population.routes.served.copy()
            await anyio.sleep(setup.steady)
            node_seconds = len(population.nodes) * setup.steady
            by_route = population.routes.served - served
            out["maintenance"]["steady"] = {
                "seconds": setup.steady,
                "known_hosts_mean": statistics.mean(len(n.hosts.peers()) for n in population.nodes),
                "digest_requests_per_node_second":
                    (sum(bfs(n).totals.digest_requests for n in population.nodes) - digests) / node_seconds,
                "all_requests_per_node_second":
                    (sum(n.stats.requests_sent for n in population.nodes) - sent) / node_seconds,
                "idle_requests_per_node_second_by_route":
                    {route: count / node_seconds for route, count in by_route.most_common()},
                "holders_mean": statistics.mean([
                    sum([await n.blocks.has(cid) for n in originals]) for cid in ids]),
            }
        out["wall_seconds"] = time.perf_counter() - wall
        tg.cancel_scope.cancel()
    return out


def run_sync(setup: Setup, strategies: list[Strategy]) -> dict[str, Any]:
    from trio.testing import MockClock

    return anyio.run(run, setup, strategies, backend="trio",
                     backend_options={"clock": MockClock(autojump_threshold=0)})


def print_table(result: dict[str, Any]) -> None:
    setup, net = result["setup"], result["network"]
    capacity = f", capacity {setup['host_capacity']}" if setup["host_capacity"] else ""
    print(f"\n{setup['nodes']} nodes{capacity}, host manager {setup['host_manager']}, "
          f"{setup['queries']} queries by {setup['queriers']} querier(s); "
          f"known hosts per node {net['known_hosts_mean']:.0f} (querier {net['querier_known_hosts']:.0f}), "
          f"holders per item {net['holders_mean']:.2f}, "
          f"wall {result['wall_seconds']:.0f} s")
    print(f"{'strategy':22} {'success':>7} {'req/query':>9} {'search':>7} {'fetch':>6} {'replies':>7} "
          f"{'p95 req':>7} {'asked':>6} {'virt ms':>8} {'p95 ms':>7} {'wall ms':>8}")
    for r in result["rows"]:
        print(f"{r['strategy']:22} {r['success']:>7.0%} {r['requests_mean']:>9.1f} {r['search_requests_mean']:>7.1f} "
              f"{r['fetch_requests_mean']:>6.2f} {r['replies_mean']:>7.1f} {r['requests_p95']:>7} "
              f"{r['nodes_asked_mean']:>6.1f} {r['virtual_ms_mean']:>8.1f} {r['virtual_ms_p95']:>7.1f} "
              f"{r['wall_ms_mean']:>8.2f}")
    m = result["maintenance"]
    q = result["queries"]
    print(f"queries handled network-wide {q['queries_handled']} for {q['search_requests_sent']} search requests "
          f"sent; duplicates refused {q['duplicates_refused']}")
    print(f"digest pulls: {m['digest_requests_per_node_second']:.2f} requests (while querying "
          f"{m['digest_requests_per_node_second_while_querying']:.2f}) and "
          f"{m['digest_bytes_per_node_second']:.0f} bytes per node per second; all requests "
          f"{m['all_requests_per_node_second']:.2f} per node per second")
    if "steady" in m:
        st = m["steady"]
        print(f"then {st['seconds']:.0f} s with no queries ({st['known_hosts_mean']:.0f} known hosts per node): "
              f"digest pulls {st['digest_requests_per_node_second']:.2f}, all requests "
              f"{st['all_requests_per_node_second']:.2f} per node per second; holders per item "
              f"{st['holders_mean']:.2f}")
        print("  answered per node per second, by route: " + ", ".join(
            f"{route} {rate:.2f}" for route, rate in st["idle_requests_per_node_second_by_route"].items()))


def plan(args: argparse.Namespace) -> list[tuple[Setup, list[Strategy]]]:
    """The runs: IR1 on 100 nodes (dense lists), on 100 nodes with 8 known hosts each (sparse), and on 1,000
    nodes (20 fresh queriers at once, fewer strategies, to keep it to minutes of wall time)."""
    if args.sweep:
        return [(Setup(nodes=100, queries=args.queries, seed=args.seed, host_manager=args.host_manager),
                 sweep_strategies())]
    runs = []
    sizes = args.nodes or ([100] if args.quick else [100, 1000])
    for n in sizes:
        big = n > 300
        setup = Setup(nodes=n, queries=args.queries, seed=args.seed, host_capacity=args.capacity,
                      host_manager=args.host_manager,
                      queriers=args.queriers or (n // 50 if big else 1), warmup=args.warmup or (20.0 if big else 40.0),
                      querier_warmup=10.0 if big else 15.0, steady=0.0 if big else 120.0)
        strategies = ir1_strategies()
        if big and not args.all:  # a flood asks about every node (n requests per query): no need to run it
            strategies = [s for s in strategies if "flood" not in s.name and "no hints" not in s.name]
        runs.append((setup, strategies))
        if n == 100 and not args.nodes and not args.capacity:
            sparse = Setup(nodes=100, queries=args.queries, seed=args.seed, host_capacity=8, steady=0.0,
                           host_manager=args.host_manager)
            runs.append((sparse, ir1_strategies()))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 nodes only (dense and sparse)")
    parser.add_argument("--sweep", action="store_true", help="the parameter sweep on 100 nodes")
    parser.add_argument("--nodes", type=int, nargs="*", help="network sizes (default 100 1000)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=None, help="known-host capacity per node")
    parser.add_argument("--host-manager", choices=["diversity", "random"], default="diversity",
                        help="host-manager driver of every node (random: the baseline)")
    parser.add_argument("--queriers", type=int, default=None, help="fresh querying nodes (default 1; n / 50 above 300)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="virtual seconds before querying (default 40, 20 above 300 nodes)")
    parser.add_argument("--all", action="store_true", help="run every strategy above 300 nodes too")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out_path = args.out or (OUT.with_name("retrieval-sweep.json") if args.sweep else OUT)
    if args.host_manager != "diversity" and args.out is None:
        out_path = out_path.with_name(f"{out_path.stem}-{args.host_manager}.json")
    results = []
    for setup, strategies in plan(args):
        results.append(run_sync(setup, strategies))
        print_table(results[-1])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"defaults": DEFAULTS.model_dump(mode="json"), "results": results}, indent=2))
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
