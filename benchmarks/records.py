"""Encrypted items and signed records: what they cost, and how far a published record reaches.

Run::

    python benchmarks/records.py [--quick] [--nodes N] [--out benchmarks/results/records.json]

Measurements (all in one process; the memory transport, so no sockets):

(a) cipher: ChaCha20-Poly1305 encryption and decryption of an ``--item-mib`` item (default 16 MiB), MiB/s,
    against SHA-256 over the same bytes (what cutting an item into blocks costs anyway): ``ratios`` are
    cipher time / hash time.
(b) store: ``node.store(data)`` against ``node.store(data, encrypt=True)`` of a 4 MiB item on one node
    (``single`` persistence); the ratio is the price of encryption at the API.
(c) records: signing, and decoding + verifying, operations per second.
(d) reach: ``--nodes`` nodes (default 30) on a memory overlay (static discovery of a few earlier nodes,
    ``diversity`` host management), left to settle; node 0 publishes, then every other node resolves: the
    fraction that gets the newest sequence, and resolve latency p50/p90. Node 0 then publishes a second
    version and every node resolves again. This measures the one-hop push plus two-hop resolve design on an
    overlay where most nodes are not neighbours of the publisher.

Every loop is bounded in count; the median of ``--rounds`` is kept for (a)-(c). The machine is shared, so
compare the ratios of one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
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
from butter.encryption import decrypt, encrypt
from butter.records import SignedRecord, sign_record

MIB = 1024 * 1024


def timed(fn: Any, rounds: int) -> float:
    """Median seconds of ``rounds`` calls of ``fn()``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cipher(item_mib: int, rounds: int) -> dict[str, Any]:
    data = os.urandom(item_mib * MIB)
    ciphertext, key = encrypt(data)
    seconds = {
        "sha256": timed(lambda: hashlib.sha256(data).digest(), rounds),
        "encrypt": timed(lambda: encrypt(data), rounds),
        "decrypt": timed(lambda: decrypt(ciphertext, key), rounds),
    }
    return {
        "item_mib": item_mib,
        "mib_per_s": {k: round(item_mib / v, 1) for k, v in seconds.items()},
        "ratios": {f"{k}_over_sha256": round(seconds[k] / seconds["sha256"], 2) for k in ("encrypt", "decrypt")},
    }


async def store(rounds: int) -> dict[str, Any]:
    settings = butter.ButterSettings(
        host="127.0.0.1", transport={"driver": "memory", "options": {"network": f"bench-{uuid.uuid4().hex[:8]}"}},
        discovery={"drivers": []}, persistence={"driver": "single"}, retrieval={"driver": ""},
    )
    seconds: dict[str, list[float]] = {"plain": [], "encrypted": []}
    async with butter.open_node(settings) as node:
        for _ in range(rounds):
            for kind in seconds:
                data = os.urandom(4 * MIB)
                start = time.perf_counter()
                await node.store(data, encrypt=kind == "encrypted")
                seconds[kind].append(time.perf_counter() - start)
    plain, encrypted = (statistics.median(seconds[k]) for k in ("plain", "encrypted"))
    return {"item_mib": 4, "ms": {"plain": round(plain * 1000, 1), "encrypted": round(encrypted * 1000, 1)},
            "encrypted_over_plain": round(encrypted / plain, 2)}


def records(count: int) -> dict[str, Any]:
    owner = Ed25519PrivateKey.generate()
    expires = int(time.time()) + 3600
    start = time.perf_counter()
    signed = [sign_record(owner, "bench", b"v", sequence=i, expires_at=expires) for i in range(count)]
    sign_s = time.perf_counter() - start
    encoded = [r.encode() for r in signed]
    now = time.time()
    start = time.perf_counter()
    for body in encoded:
        SignedRecord.decode(body).verify(now=now)
    verify_s = time.perf_counter() - start
    return {"records": count, "encoded_bytes": len(encoded[0]),
            "sign_per_s": round(count / sign_s), "decode_verify_per_s": round(count / verify_s)}


async def reach(nodes_count: int) -> dict[str, Any]:
    network = f"reach-{uuid.uuid4().hex[:8]}"
    hosts = {"refresh_interval": 0.5, "exchange_interval": 0.5, "quality_timeout": 2.0}
    async with AsyncExitStack() as stack:
        nodes: list[butter.Node] = []
        for i in range(nodes_count):
            settings = butter.ButterSettings(
                host="127.0.0.1", peers=[str(n.address) for n in nodes[max(0, i - 3):i]],
                transport={"driver": "memory", "options": {"network": network}},
                discovery={"drivers": ["static"], "options": {"static": {"interval": 0.5}}},
                host_manager={"driver": "diversity", "options": hosts},
                persistence={"driver": ""}, retrieval={"driver": ""},
            )
            nodes.append(await stack.enter_async_context(butter.open_node(settings)))
        await anyio.sleep(5)  # let host management settle
        known = [len(n.hosts.peers()) for n in nodes]
        rounds = []
        for version in (b"first", b"second"):
            record = await nodes[0].publish("bench", version)
            latencies: list[float] = []
            newest = 0
            for node in nodes[1:]:
                start = time.perf_counter()
                try:
                    with anyio.fail_after(10):
                        got = await node.resolve(record.name, timeout=2.0)
                    newest += got.sequence == record.sequence
                except (butter.RecordNotFound, TimeoutError):
                    pass
                latencies.append(time.perf_counter() - start)
            ordered = sorted(latencies)
            rounds.append({
                "version": version.decode(),
                "newest_fraction": round(newest / (nodes_count - 1), 3),
                "resolve_ms_p50": round(ordered[len(ordered) // 2] * 1000, 1),
                "resolve_ms_p90": round(ordered[int(len(ordered) * 0.9)] * 1000, 1),
            })
        return {"nodes": nodes_count, "known_hosts_median": statistics.median(known), "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small item, few rounds, 12 nodes")
    parser.add_argument("--item-mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "records.json")
    args = parser.parse_args()
    if args.quick:
        args.item_mib, args.rounds, args.nodes = 2, 2, 12
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "cipher": cipher(args.item_mib, args.rounds),
        "store": anyio.run(store, args.rounds),
        "records": records(200 if args.quick else 2000),
        "reach": anyio.run(reach, args.nodes),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
