"""Signed records under churn: how fast an update reaches resolvers, whether a forged record is ever taken,
and whether a deleted name is still served, on the churn simulator (virtual time, memory transport).

    uv run python benchmarks/records_churn.py            # P2: 250 nodes, 1/50 per s, 30 s churn, heartbeat 2 s
    uv run python benchmarks/records_churn.py --quick    # 60 nodes, fewer resolves (a smoke run)

The population is the report's persistence experiment P2: ``--nodes`` real nodes (pcg persistence, bfs retrieval,
``diversity`` host management) started one by one, a 10 s warm-up, then 30 s of churn in which every node
past its 10 s grace dies with probability 1/50 each second and a fresh node replaces it; heartbeat 2 s.

* **Publishes.** ``--names`` owners (each an Ed25519 key, which moves with its user: every publish is made
  from a random live node) publish at churn second 0, then update at seconds 10 and 20.
* **Resolves.** 1, 5 and 30 s after each publish, ``--resolvers`` random live nodes (never hostile) resolve
  the name. A resolve is *newest* when it returns the newest sequence published for the name when it
  started. A resolve whose node died before it finished is left out (counted in ``resolver_died``).
* **Forged records.** ``--hostile`` nodes (never churned) attack for the whole run: each second each one
  pushes, for every name, a forged record (a published one with a higher sequence and another value, its
  signature kept) to 8 random peers with ``put-record``, heartbeats the name's holders (found with its bfs
  search) claiming a far higher sequence, and answers every ``get-record`` with the forged record. The
  ground truth: after every step, every live honest node's record book is checked for a record of the
  names that its owner did not sign (``forged_accepted``, target 0), and every resolve result too.
* **Holders.** ``holders_per_name_at_end``: the live honest nodes keeping each name's group at the end (one
  group of ``replicas`` 3 per name when publishes from other nodes join the existing group).
* **Delete.** At the end of churn the first name is deleted by its owner (``unpublish``, from a random live
  node). 10 s later: ``serving_deleted_nodes``, the honest live nodes whose record book still holds a
  non-deletion record of the name (what they would answer a ``get-record`` with), and the fraction of
  ``--resolvers`` resolves that raise ``RecordDeleted`` (the rest returned the old record, or failed).

Writes benchmarks/results/records-churn.json. Deterministic for one ``--seed`` (the simulator's rules) except
``wall_seconds``: the records' sequences and expiries read the wall clock, which does not change the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter
from butter import codec
from butter.errors import ButterError
from butter.records import SignedRecord, public_key_bytes, record_name
from butter.testing.memory import MemoryNetwork
from butter.testing.sim import ChurnConfig, Population, deterministic_scheduling, free_network_name
from butter_persist_pcg._messages import GroupBeat, Heartbeat

OUT = Path(__file__).parent / "results" / "records-churn.json"
DELAYS = (1.0, 5.0, 30.0)  # seconds after a publish at which resolves start
UPDATES = (0.0, 10.0, 20.0)  # churn seconds at which every name is published
EVIL = b"forged value"


@dataclasses.dataclass
class Run:
    config: ChurnConfig
    population: Population
    names: dict[str, tuple[Ed25519PrivateKey, str]]  # name -> owner key, label
    hostile: set[str] = dataclasses.field(default_factory=set)
    genuine: set[bytes] = dataclasses.field(default_factory=set)  # signatures of records the owners signed
    newest: dict[str, int] = dataclasses.field(default_factory=dict)  # name -> newest sequence published
    forged_seen: int = 0
    resolves: dict[float, list[bool]] = dataclasses.field(default_factory=lambda: {d: [] for d in DELAYS})
    failures: dict[float, dict[str, int]] = dataclasses.field(default_factory=lambda: {d: {} for d in DELAYS})
    resolver_died: int = 0

    def honest(self) -> list[butter.Node]:
        return [n for node_id, (n, _, _) in self.population.alive.items() if node_id not in self.hostile]

    def check_books(self) -> None:
        """Count the records of the names on live honest nodes that their owner did not sign."""
        now = time.time()
        for node in self.honest():
            for name in self.names:
                record = node.records.get(name, now=now)
                if record is not None and record.signature not in self.genuine:
                    self.forged_seen += 1


async def publish(run: Run, name: str, *, delete: bool = False) -> SignedRecord:
    key, label = run.names[name]
    node = random.Random(f"{run.config.seed}-{name}-{len(run.genuine)}").choice(run.honest())
    record = await (node.unpublish(label, owner=key) if delete else node.publish(label, os.urandom(16), owner=key))
    run.genuine.add(record.signature)
    run.newest[name] = record.sequence
    return record


async def resolve(run: Run, node: butter.Node, name: str, delay: float) -> None:
    wanted = run.newest[name]
    try:
        with anyio.fail_after(20):
            record = await node.resolve(name)
        run.resolves[delay].append(record.sequence >= wanted)
        run.forged_seen += record.signature not in run.genuine
    except butter.RecordDeleted as exc:  # the name's deletion (after its last update) is its newest record
        run.resolves[delay].append(exc.record.sequence >= wanted)
    except (ButterError, TimeoutError) as exc:
        if node.node_id not in run.population.alive:
            run.resolver_died += 1
            return
        run.resolves[delay].append(False)
        kind = type(exc).__name__
        run.failures[delay][kind] = run.failures[delay].get(kind, 0) + 1


async def resolves_after(run: Run, name: str, delay: float, count: int, rng: random.Random) -> None:
    await anyio.sleep(delay)
    nodes = run.honest()
    async with anyio.create_task_group() as tg:
        for node in rng.sample(nodes, min(count, len(nodes))):
            tg.start_soon(resolve, run, node, name, delay)


async def still_serving(nodes: list[butter.Node], name: str) -> int:
    """How many of ``nodes`` answer a ``get-record`` of ``name`` (no hops) with a record that is not its
    deletion record: they still serve the deleted name."""
    serving = 0
    body = codec.encode({"name": name})
    for node in nodes:
        try:
            reply = await nodes[0].request(node.address, "get-record", body, timeout=5.0)
        except ButterError:
            continue
        blob = codec.Fields.decode(reply).blob("record", default=None)
        serving += blob is not None and not SignedRecord.decode(blob).deleted
    return serving


def forge(record: SignedRecord) -> SignedRecord:
    return dataclasses.replace(record, sequence=record.sequence + 1_000_000, value=EVIL)


async def attack(run: Run, node: butter.Node, published: dict[str, SignedRecord], end: float,
                 rng: random.Random) -> None:
    """One hostile node's attack, once a second until virtual time ``end``."""

    @node.route("get-record")
    async def serve(request: butter.RouteRequest) -> bytes:
        name = codec.Fields.decode(request.body).string("name", max_length=64)
        record = published.get(name)
        return codec.encode({"record": forge(record).encode() if record is not None else None})

    while anyio.current_time() < end:
        for name, record in list(published.items()):
            forged = forge(record)
            peers = [p.address for p in node.hosts.peers()]
            for address in rng.sample(peers, min(8, len(peers))):
                with anyio.move_on_after(2):
                    try:
                        await node.request(address, "put-record", codec.encode({"record": forged.encode()}),
                                           timeout=1.0)
                    except ButterError:
                        pass
            try:
                holders = await node.retrieval.locate(name, timeout=2.0)  # type: ignore[attr-defined]
            except ButterError:
                holders = []
            claim = GroupBeat(name, len(record.encode()), 0, [], forged.sequence)
            beat = Heartbeat(node.node_id, node.address, False, [claim]).encode()
            for address in holders[:8]:
                try:
                    await node.request(address, "pcg-heartbeat", beat, timeout=1.0)
                except ButterError:
                    pass
        await anyio.sleep(1.0)


async def experiment(config: ChurnConfig, names: int, resolvers: int, hostile: int) -> dict[str, Any]:
    network_name = free_network_name(f"records-{config.seed}")
    MemoryNetwork.named(network_name)._random.seed(config.seed)
    population = Population(config, network_name)
    rng = random.Random(config.seed)
    keys = [Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(names)]
    run = Run(config, population, {record_name(public_key_bytes(k), f"name-{i}"): (k, f"name-{i}")
                                   for i, k in enumerate(keys)})
    published: dict[str, SignedRecord] = {}
    wall = time.perf_counter()
    deleted: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        for _ in range(config.nodes):
            await population.spawn(tg)
        for node_id in rng.sample(sorted(population.alive), hostile):
            run.hostile.add(node_id)
        await anyio.sleep(config.warmup)
        start = anyio.current_time()
        end = start + config.churn + 10.0 + max(DELAYS) + 1.0
        for node_id in run.hostile:
            tg.start_soon(attack, run, population.alive[node_id][0], published, end, random.Random(node_id))
        background: TaskGroup
        async with anyio.create_task_group() as background:
            for second in range(int(config.churn)):
                if float(second) in UPDATES:
                    for name in run.names:
                        published[name] = await publish(run, name)
                        for delay in DELAYS:
                            background.start_soon(resolves_after, run, name, delay, resolvers,
                                                  random.Random(f"{config.seed}-{name}-{second}-{delay}"))
                now = anyio.current_time()
                for node_id, (_, _, born) in list(population.alive.items()):
                    if node_id not in run.hostile and now - born >= config.grace \
                            and population.rng.random() < config.death_rate:
                        await population.kill(node_id)
                        await population.spawn(tg)
                run.check_books()
                await anyio.sleep(1.0)
            first = next(iter(run.names))
            await publish(run, first, delete=True)
            await anyio.sleep(10.0)
            run.check_books()
            serving = await still_serving(run.honest(), first)
            outcomes: list[str] = []

            async def resolve_deleted(node: butter.Node) -> None:
                try:
                    with anyio.fail_after(20):
                        await node.resolve(first)
                    outcomes.append("old record")
                except butter.RecordDeleted:
                    outcomes.append("deleted")
                except (ButterError, TimeoutError):
                    outcomes.append("failed")

            async with anyio.create_task_group() as probes:
                for node in rng.sample(run.honest(), min(resolvers, len(run.honest()))):
                    probes.start_soon(resolve_deleted, node)
            deleted = {
                "serving_deleted_nodes": serving,
                "resolves_deleted_fraction": round(outcomes.count("deleted") / len(outcomes), 3),
                "resolve_outcomes": {k: outcomes.count(k) for k in sorted(set(outcomes))},
            }
        run.check_books()
        tg.cancel_scope.cancel()
    counters = [n.persistence.counters() for n in run.honest()]  # type: ignore[attr-defined]
    return {
        "newest_fraction": {f"{d:g}s": round(sum(v) / len(v), 4) if v else None for d, v in run.resolves.items()},
        "resolves": {f"{d:g}s": len(v) for d, v in run.resolves.items()},
        "failures": {f"{d:g}s": f for d, f in run.failures.items()},
        "resolver_died": run.resolver_died,
        "forged_accepted": run.forged_seen,
        "refused_by_books": {k: sum(n.records.counts[k] for n in run.honest()) for k in ("forged", "stale")},
        "holders_per_name_at_end": [sum(name in n.persistence.kept_items() for n in run.honest())  # type: ignore[attr-defined]
                                    for name in run.names],
        "records_pulled": sum(c.get("records_pulled", 0) for c in counters),
        "records_refused_by_pcg": sum(c.get("records_refused", 0) for c in counters),
        "delete_after_10s": deleted,
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 nodes, 5 resolvers per step")
    parser.add_argument("--nodes", type=int, default=250)
    parser.add_argument("--names", type=int, default=3)
    parser.add_argument("--resolvers", type=int, default=20)
    parser.add_argument("--hostile", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.resolvers, args.hostile = 60, 5, 2
    config = ChurnConfig(nodes=args.nodes, death_rate=1 / 50, churn=30.0, heartbeat=2.0, seed=args.seed)
    from trio.testing import MockClock

    with deterministic_scheduling(config.seed):
        result = anyio.run(experiment, config, args.names, args.resolvers, args.hostile, backend="trio",
                           backend_options={"clock": MockClock(autojump_threshold=0)})
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "setup": {"nodes": args.nodes, "death_rate": "1/50 per s", "churn_s": 30, "heartbeat_s": 2.0,
                  "names": args.names, "updates_at_churn_s": list(UPDATES), "resolvers_per_step": args.resolvers,
                  "hostile_nodes": args.hostile, "seed": args.seed, "median_delay_s": statistics.median(DELAYS)},
        "result": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
