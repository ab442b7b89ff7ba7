"""The report's persistence experiments P1 and P2 on the churn simulator, with a naive single-copy baseline.

    uv run python benchmarks/persistence.py                 # full: 5 seeds per setting (about an hour of CPU)
    uv run python benchmarks/persistence.py --quick         # 1 seed, P2 at 1/50 and 1/1000 only
    uv run python benchmarks/persistence.py --jobs 2        # runs in parallel processes
    uv run python benchmarks/persistence.py --seeds 3       # fewer seeds per setting

P1: 100 nodes, 60 s churn, death probability 1/50 per node per second, heartbeat 10, 5, 2, 1 s.
P2: 250 nodes, 30 s churn, heartbeat 2 s, death probability 1/50, 1/100, 1/1000, 1/10000 per second.
Both: grace 10 s, warm-up 10 s, settle 30 s, one 100-byte item per initial node, r = 3, replacements keep
the population constant. The baseline is the same network with the ``single`` persistence
driver: each item stays on the node that stored it only. Retention is ground truth (a live node
holds every block).

Writes benchmarks/results/persistence.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from butter.testing.sim import ChurnConfig, run_churn_sync

OUT = Path(__file__).parent / "results" / "persistence.json"


def one(config: ChurnConfig) -> dict[str, float]:
    result = run_churn_sync(config)
    return {
        "retention": result.retention,
        "replicas_per_item": result.replicas_per_item,
        "maintenance_per_node_second": result.maintenance_per_node_second,
        "requests_per_node_second": result.requests_per_node_second,
        "deaths": result.deaths,
        "wall_seconds": result.wall_seconds,
    }


def experiments(quick: bool, seed_count: int) -> list[tuple[str, str, ChurnConfig]]:
    seeds = [1] if quick else list(range(1, seed_count + 1))
    runs = []
    p1 = [] if quick else [10.0, 5.0, 2.0, 1.0]
    for heartbeat in p1:
        base = ChurnConfig(nodes=100, churn=60.0, death_rate=1 / 50, heartbeat=heartbeat)
        for seed in seeds:
            runs.append(("P1", f"heartbeat {heartbeat:g} s", replace(base, seed=seed)))
    rates = [50, 1000] if quick else [50, 100, 1000, 10000]
    for rate in rates:
        base = ChurnConfig(nodes=250, churn=30.0, death_rate=1 / rate, heartbeat=2.0)
        for seed in seeds:
            runs.append(("P2", f"1/{rate} per s", replace(base, seed=seed)))
            runs.append(("P2 naive", f"1/{rate} per s", replace(base, seed=seed, persistence="single")))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, P2 at 1/50 and 1/1000 only")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (default 5)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runs = experiments(args.quick, args.seeds)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(one, config) for _, _, config in runs]
        results = []
        for i, future in enumerate(futures):
            results.append(future.result())
            print(f"  {i + 1}/{len(runs)} {runs[i][0]} {runs[i][1]} seed {runs[i][2].seed}: "
                  f"retention {results[-1]['retention']:.3f}, {results[-1]['wall_seconds']:.0f} s wall",
                  file=sys.stderr)
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for (experiment, setting, _), result in zip(runs, results, strict=True):
        rows.setdefault((experiment, setting), []).append(result)
    table = []
    for (experiment, setting), items in rows.items():
        table.append({
            "experiment": experiment,
            "setting": setting,
            "runs": len(items),
            "retention_mean": statistics.mean(r["retention"] for r in items),
            "retention_min": min(r["retention"] for r in items),
            "replicas_per_item": statistics.mean(r["replicas_per_item"] for r in items),
            "maintenance_per_node_second": statistics.mean(r["maintenance_per_node_second"] for r in items),
            "requests_per_node_second": statistics.mean(r["requests_per_node_second"] for r in items),
            "wall_seconds_max": max(r["wall_seconds"] for r in items),
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": [
        {"experiment": e, "setting": s, "seed": c.seed, **r} for (e, s, c), r in zip(runs, results, strict=True)
    ], "summary": table, "total_wall_seconds": time.perf_counter() - started}, indent=2))
    print(f"{'experiment':10} {'setting':16} {'runs':>4} {'retention':>9} {'min':>6} {'replicas':>8} "
          f"{'pcg msg/node/s':>14} {'all req/node/s':>14} {'wall max s':>10}")
    for row in table:
        print(f"{row['experiment']:10} {row['setting']:16} {row['runs']:>4} {row['retention_mean']:>9.3%} "
              f"{row['retention_min']:>6.1%} {row['replicas_per_item']:>8.2f} "
              f"{row['maintenance_per_node_second']:>14.2f} {row['requests_per_node_second']:>14.2f} "
              f"{row['wall_seconds_max']:>10.0f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
