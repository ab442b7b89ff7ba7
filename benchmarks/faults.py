"""Fault recovery on real hosts: how fast the overlay and its replicas recover from loss, a partition and kills.

Run (as root: it builds network namespaces and firewall rules, see ``tests/netns/faults_kit.py``)::

    python benchmarks/faults.py [--runs 3] [--out benchmarks/results/faults.json]

Each run is the fault suite's scenario (``tests/netns/test_faults.py``): five ``butter node`` processes on
one LAN with 10% random packet loss on every host (iptables ``statistic``) and node 4's link shaped to
8 Mbit/s (``tc tbf``); the overlay forms; three items are stored and reach 3 replicas; the LAN is split
{0,1} / {2,3,4} by DROP rules until each side has forgotten the other and kept its items at its own target;
the split heals; then two holders of the first item are killed with SIGKILL. Times come from an observer
polling every node four times a second (to within 0.25 s):

* ``split_seen``, ``sides_recruited``: from the partition to no node knowing the other side, and to each side
  keeping its items at its own target (``replicas_while_split``: the live nodes keeping each item then);
* ``first_contact``, ``overlay_whole``: from the heal to a node knowing one of the other side again, and to
  every node knowing every other;
* ``healed_at_target``: from the heal to every item back at 3 replicas whose views agree (the merged groups
  shed their extra replicas);
* ``killed_at_target``: from the kills to every item at 3 replicas on the survivors.

Writes ``benchmarks/results/faults.json`` (every run, then median and max of each time) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _netns import load_netns_module, rounded

OUT = Path(__file__).parent / "results" / "faults.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the scenario")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON results")
    args = parser.parse_args()
    kit = load_netns_module("faults_kit")
    harness = load_netns_module("harness")
    reason = kit.missing_fault_requirements()
    if reason:
        sys.exit(f"cannot run: {reason}")
    runs: list[dict[str, Any]] = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="butter-faults-") as workdir, harness.Lab(Path(workdir)) as lab:
            times = kit.run_scenario(kit.FaultBench(lab))
        run = {k: rounded(v) if isinstance(v, float) else v for k, v in asdict(times).items()}
        runs.append(run)
        print(f"run {index + 1}: " + ", ".join(f"{k} {v}" for k, v in run.items()), flush=True)
    names = [f.name for f in fields(kit.FaultTimes) if f.name != "replicas_while_split"]
    summary = {name: {"median": rounded(statistics.median(r[name] for r in runs)),
                      "max": rounded(max(r[name] for r in runs))} for name in names}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "scenario": {"nodes": 5, "loss": kit.LOSS, "rate_limited": {"node": 4, "rate": kit.RATE},
                     "partition": [list(kit.MINORITY), list(kit.MAJORITY)], "items": kit.ITEMS,
                     "killed": 2, "host_manager_options": kit.HOST_OPTIONS, "pcg": "defaults (heartbeat 2 s)"},
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'seconds':<20} {'median':>8} {'max':>8}")
    for name, values in summary.items():
        print(f"{name:<20} {values['median']:>8} {values['max']:>8}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
