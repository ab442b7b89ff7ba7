"""Delete by the owner: how fast a tombstone empties every holder, what it costs, and what retrieval answers.

Run::

    python benchmarks/delete.py [--quick] [--nodes N] [--items K] [--out benchmarks/results/delete.json]

One process, the memory transport (no sockets): ``--nodes`` nodes (default 30), each told a few earlier nodes
(static discovery, ``diversity`` host management), PCG keeping 3 replicas (0.5 s heartbeat), BFS retrieval.
``--items`` owned items of 20,000 bytes (5 blocks) are stored on random nodes and left to replicate. Then, for
each item, a random node that does not hold it calls ``node.delete`` (it must search for the holders):

* ``delete_ms``: how long ``node.delete`` took (search, manifest fetch, signing, sending), p50 / max;
* ``holders_accepted``: holders that answered ``accepted`` or ``duplicate``, min / median;
* ``until_no_holder_ms``: from the call until no node holds the manifest, p50 / max;
* ``blocks``: blocks in every store before and after (0 after: nothing but these items was stored);
* ``tombstone_offers``: every node's book outcomes summed (one offer per ``delete-item`` request received,
  plus the deleting node's own, which keeps the tombstone too): the messages a deletion costs;
* ``retrieve_deleted_ms``: a random node retrieving a deleted item gets ``ItemDeleted``, p50 / max (0 ms on
  a node that keeps the tombstone; a search on the others).

Every loop is bounded in count; waits are bounded in time. The machine is shared: the figures are for one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter

ITEM_BYTES = 20_000


def spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values) * 1000, 1), "max": round(max(values) * 1000, 1)}


async def run(nodes_count: int, items: int, seed: int) -> dict[str, Any]:
    network = f"delete-{uuid.uuid4().hex[:8]}"
    hosts = {"refresh_interval": 0.5, "exchange_interval": 0.5, "quality_timeout": 2.0}
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for i in range(nodes_count):
            settings = butter.ButterSettings(
                host="127.0.0.1", peers=[str(n.address) for n in nodes[max(0, i - 3):i]],
                transport={"driver": "memory", "options": {"network": network}},
                discovery={"drivers": ["static"], "options": {"static": {"interval": 0.5}}},
                host_manager={"driver": "diversity", "options": hosts},
                persistence={"driver": "pcg", "options": {"heartbeat_interval": 0.5}},
                retrieval={"driver": "bfs", "options": {"retrieve_timeout": 10.0}},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))
        await anyio.sleep(5)  # let host management settle
        owner = Ed25519PrivateKey.generate()
        cids = [await rng.choice(nodes).store(rng.randbytes(ITEM_BYTES), owner=owner) for _ in range(items)]

        async def holders(cid: str) -> list[butter.Node]:
            return [n for n in nodes if await n.blocks.has(cid)]

        with anyio.move_on_after(120):
            while min([len(await holders(c)) for c in cids]) < 3:  # noqa: ASYNC110 (polls the stores; bounded)
                await anyio.sleep(0.1)
        replicas = [len(await holders(c)) for c in cids]
        blocks_before = sum([len(await n.blocks.block_ids()) for n in nodes])
        delete_s, gone_s, accepted = [], [], []
        for cid in cids:
            held = await holders(cid)
            deleter = rng.choice([n for n in nodes if n not in held])
            start = time.perf_counter()
            accepted.append(await deleter.delete(cid, owner=owner))
            delete_s.append(time.perf_counter() - start)
            with anyio.move_on_after(30):
                while await holders(cid):  # noqa: ASYNC110 (polls the stores; bounded)
                    await anyio.sleep(0.01)
            gone_s.append(time.perf_counter() - start)
        blocks_after = sum([len(await n.blocks.block_ids()) for n in nodes])
        offers: dict[str, int] = {}
        for node in nodes:
            for outcome, count in node.tombstones.counts.items():
                offers[outcome] = offers.get(outcome, 0) + count
        retrieve_s = []
        for cid in cids:
            start = time.perf_counter()
            try:
                await rng.choice(nodes).retrieve(cid)
                raise SystemExit(f"a deleted item was served: {cid}")
            except butter.ItemDeleted:
                retrieve_s.append(time.perf_counter() - start)
        return {
            "nodes": nodes_count, "items": items, "item_bytes": ITEM_BYTES,
            "replicas_before": {"min": min(replicas), "median": statistics.median(replicas)},
            "delete_ms": spread(delete_s),
            "holders_accepted": {"min": min(accepted), "median": statistics.median(accepted)},
            "until_no_holder_ms": spread(gone_s),
            "blocks": {"before": blocks_before, "after": blocks_after},
            "tombstone_offers": offers,
            "tombstone_offers_per_item": round(sum(offers.values()) / items, 1),
            "retrieve_deleted_ms": spread(retrieve_s),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 nodes, 5 items")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "delete.json")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.items = 12, 5
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "delete": anyio.run(run, args.nodes, args.items, args.seed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
