"""The churn simulator at scale: P2 (death probability 1/50 per node per second, 30 s churn, heartbeat 2 s)
at 250, 1,000 and 10,000 nodes, each run in its own process, with its cost: wall time, CPU time, peak RSS.

    uv run python benchmarks/sim_scale.py                        # 250 and 1,000 nodes, seed 1
    uv run python benchmarks/sim_scale.py --nodes 10000          # one size (several: --nodes 250 1000 10000)
    uv run python benchmarks/sim_scale.py --queries 1000         # also retrieve items as their storers die
    uv run python benchmarks/sim_scale.py --hour                 # then retrieve every item, wait an hour
    uv run python benchmarks/sim_scale.py --label before         # tag the runs (e.g. an older checkout)

The setting is the persistence benchmark's P2 (grace 10 s, warm-up 10 s, settle 30 s, one 100-byte item per
initial node, r = 3, replacements keep the population constant). ``--queries N``: while churn runs, each
time a node that stored an item dies a random live node retrieves that item (bfs, default options), up to
N retrievals: success (over all, and over the items some live node still kept when the retrieval started)
and requests per retrieval (over all, per found and per missed one). ``--hour``: after settle, every item is
retrieved once by a random live node, then an hour (virtual) passes before replicas per item are counted (PCG's
back-to-target rule should bring every group to r = 3).

The machine may be shared: the load average (1 minute) before and after each run is recorded beside its
timings. CPU time is the child process's own (user + system). Each run's own process writes its result as
soon as it ends, replacing the earlier run with the same key (nodes, seed, queries, hour, label) in
benchmarks/results/sim-scale.json (a 10,000-node run takes about an hour: its result is kept even if the
parent is gone by then); a line per run is printed. Each run also records its requests per node per second by
route (``requests_by_route``) and the known-host lists' mean and largest size every 5 virtual seconds
(``known_hosts``: ``[t, mean, max]``): what grows with the population shows there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "sim-scale.json"
KEY = ("nodes", "seed", "queries", "hour", "label")
HOUR = 3600.0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process and measure it."""
    from butter.testing.sim import ChurnConfig, run_churn_sync

    extra: dict[str, Any] = {}
    if spec["queries"]:
        extra["queries"] = spec["queries"]
    if spec["hour"]:
        extra.update(retrieve_all=True, linger=HOUR)
    config = ChurnConfig(nodes=spec["nodes"], death_rate=1 / 50, churn=30.0, heartbeat=2.0, seed=spec["seed"],
                         **extra)
    load, wall, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
    shown: dict[str, float] = {}

    def progress(phase: str, fraction: float) -> None:  # to stderr, so a run cut short still tells how far it got
        if fraction - shown.get(phase, -1.0) >= 0.1 or (fraction == 1.0 and shown.get(phase) != 1.0):
            shown[phase] = fraction
            print(f"  {spec['nodes']} nodes: {phase} {fraction:.0%} after {time.perf_counter() - wall:.0f} s wall, "
                  f"{time.process_time() - cpu:.0f} s CPU, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    result = run_churn_sync(config, progress)
    out = {
        **spec,
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "retention": result.retention,
        "items": result.items,
        "deaths": result.deaths,
        "replicas_per_item": result.replicas_per_item,
        "maintenance_per_node_second": result.maintenance_per_node_second,
        "requests_per_node_second": result.requests_per_node_second,
        "virtual_seconds": result.virtual_seconds,
    }
    for name in ("churn_queries", "popularity"):
        if hasattr(result, name):  # an older simulator (--label before) has neither
            out[name] = result.to_json()[name]
    if hasattr(result, "requests_by_route"):  # nor these
        out["requests_by_route"] = result.requests_by_route
        out["known_hosts"] = [[sample["t"], sample["known_hosts"], sample["known_hosts_max"]]
                              for sample in result.timeline]
    return out


def run(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """Run ``spec`` in a child process, which writes its result to ``path`` itself (so a long run survives
    the loss of this process), and return that result."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec), "--out", str(path)], check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def save(runs: list[dict[str, Any]], path: Path) -> None:
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    keys = {tuple(r.get(k) for k in KEY) for r in runs}
    kept = [r for r in old if tuple(r.get(k) for k in KEY) not in keys]
    merged = sorted(kept + runs, key=lambda r: (r["label"], r["nodes"], r["seed"], r["queries"], r["hour"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": merged}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="*", default=[250, 1000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=0, help="retrievals while churn runs (default 0)")
    parser.add_argument("--hour", action="store_true", help="retrieve every item after settle, then wait an hour")
    parser.add_argument("--label", default="", help="a tag stored with the runs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(json.loads(args.child))
        save([result], args.out)
        print(json.dumps(result))
        return
    runs = []
    for nodes in args.nodes:
        spec = {"nodes": nodes, "seed": args.seed, "queries": args.queries, "hour": args.hour, "label": args.label}
        runs.append(run(spec, args.out))
        r = runs[-1]
        line = (f"{nodes:>6} nodes seed {args.seed}: retention {r['retention']:.3f}, "
                f"replicas {r['replicas_per_item']:.2f}, wall {r['wall_seconds']:.0f} s, CPU {r['cpu_seconds']:.0f} s, "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB, "
                f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")
        for name in ("churn_queries", "popularity"):
            q = r.get(name)
            if q and q["started"]:
                line += (f"; {name} {q['started']}: success {q['success']:.3f} "
                         f"({q.get('success_live', q['success']):.3f} of {q.get('live', '?')} still kept), "
                         f"{q['requests_per_query']:.1f} requests each")
                if "requests_per_found" in q:
                    line += (f" ({q['requests_per_found']:.1f} per found, "
                             f"{q['requests_per_missed']:.1f} per missed of {q['missed']})")
        print(line, flush=True)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
