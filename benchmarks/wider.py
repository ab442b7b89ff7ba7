"""Wider-discovery benchmark: ambassadors, relay and hole punching across two NATed LANs (network namespaces).

Run (as root, with iptables: it builds namespaces and NAT routers, see ``tests/netns/harness.py``)::

    python benchmarks/wider.py [--quick] [--joins 5] [--punches 30] [--out benchmarks/results/wider.json]

Topology: LAN a and LAN b, each behind its own NAT router (iptables MASQUERADE, unsolicited packets dropped),
and a public segment with two ambassadors: ``p0`` with libp2p's default byte limit (128 KiB per circuit)
and a 10 s circuit duration (instead of 120 s, so the bench does not wait two minutes), and ``p1`` with
generous limits (256 MiB, 120 s) for the throughput measurement. In a: ``a0`` (not reachable: relayed at
both ambassadors), ``a1`` (port-forwarded by a DNAT rule), and a host for newcomers. In b: ``b0`` (not
reachable) and an observer from which the probes run; LAN c, behind a third NAT, for newcomers alone. Client rounds
every ``--interval`` s (default 5).

Measured:

* **time to know**: ``--joins`` times, a new node starts behind NAT with only the ambassador configured,
  once in LAN a (whose nodes already know b: the newcomer may learn b0 from them by the ordinary known-host
  exchange) and once alone in LAN c behind its own NAT (only the ambassador can introduce it); time from
  its process start until host management admits ``b0`` (a peer of the other LAN), and until ``b0``
  admits it (at b0's next round, so up to one interval later, plus the newcomer's dial-back timeout
  before it reserves a relay).
* **relay throughput**: a probe node in b fetches every block of a 4 MiB item (1,024 random blocks, 8
  requests in flight) from ``a0`` through ``p1``'s relay, and the same item stored on the port-forwarded
  ``a1`` directly, for reference.
* **limits**: through ``p0``'s relay, blocks are fetched until the circuit is cut: bytes delivered before
  the cut (must stay under 128 KiB), and on a new circuit, host-quality polls every 0.25 s until the
  transport has to dial again because the ambassador cut the circuit: its lifetime (about 10 s, within a
  poll). ``p0``'s log counts both kinds of closure (other nodes' circuits are cut too).
* **hole punching**: a probe node in b with the ambassador client punches to ``a0`` ``--punches`` times in
  a row through ``p0``; success rate and time per punch.

Every wait is bounded; a step that times out is reported as missing, not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _netns import load_harness, percentile, rounded

PORT = 7000
RELAY_PORTS = "7100-7131"




@dataclass(frozen=True)
class Plan:
    joins: int = 4
    punches: int = 30
    interval: float = 5.0
    item_mib: int = 4
    timeout: float = 60.0


QUICK = Plan(joins=2, punches=10, item_mib=1)




# -- probes: run inside a namespace by the orchestrator -------------------------------------------------------


async def _probe_node(host: str, ambassador: dict[str, Any] | None = None) -> Any:
    import butter

    discovery = {"drivers": ["ambassador"], "options": {"ambassador": ambassador}} if ambassador else {"drivers": []}
    settings = butter.ButterSettings(
        host=host, port=0, discovery=discovery,
        persistence={"driver": ""}, retrieval={"driver": ""}, shutdown_timeout=0.5,
    )
    return butter.open_node(settings)


async def probe_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    from butter.blocks import load_manifest

    async with await _probe_node(args.host) as node:
        started = time.monotonic()
        manifest = load_manifest(args.cid, await node.fetch_block(args.target, args.cid, timeout=10))
        todo = list(dict.fromkeys(manifest.blocks))
        moved = 0
        limiter = anyio.Semaphore(8)

        async def one(address: str) -> None:
            nonlocal moved
            async with limiter:
                block = await node.fetch_block(args.target, address, timeout=30)
            moved += len(block)

        async with anyio.create_task_group() as tg:
            for address in todo:
                tg.start_soon(one, address)
        elapsed = time.monotonic() - started
    return {"bytes": moved, "seconds": round(elapsed, 3), "mib_per_s": round(moved / elapsed / 2**20, 2)}


async def probe_limits(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    import butter
    from butter.blocks import load_manifest

    async with await _probe_node(args.host) as node:
        delivered, failed = 0, None
        manifest_data = await node.fetch_block(args.target, args.cid, timeout=10)
        delivered += len(manifest_data)
        for address in load_manifest(args.cid, manifest_data).blocks:
            try:
                delivered += len(await node.fetch_block(args.target, address, timeout=10))
            except butter.ButterError as exc:
                failed = str(exc)
                break
        # a new circuit: poll it until the transport has to dial again (the ambassador cut it)
        await anyio.sleep(0.5)
        opened = node.transport.stats.connections_opened
        started, polls, lifetime = time.monotonic(), 0, None
        while time.monotonic() - started < args.max_wait:
            try:
                await node.request(args.target, "host-quality", b"", timeout=5)
            except butter.ButterError:
                pass
            polls += 1
            if polls == 1:
                opened, started = node.transport.stats.connections_opened, time.monotonic()
            elif node.transport.stats.connections_opened > opened:
                lifetime = round(time.monotonic() - started, 2)
                break
            await anyio.sleep(0.25)
    return {"bytes_before_cut": delivered, "bytes_cut_reason": failed, "polls": polls,
            "circuit_lifetime_s": lifetime}


async def probe_punch(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    from butter.peers import PeerAddress
    from butter_wider_ambassador import AmbassadorDiscovery

    options = {"ambassadors": [args.ambassador], "interval": 1.0, "punch": False, "relay": False, "upnp": False}
    async with await _probe_node(args.host, options) as node:
        [discovery] = [d for d in node.discoveries if isinstance(d, AmbassadorDiscovery)]
        client = discovery.client
        assert client is not None
        target = PeerAddress.parse(args.target)
        with anyio.fail_after(30):
            while target not in client._relay_of:  # noqa: ASYNC110 (the client's rounds fill it)
                await anyio.sleep(0.1)
        durations, results = [], []
        for _ in range(args.count):
            began = time.monotonic()
            ok = await client.punch(target)
            durations.append(round(time.monotonic() - began, 4))
            results.append(ok)
            await anyio.sleep(0.2)
    return {"attempts": len(results), "succeeded": sum(results), "durations_s": durations, "results": results}


PROBES = {"throughput": probe_throughput, "limits": probe_limits, "punch": probe_punch}


def run_probe(args: argparse.Namespace) -> None:
    import logging

    import anyio

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(anyio.run(PROBES[args.probe], args)))


# -- orchestration --------------------------------------------------------------------------------------------


def node_args(ambassadors: list[str], interval: float, **extra: Any) -> list[str]:
    opts = {"ambassadors": ambassadors, "interval": interval, **extra}
    drivers = '["multicast", "ambassador"]'
    return ["--discovery.drivers", drivers, "--discovery.options", json.dumps({"ambassador": opts})]


def ambassador_args(**limits: Any) -> list[str]:
    opts = {"serve": True, "service_port": PORT + 1, "relay_ports": RELAY_PORTS, **limits}
    return ["--discovery.drivers", '["ambassador"]', "--discovery.options", json.dumps({"ambassador": opts})]


def relayed_at(process: Any, ambassador: str, timeout: float) -> str:
    line = process.wait_for(rf"relay reservation at ambassador {re.escape(ambassador)}: relayed address ", timeout)
    return line.text.split("relayed address ")[1].split()[0]


def probe(harness: Any, host: Any, mode: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    result = host.exec(sys.executable, __file__, "--probe", mode, "--host", host.ip, *args, timeout=timeout)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def join(
    harness: Any, lab: Any, host: Any, index: int, amb: str, peer: Any, node_id: str, plan: Plan
) -> dict[str, Any]:
    """Start a newcomer on ``host`` (only ``amb`` configured); seconds from its process start until it admits
    ``peer``, until ``peer`` admits it, and until its first introduction from the ambassador."""
    port = PORT + 10 + index
    newcomer = lab.start(
        host, [*harness.butter_command(), "node", "--port", str(port), *node_args([amb], plan.interval)],
        port=port, log_name=f"newcomer-{host.name}-{index}",
    )
    record: dict[str, Any] = {"host": host.name}
    try:
        new_id = newcomer.wait_started(plan.timeout)
        listening = newcomer.wait_for(r"listening on", 1).at - newcomer.started_at
        record["listening_from_start_s"] = round(listening, 3)
        line = newcomer.wait_for(rf"peer joined: {node_id[:8]} ", plan.timeout)
        record["knows_peer_from_start_s"] = round(line.at - newcomer.started_at, 3)
        intro = newcomer.matches(r"introduced \d+ new peers")
        record["first_introduction_from_start_s"] = round(intro[0].at - newcomer.started_at, 3) if intro else None
        back = peer.wait_for(rf"peer joined: {new_id[:8]} ", plan.interval * 2 + 15, since=newcomer.started_at)
        record["known_by_peer_from_start_s"] = round(back.at - newcomer.started_at, 3)
    except TimeoutError as exc:
        record["error"] = str(exc).splitlines()[0]
    newcomer.stop()
    print(f"  join {host.name} {index + 1}/{plan.joins}: {record}", file=sys.stderr)
    return record


def bench(plan: Plan, workdir: Path) -> dict[str, Any]:
    harness = load_harness()
    out: dict[str, Any] = {}
    with harness.Lab(workdir) as lab:
        a = lab.add_lan("a", 3, subnet="10.1.0.0/24")
        b = lab.add_lan("b", 1, subnet="10.2.0.0/24")
        c = lab.add_lan("c", 1, subnet="10.3.0.0/24")
        aobs, bobs = lab.add_host(a, name="aobs"), lab.add_host(b, name="bobs")
        public = lab.add_lan("p", 2, subnet="203.0.113.0/24")
        ra = lab.add_nat_router(a, public)
        lab.add_nat_router(b, public)
        lab.add_nat_router(c, public)
        ra.forward_port(PORT, a.hosts[1])
        p0 = lab.start_node(public.hosts[0], *ambassador_args(circuit_expiry=10.0), port=PORT)
        p1 = lab.start_node(public.hosts[1], *ambassador_args(circuit_bytes=256 * 2**20), port=PORT)
        amb0, amb1 = (f"{h.ip}:{PORT}" for h in public.hosts)
        for amb in (p0, p1):
            amb.wait_started(plan.timeout)
        a0 = lab.start_node(a.hosts[0], *node_args([amb0, amb1], plan.interval), port=PORT)
        a1 = lab.start_node(a.hosts[1], *node_args([amb0], plan.interval), port=PORT)
        b0 = lab.start_node(b.hosts[0], *node_args([amb0], plan.interval), port=PORT)
        b0_id = b0.wait_started(plan.timeout)
        for node in (a0, a1):
            node.wait_started(plan.timeout)
        relayed0, relayed1 = relayed_at(a0, amb0, plan.timeout), relayed_at(a0, amb1, plan.timeout)
        relayed_at(b0, amb0, plan.timeout)

        # time for a newcomer behind NAT to know a peer of the other LAN, and to be known by it: beside
        # neighbours that already know the other LAN (a), and alone behind its own NAT (c)
        out["time_to_know"] = {}
        for case, host in (("with_neighbours", a.hosts[2]), ("alone", c.hosts[0])):
            joins = [join(harness, lab, host, index, amb0, b0, b0_id, plan) for index in range(plan.joins)]
            knows = [j["knows_peer_from_start_s"] for j in joins if j.get("knows_peer_from_start_s") is not None]
            known = [j["known_by_peer_from_start_s"] for j in joins if j.get("known_by_peer_from_start_s") is not None]
            out["time_to_know"][case] = {
                "runs": joins,
                "knows_peer_from_start_p50_s": rounded(percentile(knows, 50)),
                "knows_peer_from_start_max_s": max(knows) if knows else None,
                "known_by_peer_from_start_p50_s": rounded(percentile(known, 50)),
                "known_by_peer_from_start_max_s": max(known) if known else None,
                "missing": plan.joins - len(knows),
            }

        # relay throughput (p1, generous limits) vs the port-forwarded direct path
        data = random.Random(7).randbytes(plan.item_mib * 2**20)
        cids = {}
        for name, node in (("relayed", a0), ("direct", a1)):
            path = lab.workdir / f"{name}.bin"
            path.write_bytes(data)
            put = aobs.exec(*harness.butter_command(), "put", str(path), "--node", node.address, "--host", aobs.ip,
                            timeout=120)
            cids[name] = put.stdout.strip().split()[-1]
        out["relay_throughput"] = probe(harness, bobs, "throughput", "--target", relayed1, "--cid", cids["relayed"])
        out["direct_throughput"] = probe(
            harness, bobs, "throughput", "--target", f"{ra.wan_ip}:{PORT}", "--cid", cids["direct"]
        )
        print(f"  throughput: relay {out['relay_throughput']}, direct {out['direct_throughput']}", file=sys.stderr)

        # limits (p0: 128 KiB, 10 s)
        limits = probe(harness, bobs, "limits", "--target", relayed0, "--cid", cids["relayed"], "--max-wait", "30")
        time.sleep(1.0)
        limits["ambassador_closed_bytes"] = len(p0.matches(r"closed: bytes limit exceeded"))
        limits["ambassador_closed_duration"] = len(p0.matches(r"closed: duration limit exceeded"))
        limits["limits"] = {"circuit_bytes": 128 * 1024, "circuit_expiry_s": 10.0}
        out["limits"] = limits
        print(f"  limits: {limits}", file=sys.stderr)

        # hole punching, repeated
        punch = probe(harness, bobs, "punch", "--ambassador", amb0, "--target", relayed0, "--count", str(plan.punches),
                      timeout=plan.punches * 15 + 60)
        ok = [d for d, r in zip(punch["durations_s"], punch["results"], strict=True) if r]
        out["hole_punch"] = {
            "attempts": punch["attempts"], "succeeded": punch["succeeded"],
            "success_rate": round(punch["succeeded"] / max(1, punch["attempts"]), 3),
            "time_p50_s": rounded(percentile(ok, 50)), "time_max_s": max(ok) if ok else None,
            "mean_s": round(statistics.mean(ok), 4) if ok else None,
        }
        print(f"  hole punch: {out['hole_punch']}", file=sys.stderr)
        lab.stop_all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 joins, 10 punches, a 1 MiB item")
    parser.add_argument("--joins", type=int)
    parser.add_argument("--punches", type=int)
    parser.add_argument("--interval", type=float)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wider.json")
    parser.add_argument("--keep-logs", type=Path, help="directory to keep every node's log in")
    # internal: a probe run inside a namespace
    parser.add_argument("--probe", choices=sorted(PROBES), help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--cid", help=argparse.SUPPRESS)
    parser.add_argument("--ambassador", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--max-wait", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        run_probe(args)
        return
    harness = load_harness()
    reason = harness.missing_nat_requirements()
    if reason:
        sys.exit(f"cannot run: {reason}")
    plan = QUICK if args.quick else Plan()
    plan = Plan(
        joins=args.joins or plan.joins, punches=args.punches or plan.punches,
        interval=args.interval or plan.interval, item_mib=plan.item_mib, timeout=plan.timeout,
    )
    print(f"wider benchmark, plan {plan}, {os.cpu_count()} CPUs", file=sys.stderr)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="butter-wider-") as scratch:
        results = bench(plan, args.keep_logs or Path(scratch))
    report = {
        "benchmark": "wider",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "plan": asdict(plan),
        "duration_s": round(time.monotonic() - began, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {args.out} in {report['duration_s']} s")


if __name__ == "__main__":
    main()
