"""Memory benchmark: the peak resident set size of ``butter demo``, and what an idle TCP node costs.

Run::

    python benchmarks/memory.py [--limit N] [--idle 10,50,100] [--skip-demo] [--out benchmarks/results/memory.json]

Two measurements, each in a fresh process of this interpreter so that one's peak never hides in another's:

* **demo**: ``butter demo`` (20 TCP nodes on 127.0.0.1 in one process; the corpus, every ``.py`` file of the
  standard library unless ``--limit`` caps how many, stored, replicated x3 by PCG, a third of the nodes killed,
  everything retrieved from a fresh node) run as ``python -m butter.cli demo``; its peak RSS is the child's
  ``ru_maxrss`` (``getrusage``), in bytes. Beside it, for scale: the corpus's bytes, and those bytes x3 (the
  replicas the demo keeps alive). The demo's exit status is recorded (0: every item came back intact).
* **idle**: for each count in ``--idle``, that many TCP nodes opened in one process with the demo's settings
  (static discovery, every node told node 0's address), left to find each other (until each knows
  ``min(count - 1, 8)`` peers, at most 60 s) and then idle for ``SETTLE`` seconds, with no items. The figure
  is the RSS growth per node, in bytes: ``(RSS with the nodes - RSS before the first node) / count``, where the
  baseline is the interpreter with ``butter`` and the drivers imported and no node. Every node listens on
  127.0.0.1 only and is closed at the end.

RSS is read from ``/proc/self/status`` (Linux). The peak depends on the machine's load: when the demo's 20
nodes get too little CPU, heartbeats arrive late, PCG groups split and over-recruit and maintenance jobs queue
up, so the longer the run the higher the peak; compare runs made side by side, and keep ``load_average``. On an
idle 2-core machine ``--limit 300`` takes under a minute; with a load average of 10, seven.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

SETTLE = 10.0  # seconds the idle nodes are left alone before RSS is read
OVERLAY_WAIT = 60.0  # seconds, at most, for the idle nodes to find each other
DEFAULT_IDLE = (10, 50, 100)


def rss() -> int:
    """This process's resident set size in bytes (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (not Linux?)")


def demo(limit: int | None) -> dict[str, object]:
    """Run ``butter demo`` in a child process; its peak RSS (bytes), exit status and seconds."""
    from butter._demo import corpus_files, default_corpus

    files = corpus_files(default_corpus(), limit)
    item_bytes = sum(path.stat().st_size for path in files)
    argv = [sys.executable, "-m", "butter.cli", "demo", *(["--limit", str(limit)] if limit else [])]
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if code not in (0, 1):
        raise RuntimeError(f"butter demo exited {code}: {stderr[-2000:]}")
    return {
        "files": len(files),
        "item_bytes": item_bytes,
        "item_bytes_x3": 3 * item_bytes,
        "peak_rss": usage.ru_maxrss * 1024,  # ru_maxrss is in KiB on Linux
        "exit_status": code,
        "seconds": round(seconds, 1),
    }


def idle(count: int) -> dict[str, object]:
    """Open ``count`` idle TCP nodes in a child process (this script with ``--child-idle``); its figures."""
    argv = [sys.executable, __file__, "--child-idle", str(count)]
    result = subprocess.run(argv, capture_output=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"idle {count} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def child_idle(count: int) -> None:
    """In the child: print one JSON line, the baseline RSS, the RSS with ``count`` idle nodes, and per node."""
    import anyio

    import butter_persist_pcg  # noqa: F401  (the demo's drivers, imported before the baseline)
    import butter_retrieve_bfs  # noqa: F401
    import butter_transport_tcp  # noqa: F401
    from butter._demo import _settings
    from butter._node import open_node

    async def main() -> dict[str, object]:
        baseline = rss()
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(open_node(_settings("tcp", [], 1, {})))
            nodes = [first]
            for _ in range(count - 1):
                nodes.append(await stack.enter_async_context(open_node(_settings("tcp", [str(first.address)], 1, {}))))
            want = min(count - 1, 8)
            with anyio.move_on_after(OVERLAY_WAIT):
                while any(len(node.hosts.peers()) < want for node in nodes):  # noqa: ASYNC110 (bounded poll)
                    await anyio.sleep(0.2)
            await anyio.sleep(SETTLE)
            with_nodes = rss()
            peers = sum(len(node.hosts.peers()) for node in nodes) / count
            for node in nodes:
                await node.aclose(graceful=False)
        return {
            "nodes": count,
            "baseline_rss": baseline,
            "rss": with_nodes,
            "per_node": (with_nodes - baseline) // count,
            "mean_known_peers": round(peers, 1),
        }

    print(json.dumps(anyio.run(main)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="store at most this many files (default: all)")
    parser.add_argument("--idle", default=",".join(map(str, DEFAULT_IDLE)), help="idle node counts, comma-separated")
    parser.add_argument("--skip-demo", action="store_true", help="measure only the idle nodes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    parser.add_argument("--child-idle", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_idle:
        child_idle(args.child_idle)
        return
    counts = [int(n) for n in args.idle.split(",") if n.strip()]
    results: dict[str, object] = {
        "benchmark": "memory",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.skip_demo:
        results["demo"] = demo(args.limit)
        print(json.dumps(results["demo"]), flush=True)
    results["idle"] = []
    for count in counts:
        figures = idle(count)
        results["idle"].append(figures)  # type: ignore[attr-defined]
        print(json.dumps(figures), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
