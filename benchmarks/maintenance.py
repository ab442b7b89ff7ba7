"""PCG maintenance cost as items per node grow, with and without recruiting partners first (copysets).

    uv run python benchmarks/maintenance.py                       # 100 nodes; 1, 10 and 100 items per node
    uv run python benchmarks/maintenance.py --nodes 250 --items 1 10
    uv run python benchmarks/maintenance.py --jobs 2              # runs in parallel processes
    uv run python benchmarks/maintenance.py --partners on         # only prefer_partners on: half the time
    uv run python benchmarks/maintenance.py --option max_jobs=32  # a pcg option for every run
    uv run python benchmarks/maintenance.py --items 1000 --partners on --append --progress  # add a row

Each run is the report's P2 churn on the simulator (``butter.testing.sim``: real nodes on the memory transport
under a virtual clock; death probability 1/50 per node per second for 30 s, heartbeat 2 s, r = 3, grace and
warm-up 10 s, settle 30 s, replacements keep the population constant), with ``--items`` items of 100 bytes
stored per initial node, once with pcg's ``prefer_partners`` on (the default) and once off.

Reported per run: retention (ground truth: a live node keeps the item and its manifest), replicas per
retained item, and PCG maintenance messages (heartbeats, joins, sheds) per live node per second: over the
whole run (the initial replication's joins included), and **steady**: the mean of the samples taken after the
churn ended (the settle phase), what a node pays to keep what it holds; and requests per live node per second by route
(``requests_by_route``: ``fetch-block`` shows the data that joins move). Seeded: the same arguments give the
same figures under any load; only wall and CPU seconds vary. Each run also records the load average before
and after it and the peak resident memory of its process (``peak_rss_mb``: the largest so far, as runs in one
process follow each other).

Writes benchmarks/results/maintenance.json (with ``--append``, adds the runs to those already in it, keeping
its other fields) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from butter.testing.sim import ChurnConfig, run_churn_sync

OUT = Path(__file__).parent / "results" / "maintenance.json"


def one(nodes: int, items: int, partners: bool, seed: int, options: dict[str, Any], progress: bool) -> dict[str, Any]:
    config = ChurnConfig(nodes=nodes, items_per_node=items, death_rate=1 / 50, churn=30.0, heartbeat=2.0,
                         seed=seed, persistence_options={**options, "prefer_partners": partners})
    cpu = time.process_time()
    load_before = os.getloadavg()

    def report(phase: str, fraction: float) -> None:
        print(f"{nodes}x{items} {phase} {fraction:.0%} (CPU {time.process_time() - cpu:.0f} s)", file=sys.stderr,
              flush=True)

    result = run_churn_sync(config, report if progress else None)
    settled = config.warmup + config.churn + 5  # timeline t counts from the store: warm-up, churn, then settle
    steady = [s["maintenance_per_node_second"] for s in result.timeline if s["t"] > settled]
    return {
        "nodes": nodes, "items_per_node": items, "prefer_partners": partners, "seed": seed,
        **({"pcg_options": options} if options else {}),
        "retention": result.retention,
        "replicas_per_item": round(result.replicas_per_item, 3),
        "maintenance_per_node_second": round(result.maintenance_per_node_second, 3),
        "steady_maintenance_per_node_second": round(statistics.mean(steady), 3) if steady else None,
        "requests_per_node_second": round(result.requests_per_node_second, 3),
        "requests_by_route": {route: round(rate, 3) for route, rate in result.requests_by_route.items()},
        "deaths": result.deaths,
        "wall_seconds": round(result.wall_seconds, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100, help="initial nodes (default 100)")
    parser.add_argument("--items", type=int, nargs="+", default=[1, 10, 100], help="items per node (default 1 10 100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partners", choices=("both", "on", "off"), default="both",
                        help="runs with prefer_partners on, off or both (default)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a pcg option for every run (JSON value), e.g. max_jobs=32; repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--append", action="store_true",
                        help="add the runs to those already in --out (its other fields kept) instead of replacing it")
    parser.add_argument("--progress", action="store_true", help="print each run's phases to stderr")
    args = parser.parse_args()
    settings = {"both": (True, False), "on": (True,), "off": (False,)}[args.partners]
    options = {name: json.loads(value) for name, value in (o.split("=", 1) for o in args.option)}
    plan = [(args.nodes, items, partners, args.seed, options, args.progress)
            for items in args.items for partners in settings]
    load_before = os.getloadavg()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, *zip(*plan, strict=True)))
    report = {
        "benchmark": "maintenance", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "runs": rows,
    }
    if args.append and args.out.exists():
        report = json.loads(args.out.read_text())
        report["runs"] = [*report.get("runs", []), *rows]
        report["appended"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'items':>6} {'partners':>9} {'retention':>10} {'replicas':>9} {'maint/node/s':>13} {'steady':>7} "
          f"{'CPU s':>7}")
    for r in rows:
        print(f"{r['items_per_node']:>6} {r['prefer_partners']!s:>9} {r['retention']:>10.4f} "
              f"{r['replicas_per_item']:>9.3f} {r['maintenance_per_node_second']:>13.2f} "
              f"{r['steady_maintenance_per_node_second']!s:>7} {r['cpu_seconds']:>7.1f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
