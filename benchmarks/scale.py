"""Many real TCP nodes in one process: how fast items reach their replicas, and how many survive a mass kill,
with the TLS channel against plaintext in the same run.

    uv run python benchmarks/scale.py                      # 100 nodes, 200 items, 30% killed; TLS then plaintext,
                                                           # each with Python's default GC, then with GC_THRESHOLD
    uv run python benchmarks/scale.py --nodes 50 --items 100 --secure   # one setting only
    uv run python benchmarks/scale.py --secure --gc-threshold           # one setting, the benchmark's GC thresholds

Setup, per setting, in a process of its own (so one setting's memory and connections never weigh on the other):
``--nodes`` nodes on 127.0.0.1 with the default stack (tcp, diversity, pcg with r = 3 and a 2 s heartbeat, bfs; the
transport's per-address admission caps raised, see ``ONE_HOST``), static discovery (node *i* is told node 0 and up
to 3 random earlier nodes); once every node knows at least 8 peers, ``--items`` random items (4 to 40 KiB) are
stored at once, each on a random node. Measured on the loop clock:

* ``replicated_s``: from the stores to every item kept by 3 live nodes (``KeptItems``), at most 60 s;
  ``replicas_per_item_then``: the mean at that moment (or at the bound);
* a third of the nodes (``--kill``, default 0.3) is killed at once, abruptly (no hand-off), none of them the
  reader; ``repaired_s``: from the kill to every surviving item back at 3 live holders, at most 60 s;
* ``retrieved``: a fresh node retrieves every item (16 at a time, 30 s each) and compares byte for byte;
* CPU seconds of the process, its peak RSS, the load average at the start and at the end;
* ``timer_late_s``: how late a 50 ms timer of the benchmark's own fires (median, 99th percentile, max, seconds)
  while the nodes start (``start``: the handshakes of 100 nodes dialling each other, bounded by the transport's
  ``max_handshakes``) and from the stores to 3 replicas (``replicate``): whether the event loop keeps its timers
  (heartbeats, timeouts) on time.

* ``gc``: what the cyclic garbage collector cost, per phase (``start``, ``overlay_store``, ``replicate``,
  ``kill_repair_retrieve``) and per generation (0, 1, 2): collections run, seconds inside them (wall clock, so
  inflated when the machine is loaded), objects collected (cyclic garbage freed), and objects tracked at the
  phase's end (:class:`GcCost`).

``gc_threshold`` (``--gc-threshold``; the full run does each setting with and without it): the process's cyclic
GC thresholds set to :data:`GC_THRESHOLD`. 100 nodes in one process hold about 1.5 million GC-tracked objects
(their connections' tasks, cancel scopes, events), and with the default thresholds a full collection runs every
1-5 s and takes 0.1-3 s, all of it stalling every node. This is the benchmark's choice for its own process;
the library never sets process GC.

Every packet stays on 127.0.0.1; every phase is bounded in time. Writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from butter import Node, open_node
from butter.capabilities import KeptItems
from butter.errors import ButterError
from butter.settings import ButterSettings

OUT = Path(__file__).parent / "results" / "scale.json"
BOUND = 60.0  # seconds each wait may take at most
REPLICAS = 3
GC_THRESHOLD = (100_000, 50, 1000)  # with --gc-threshold: young collections every 100,000 allocations, not 700


# Every node here dials from 127.0.0.1: the transport's per-address admission caps (64 connections from one IP,
# 16 handshakes at once from one /24), made for one node per address, would refuse most of the overlay's
# connections (a first run: no overlay within 60 s, 0 of 200 items retrieved, 377 CPU-seconds of re-dialling).
# Raised to what 100 nodes behind one address need; everything else is the transport's defaults.
ONE_HOST = {"max_inbound_per_ip": 1024, "max_inbound_per_subnet": 1024, "max_handshakes_per_subnet": 128}


def settings(peers: list[str], secure: bool) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1",
        peers=peers,
        transport={"driver": "tcp", "options": {"secure": secure, **ONE_HOST}},
        discovery={"drivers": ["static"], "options": {"static": {"interval": 0.5}}},
        host_manager={"driver": "diversity", "options": {"refresh_interval": 5.0, "exchange_interval": 1.0}},
        persistence={"driver": "pcg"},
        retrieval={"driver": "bfs"},
    )


def holders(network: list[Node], content_ids: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(content_ids, 0)
    for node in network:
        kept = node.capability(KeptItems)
        for content_id in kept.kept_items() if kept is not None else ():
            if content_id in counts:
                counts[content_id] += 1
    return counts


async def wait_for_replicas(network: list[Node], content_ids: list[str]) -> tuple[float | None, float]:
    """Seconds until every item has 3 live holders (``None`` past :data:`BOUND`), and the mean holders then."""
    start = anyio.current_time()
    with anyio.move_on_after(BOUND):
        while True:
            counts = holders(network, content_ids)
            if all(c >= REPLICAS for c in counts.values()):
                return anyio.current_time() - start, sum(counts.values()) / len(counts)
            await anyio.sleep(0.1)
    counts = holders(network, content_ids)
    return None, sum(counts.values()) / len(counts)


class GcCost:
    """What the cyclic garbage collector costs the process, per generation (0, 1, 2), from ``gc.callbacks``.

    Per phase (:meth:`take`): ``collections``, how many ran; ``seconds``, wall seconds inside them (every node stands
    still meanwhile); ``collected``, unreachable objects found, i.e. cyclic garbage freed; ``tracked``, objects the
    collector tracks at the end of the phase.
    """

    def __init__(self) -> None:
        self._reset()
        self._started = 0.0

    def _reset(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]

    def __enter__(self) -> GcCost:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._started
        self.collected[generation] += info["collected"]

    def take(self) -> dict[str, Any]:
        """The figures since the last take, and forget them."""
        taken = {"collections": self.collections, "seconds": [round(s, 2) for s in self.seconds],
                 "collected": self.collected, "tracked": len(gc.get_objects())}
        self._reset()
        return taken


class TimerLateness:
    """How late a 50 ms sleep of the benchmark's own wakes up, in seconds, per phase."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            start = anyio.current_time()
            await anyio.sleep(0.05)
            self.samples.append(anyio.current_time() - start - 0.05)

    def take(self) -> list[float]:
        """Median, 99th percentile and max of the samples since the last take (seconds), and forget them."""
        ordered, self.samples = sorted(self.samples), []
        if not ordered:
            return []
        return [round(x, 3) for x in (ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)], ordered[-1])]


async def one_setting(nodes: int, items: int, kill: float, secure: bool, seed: int) -> dict[str, Any]:
    async with anyio.create_task_group() as tg:
        lateness = TimerLateness()
        tg.start_soon(lateness.run)
        with GcCost() as gc_cost:
            result = await measure(nodes, items, kill, secure, seed, lateness, gc_cost)
        tg.cancel_scope.cancel()
    return result


async def measure(
    nodes: int, items: int, kill: float, secure: bool, seed: int, lateness: TimerLateness, gc_cost: GcCost
) -> dict[str, Any]:
    rng = random.Random(seed)
    cpu_start = time.process_time()
    result: dict[str, Any] = {"secure": secure, "nodes": nodes, "items": items, "gc_threshold": gc.get_threshold(),
                              "load_average_start": os.getloadavg()}
    timer_late: dict[str, list[float]] = {}
    result["timer_late_s"] = timer_late
    gc_phases: dict[str, dict[str, Any]] = {}
    result["gc"] = gc_phases
    async with AsyncExitStack() as stack:
        network: list[Node] = []
        for _ in range(nodes):
            earlier = [str(network[0].address)] if network else []
            earlier += [str(n.address) for n in rng.sample(network[1:], min(3, max(len(network) - 1, 0)))]
            network.append(await stack.enter_async_context(open_node(settings(earlier, secure))))
        timer_late["start"] = lateness.take()
        gc_phases["start"] = gc_cost.take()
        started = anyio.current_time()
        with anyio.move_on_after(BOUND):
            while not all(len(n.hosts.peers()) >= min(8, nodes - 1) for n in network):  # noqa: ASYNC110
                await anyio.sleep(0.1)
        result["overlay_s"] = round(anyio.current_time() - started, 2)

        data = {os.urandom(8) + os.urandom(rng.randint(4096, 40960)): rng.choice(network) for _ in range(items)}
        stored: dict[str, bytes] = {}

        async def store(payload: bytes, node: Node) -> None:
            stored[await node.store(payload)] = payload

        async with anyio.create_task_group() as tg:
            for payload, node in data.items():
                tg.start_soon(store, payload, node)
        lateness.take()
        gc_phases["overlay_store"] = gc_cost.take()
        seconds, mean = await wait_for_replicas(network, list(stored))
        timer_late["replicate"] = lateness.take()
        gc_phases["replicate"] = gc_cost.take()
        result["replicated_s"] = round(seconds, 2) if seconds is not None else None
        result["replicas_per_item_then"] = round(mean, 2)

        victims = rng.sample(network[1:], int(nodes * kill))
        with anyio.CancelScope(shield=True):
            for victim in victims:
                await victim.aclose(graceful=False)
                network.remove(victim)
        result["killed"] = len(victims)
        surviving = [c for c, n in holders(network, list(stored)).items() if n > 0]
        result["items_with_a_live_holder_after_kill"] = len(surviving)
        seconds, mean = await wait_for_replicas(network, surviving)
        result["repaired_s"] = round(seconds, 2) if seconds is not None else None
        result["replicas_per_item_after_repair"] = round(mean, 2)

        reader = await stack.enter_async_context(open_node(settings([str(network[0].address)], secure)))
        with anyio.move_on_after(BOUND):
            while len(reader.hosts.peers()) < min(8, len(network)):  # noqa: ASYNC110
                await anyio.sleep(0.1)
        retrieved = 0
        errors: dict[str, int] = {}
        limiter = anyio.CapacityLimiter(16)

        async def fetch(content_id: str, payload: bytes) -> None:
            nonlocal retrieved
            async with limiter:
                try:
                    data = await reader.retrieve(content_id, timeout=30)
                except ButterError as exc:
                    kind = type(exc).__name__
                    errors[kind] = errors.get(kind, 0) + 1
                    return
            retrieved += data == payload  # (after the await: += across an await would lose updates)

        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for content_id, payload in stored.items():
                tg.start_soon(fetch, content_id, payload)
        result["retrieve_s"] = round(anyio.current_time() - started, 2)
        result["retrieved"] = retrieved
        result["retention"] = round(retrieved / len(stored), 4)
        result["reader_hosts"] = len(reader.hosts.peers())
        result["errors"] = errors
        with anyio.CancelScope(shield=True):
            for node in [*network, reader]:
                await node.aclose(graceful=False)
        gc_phases["kill_repair_retrieve"] = gc_cost.take()
    result["cpu_s"] = round(time.process_time() - cpu_start, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["load_average_end"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--kill", type=float, default=0.3, help="fraction of the nodes killed at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--secure", action="store_true", help="run only the TLS setting, in this process")
    parser.add_argument("--plaintext", action="store_true", help="run only the plaintext setting, in this process")
    parser.add_argument("--gc-threshold", action="store_true", help=f"set the process's GC thresholds: {GC_THRESHOLD}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.gc_threshold:
        gc.set_threshold(*GC_THRESHOLD)
    if args.secure or args.plaintext:
        result = anyio.run(one_setting, args.nodes, args.items, args.kill, args.secure, args.seed)
        print(json.dumps(result))
        return
    runs = []
    for flags in (["--secure"], ["--plaintext"], ["--secure", "--gc-threshold"], ["--plaintext", "--gc-threshold"]):
        command = [sys.executable, __file__, *flags, "--nodes", str(args.nodes), "--items", str(args.items),
                   "--kill", str(args.kill), "--seed", str(args.seed)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    report = {
        "benchmark": "scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "bound_s": BOUND,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
