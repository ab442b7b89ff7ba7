"""LAN discovery benchmark: how fast ``butter node`` processes on separate hosts find each other by multicast.

Run (as root: it builds network namespaces, see ``tests/netns/harness.py``)::

    python benchmarks/discovery.py [--quick] [--sizes 4 8 16] [--runs 5] [--out benchmarks/results/discovery.json]

Each run builds a LAN of N host namespaces on one bridge and runs one ``butter node`` per host with the
default settings (multicast discovery, 1 s ping interval ± 25 %, no address configured). Two scenarios:

* **together**: all N nodes start at the same moment (a room powered on at once);
* **join**: then, ``--joiners`` times (3), the last node is replaced by a newcomer that joins the N - 1
  settled nodes (the everyday case: a machine starts on a LAN that is already running).

Each node's log lines are time-stamped as they arrive, which gives per node:

* ``ready``: the node is serving and its discovery has joined the group ("multicast discovery on");
* ``first peer``: its first "peer joined" line (host management admitted a peer);
* ``full view``: the moment it knows all N - 1 others.

Times are reported from the process start (``Popen``: includes starting Python and importing Butter; in
"together" all N processes compete for this machine's CPUs, see ``cpus`` in the results) and from ``ready``
(the discovery protocol's own latency). p50 and p95 (nearest rank) are over every node of every run.
Messages: multicast pings and unicast answers sent, from each node's exit summary ("multicast discovery
stopped: ..."). Target: p95 time to first peer <= 1.5 s with the default interval, checked on the time from
``ready``; the time from process start is reported beside it.

Every wait is bounded (``--run-timeout`` seconds); a node that never reaches a milestone counts as missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _netns import load_harness, percentile, rounded

TARGET_FIRST_PEER_P95 = 1.5  # seconds




harness = load_harness()


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = (4, 8, 16)
    runs: int = 5
    joiners: int = 3  # newcomers per run, one after the other
    run_timeout: float = 90.0  # seconds to wait for every node's full view (a newcomer: half of it)


QUICK = Plan(sizes=(4, 8), runs=2, joiners=2, run_timeout=60.0)


@dataclass
class NodeTimes:
    """Seconds from the process start; ``None`` when the milestone was not reached in time."""

    ready: float | None = None
    first_peer: float | None = None
    full_view: float | None = None
    pings_sent: int | None = None
    answers_sent: int | None = None




def node_times(process: Any, size: int) -> NodeTimes:
    times = NodeTimes()
    start = process.started_at
    known: set[str] = set()
    for line in list(process.lines):
        text = line.text
        if times.ready is None and "multicast discovery on" in text:
            times.ready = line.at - start
        elif match := re.search(r"peer joined: \S+ \((\S+)\)", text):
            known.add(match.group(1))
            if times.first_peer is None:
                times.first_peer = line.at - start
            if times.full_view is None and len(known) >= size - 1:
                times.full_view = line.at - start
        elif match := re.search(r"peer left: \S+ \((\S+)\)", text):
            known.discard(match.group(1))
        elif "multicast discovery stopped:" in text:
            stats = dict(part.split("=", 1) for part in text.split("stopped:", 1)[1].split())
            times.pings_sent = int(stats["pings_sent"])
            times.answers_sent = int(stats["answers_sent"])
    return times


def wait_for_views(nodes: list[Any], size: int, deadline: float) -> None:
    """Until every node in ``nodes`` knows ``size - 1`` peers, one exits, or ``deadline`` passes."""
    while time.monotonic() < deadline:
        if all(node_times(node, size).full_view is not None for node in nodes) or not all(n.alive for n in nodes):
            return
        time.sleep(0.05)


def one_run(size: int, plan: Plan, workdir: Path) -> tuple[list[NodeTimes], list[NodeTimes]]:
    """Start ``size`` nodes at once; then, ``plan.joiners`` times, replace the last one by a newcomer.

    Returns the times of the nodes started together and those of the newcomers (each joins a LAN of
    ``size - 1`` settled nodes, so a full view is ``size - 1`` peers for both).
    """
    with harness.Lab(workdir) as lab:
        lan = lab.add_lan("a", size)
        nodes = [lab.start_node(host) for host in lan.hosts]
        wait_for_views(nodes, size, time.monotonic() + plan.run_timeout)
        last = nodes[-1]
        last.stop()
        joiners = []
        for index in range(plan.joiners):
            # a fresh port each time, so a newcomer is never mistaken for the previous one
            joiner = lab.start(last.host, [*harness.butter_command(), "node", "--port", str(7001 + index)],
                               port=7001 + index, log_name=f"{last.host.name}-join{index}")
            wait_for_views([joiner], size, time.monotonic() + plan.run_timeout / 2)
            joiner.stop()
            joiners.append(joiner)
        lab.stop_all()  # SIGTERM: each node logs its discovery counters as it leaves
        return [node_times(node, size) for node in nodes], [node_times(node, size) for node in joiners]


def summarise(nodes: list[NodeTimes], runs: list[list[NodeTimes]] | None = None) -> dict[str, Any]:
    """p50/p95 of each milestone over ``nodes``, from the process start and from ``ready``."""

    def spans(attr: str, since_ready: bool) -> list[float]:
        out = []
        for times in nodes:
            value = getattr(times, attr)
            if value is not None and times.ready is not None:
                out.append(value - times.ready if since_ready else value)
        return out

    result: dict[str, Any] = {"samples": len(nodes)}
    ready = [t.ready for t in nodes if t.ready is not None]
    result["ready_from_start_p50_s"] = rounded(percentile(ready, 50))
    result["ready_from_start_p95_s"] = rounded(percentile(ready, 95))
    for attr in ("first_peer", "full_view"):
        for origin, since_ready in (("start", False), ("ready", True)):
            values = spans(attr, since_ready)
            result[f"{attr}_from_{origin}_p50_s"] = rounded(percentile(values, 50))
            result[f"{attr}_from_{origin}_p95_s"] = rounded(percentile(values, 95))
        result[f"{attr}_missing"] = sum(1 for times in nodes if getattr(times, attr) is None)
    result["pings_per_node_mean"] = round(sum(t.pings_sent or 0 for t in nodes) / max(1, len(nodes)), 2)
    result["answers_per_node_mean"] = round(sum(t.answers_sent or 0 for t in nodes) / max(1, len(nodes)), 2)
    result["summaries_missing"] = sum(1 for t in nodes if t.pings_sent is None)
    if runs is not None:
        whole = [max(t.full_view or 0.0 for t in run) for run in runs if all(t.full_view is not None for t in run)]
        result["whole_lan_full_view_from_start_p50_s"] = rounded(percentile(whole, 50))
        result["whole_lan_full_view_from_start_p95_s"] = rounded(percentile(whole, 95))
        result["pings_per_run_mean"] = round(sum(t.pings_sent or 0 for t in nodes) / max(1, len(runs)), 1)
        result["answers_per_run_mean"] = round(sum(t.answers_sent or 0 for t in nodes) / max(1, len(runs)), 1)
    return result


ROWS = [
    ("together", "process start -> discovery on, p50 s", "ready_from_start_p50_s"),
    ("together", "first peer from ready, p50 s", "first_peer_from_ready_p50_s"),
    ("together", "first peer from ready, p95 s (target <= 1.5)", "first_peer_from_ready_p95_s"),
    ("together", "first peer from process start, p50 s", "first_peer_from_start_p50_s"),
    ("together", "first peer from process start, p95 s", "first_peer_from_start_p95_s"),
    ("together", "full view from ready, p50 s", "full_view_from_ready_p50_s"),
    ("together", "full view from ready, p95 s", "full_view_from_ready_p95_s"),
    ("together", "full view from process start, p95 s", "full_view_from_start_p95_s"),
    ("together", "whole LAN full view from start, p50 s", "whole_lan_full_view_from_start_p50_s"),
    ("together", "multicast pings per run (mean)", "pings_per_run_mean"),
    ("together", "unicast answers per run, to newcomers too (mean)", "answers_per_run_mean"),
    ("together", "nodes missing first peer / full view", None),
    ("join", "process start -> discovery on, p50 s", "ready_from_start_p50_s"),
    ("join", "first peer from ready, p50 s", "first_peer_from_ready_p50_s"),
    ("join", "first peer from ready, p95 s (target <= 1.5)", "first_peer_from_ready_p95_s"),
    ("join", "first peer from process start, p50 s", "first_peer_from_start_p50_s"),
    ("join", "first peer from process start, p95 s", "first_peer_from_start_p95_s"),
    ("join", "full view from ready, p50 s", "full_view_from_ready_p50_s"),
    ("join", "full view from ready, p95 s", "full_view_from_ready_p95_s"),
    ("join", "full view from process start, p95 s", "full_view_from_start_p95_s"),
    ("join", "multicast pings per newcomer (mean)", "pings_per_node_mean"),
    ("join", "nodes missing first peer / full view", None),
]


def table(results: list[dict[str, Any]]) -> str:
    width = 50
    lines = [f"{'hosts':<{width}}" + "".join(f"{r['hosts']:>10}" for r in results)]
    section = ""
    for part, label, key in ROWS:
        if part != section:
            section = part
            title = {
                "together": "all started at once (samples: runs x hosts)",
                "join": "newcomer joining size-1 settled nodes (samples)",
            }[part]
            lines.append(f"{title:<{width}}" + "".join(f"{r[part]['samples']:>10}" for r in results))
        if key is None:
            values = [f"{r[part]['first_peer_missing']}/{r[part]['full_view_missing']}" for r in results]
        else:
            values = ["-" if r[part].get(key) is None else str(r[part][key]) for r in results]
        lines.append(f"  {label:<{width - 2}}" + "".join(f"{v:>10}" for v in values))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 4 and 8, 2 runs each")
    parser.add_argument("--sizes", type=int, nargs="+", help="LAN sizes (hosts)")
    parser.add_argument("--runs", type=int, help="runs per size")
    parser.add_argument("--joiners", type=int, help="newcomers per run")
    parser.add_argument("--run-timeout", type=float, help="seconds to wait for the full view")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "discovery.json")
    parser.add_argument("--keep-logs", type=Path, help="directory to keep every node's log in")
    args = parser.parse_args()
    reason = harness.missing_requirements()
    if reason:
        sys.exit(f"cannot run: {reason}")
    plan = QUICK if args.quick else Plan()
    plan = Plan(
        sizes=tuple(args.sizes) if args.sizes else plan.sizes,
        runs=args.runs or plan.runs,
        joiners=plan.joiners if args.joiners is None else args.joiners,
        run_timeout=args.run_timeout or plan.run_timeout,
    )
    print(f"discovery benchmark, plan {plan}, {os.cpu_count()} CPUs", file=sys.stderr)
    results: list[dict[str, Any]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="butter-discovery-") as scratch:
        logs = args.keep_logs or Path(scratch)
        for size in plan.sizes:
            together, joining = [], []
            for index in range(plan.runs):
                run_nodes, joiners = one_run(size, plan, logs / f"n{size}-run{index}")
                together.append(run_nodes)
                joining.extend(joiners)
                worst = max((t.first_peer or math.inf) - (t.ready or 0) for t in run_nodes + joiners)
                print(f"  {size} hosts, run {index + 1}/{plan.runs}: slowest first peer {worst:.3f} s after ready",
                      file=sys.stderr)
            results.append({
                "hosts": size,
                "runs": plan.runs,
                "together": summarise([t for run in together for t in run], together),
                "join": summarise(joining),
                "per_run": [{"together": [asdict(t) for t in run]} for run in together],
                "joiners": [asdict(t) for t in joining],
            })
    report = {
        "benchmark": "discovery",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "plan": asdict(plan),
        "settings": "butter node defaults: discovery multicast (239.255.42.99:9999, interval 1 s, jitter 0.25)",
        "target": {"first_peer_from_ready_p95_s": TARGET_FIRST_PEER_P95},
        "met": all(
            r[part]["first_peer_from_ready_p95_s"] is not None
            and r[part]["first_peer_from_ready_p95_s"] <= TARGET_FIRST_PEER_P95
            for r in results
            for part in ("together", "join")
        ),
        "duration_s": round(time.monotonic() - began, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\ntarget p95 first peer <= {TARGET_FIRST_PEER_P95} s (from ready): {'met' if report['met'] else 'NOT met'}")
    print(f"written to {args.out} in {report['duration_s']} s")


if __name__ == "__main__":
    main()
