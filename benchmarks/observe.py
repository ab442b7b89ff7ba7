"""The cost of observing: two Butter nodes over real tcp on 127.0.0.1, with butter-observe's tracker and
metrics off and on, in the same run (interleaved rounds, medians), as ratios against off.

Run::

    python benchmarks/observe.py [--quick] [--rounds N] [--demo] [--out benchmarks/results/observe-overhead.json]

Configurations (both nodes alike; node ``b`` calls route ``echo`` on node ``a``):

* ``off``: butter-observe installed but inert (the default: no option set);
* ``metrics``: ``metrics_port`` set, so every request is counted and timed (event ``butter_request_served``)
  and ``/metrics`` of ``a`` is scraped every second (operators scrape every 15 s or so);
* ``tracker``: ``tracker_url`` a SQLite file, a snapshot every second (the default is 10 s);
* ``both``: the two at once.

Measured with benchmarks/rpc.py's code: (a) sequential 64-byte round trips, p50 and CPU per request; (b) 64
senders doing 64-byte round trips, requests per second and CPU per request. Ratios are ``configuration /
off`` (for throughput below 1 is a cost; for latency and CPU above 1 is). With ``--demo``, also ``butter
demo --nodes 10 --limit 40`` as a process with and without ``--tracker`` (wall seconds, alternating runs).
The machine's load average is recorded: on a shared machine only same-run ratios mean anything.

Because wall-clock ratios on a loaded machine swing by tens of percent, ``micro`` also times the observing
work itself, in a loop on one node: the per-request event with and without metrics subscribed (microseconds
per request), taking a snapshot, and writing one to SQLite (the tracker's work per interval, done in a
worker thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from rpc import LOOPBACK, MAX_FRAME, QUICK, TIMEOUT, Call, Implementation, Plan, median_of, run_once

import butter
from butter.settings import ButterSettings

CONFIGURATIONS = ("off", "metrics", "tracker", "both")
SCRAPE_INTERVAL = 1.0  # seconds
TRACKER_INTERVAL = 1.0  # seconds


def observe_options(configuration: str, database: Path) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if configuration in ("metrics", "both"):
        options["metrics_port"] = 0
    if configuration in ("tracker", "both"):
        options.update(tracker_url=f"sqlite:{database}", tracker_interval=TRACKER_INTERVAL)
    return options


async def scrape_forever(node: butter.Node) -> None:
    from butter_observe import ObservePlugin

    plugin = node.plugins.pm.get_plugin("butter.plugins:observe")
    assert isinstance(plugin, ObservePlugin)
    await plugin.metrics_listening.wait()
    while True:
        async with await anyio.connect_tcp(LOOPBACK, plugin.metrics_port or 0) as stream:
            await stream.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        await anyio.sleep(SCRAPE_INTERVAL)


@asynccontextmanager
async def observed_nodes(configuration: str, directory: Path) -> AsyncIterator[Implementation]:
    database = directory / f"{configuration}.db"

    def settings() -> ButterSettings:
        return ButterSettings(host=LOOPBACK, port=0, transport={"driver": "tcp"}, discovery={"drivers": ["static"]},
                              max_frame=MAX_FRAME, plugins={"observe": observe_options(configuration, database)})

    async with butter.open_node(settings()) as a, butter.open_node(settings()) as b, \
            anyio.create_task_group() as tg:

        async def echo(request: butter.RouteRequest) -> bytes:
            return request.body

        a.route("echo", echo)
        if configuration in ("metrics", "both"):
            tg.start_soon(scrape_forever, a)

        async def call(body: bytes) -> bytes:
            return await b.request(a.address, "echo", body, timeout=TIMEOUT)

        async def senders(n: int) -> list[Call]:
            return [call] * n

        yield Implementation(configuration, call, senders)
        tg.cancel_scope.cancel()


async def run_all(plan: Plan, directory: Path) -> dict[str, Any]:
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGURATIONS}
    for round_number in range(plan.rounds):
        shift = round_number % len(CONFIGURATIONS)
        for name in CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]:
            print(f"  round {round_number + 1}/{plan.rounds}: {name} ...", file=sys.stderr, flush=True)
            factory: Callable[[], Any] = lambda name=name: observed_nodes(name, directory)  # noqa: E731
            per_round[name].append(await run_once(factory, ("latency", "throughput"), plan))
    return {name: median_of(rounds) for name, rounds in per_round.items()}


def overhead(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    off = results["off"]

    def ratio(name: str, phase: str, key: str) -> float:
        return round(results[name][phase][key] / off[phase][key], 3)

    return {name: {
        "latency_p50": ratio(name, "latency", "p50_us"),
        "latency_cpu_per_request": ratio(name, "latency", "cpu_us_per_request"),
        "throughput": ratio(name, "throughput", "requests_per_s"),
        "throughput_cpu_per_request": ratio(name, "throughput", "cpu_us_per_request"),
    } for name in CONFIGURATIONS if name != "off"}


async def micro(directory: Path, calls: int = 20_000, snapshots: int = 200) -> dict[str, Any]:
    """Microseconds per ``butter_request_served`` event without and with metrics, and per snapshot taken and
    written to SQLite."""
    from butter_observe import open_database, take_snapshot

    def settings(options: dict[str, Any]) -> ButterSettings:
        return ButterSettings(host=LOOPBACK, port=0, transport={"driver": "tcp"}, discovery={"drivers": []},
                              plugins={"observe": options})

    def per_call(fn: Callable[[], object], count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        return round((time.perf_counter() - start) / count * 1e6, 2)

    out: dict[str, Any] = {}
    for name in ("off", "metrics"):
        async with butter.open_node(settings(observe_options(name, directory / "micro.db"))) as node:
            out[f"request_event_us_{name}"] = per_call(
                lambda node=node: node.emit("butter_request_served", route="echo", seconds=1e-4, error_code=None),
                calls)
            if name == "off":
                out["snapshot_take_us"] = per_call(lambda node=node: take_snapshot(node), snapshots)
                snapshot = take_snapshot(node)
    database = open_database(f"sqlite:{directory / 'micro.db'}")
    try:
        out["snapshot_write_sqlite_us"] = per_call(lambda: database.write(snapshot, history_expiry=3600), snapshots)
    finally:
        database.close()
    out["metrics_us_per_request"] = round(out["request_event_us_metrics"] - out["request_event_us_off"], 2)
    return out


def run_demo(rounds: int, directory: Path) -> dict[str, Any]:
    """``butter demo --nodes 10 --limit 40`` without and with ``--tracker`` (alternating), wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTER_")}
    seconds: dict[str, list[float]] = {"off": [], "tracker": []}
    for round_number in range(rounds):
        for name in ("off", "tracker") if round_number % 2 == 0 else ("tracker", "off"):
            extra = ["--tracker", f"sqlite:{directory / f'demo-{round_number}.db'}"] if name == "tracker" else []
            print(f"  demo round {round_number + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "butter.cli", "demo", "--nodes", "10", "--limit", "40",
                                   *extra], env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr
            seconds[name].append(round(time.perf_counter() - start, 2))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {"command": "butter demo --nodes 10 --limit 40 [--tracker sqlite:PATH] (tracker every 1 s)",
            "wall_seconds": seconds, "median_wall_seconds": medians,
            "tracker_over_off": round(medians["tracker"] / medians["off"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (for CI smoke runs)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, each number is the median (default 3)")
    parser.add_argument("--demo", action="store_true", help="also time butter demo with and without the tracker")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "observe-overhead.json")
    args = parser.parse_args()
    plan = replace(QUICK, rounds=3) if args.quick else Plan()
    if args.rounds:
        plan = replace(plan, rounds=max(1, min(args.rounds, 20)))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="butter-observe-bench-") as tmp:
        results = anyio.run(run_all, plan, Path(tmp))
        costs = anyio.run(micro, Path(tmp))
        demo = run_demo(plan.rounds, Path(tmp)) if args.demo else None
    report = {
        "benchmark": "observe overhead (benchmarks/observe.py)",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "plan": asdict(plan),
        "scrape_interval": SCRAPE_INTERVAL,
        "tracker_interval": TRACKER_INTERVAL,
        "results": results,
        "over_off": overhead(results),
        "micro": costs,
        "demo": demo,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, values in report["over_off"].items():
        print(f"{name:>8} / off: latency p50 x{values['latency_p50']}, CPU/request "
              f"x{values['latency_cpu_per_request']}; throughput x{values['throughput']}, CPU/request "
              f"x{values['throughput_cpu_per_request']}")
    print(f"micro (us): {costs}")
    if demo is not None:
        print(f"butter demo: tracker / off x{demo['tracker_over_off']} ({demo['median_wall_seconds']})")
    print(f"load average {report['load_average_before_after']}; written to {args.out}")


if __name__ == "__main__":
    main()
