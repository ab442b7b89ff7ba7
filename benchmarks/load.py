"""Load benchmark: one Butter node under N concurrent clients on loopback, with one abusive client beside them.

Run::

    python benchmarks/load.py [--quick] [--clients 10 100 1000] [--seconds 10] [--backend asyncio|trio]
                              [--plaintext] [--out FILE]
    python benchmarks/load.py --admission [--seconds 10] [--backend asyncio|trio] [--plaintext]

What it does, for each N in ``--clients`` (default 10, 100, 1,000), for ``--seconds`` each (default 10):

* The **node** runs in a subprocess (``--serve``), so its memory is measured alone: a real
  :func:`butter.open_node` with the ``tcp`` transport (secure channel on unless ``--plaintext``), no
  discovery, persistence or retrieval, and a route ``echo``. Its transport options are the defaults except
  ``max_connections`` 4,096 and ``max_inbound`` 2,048 (1,000 clients need more than the default 768) and
  ``frame_timeout`` 2 s (the default is 30 s, longer than a phase). The per-IP cap stays at its default 64.
* **N well-behaved clients**, each one TLS connection (its own handshake), do sequential 256-byte ``echo``
  round trips until the phase ends: N requests in flight. They connect from 127.0.1.10 to 127.0.100.29 (the
  whole of 127.0.0.0/8 is loopback on Linux), spread over 100 /24s, at most 20 per address, so neither the
  per-IP cap nor the handshake budget per /24 (16 at once) meets their burst of up to 100 handshakes.
  Every failed or wrong reply is an error; the expected number of errors is zero.
* **One abusive client**, in a process of its own (``--abuse``, so that 1,000 busy clients do not starve
  it), runs three attacks at once for the whole phase, each from its own address (127.0.0.250 to .252,
  so the per-IP cap meets each attack separately): a connection
  flood (bursts of 100 connections held for half a second), slow-loris (up to 80 secured connections that
  send a frame header and then one byte every 0.5 s, reopened when cut off) and bad frames (frames
  announcing 2 GiB, and undecodable frames, on secured connections). Every loop is bounded in rate and time.
* Measured: requests, requests/s, latency p50/p99 (ms) of the well-behaved clients, their errors; the
  node's resident memory (``VmRSS`` from ``/proc``) before and after each phase and its peak (``VmHWM``);
  the node's transport counters for the phase (what the limits refused or cut off).

**The admission phase** (``--admission``, results in ``benchmarks/results/load-admission.json``, or
``load-admission-trio.json`` on trio): the node on the transport's *default* options; 16 existing well-behaved
connections measure ``echo`` p50 idle for 3 s; then a process of its own (``--silent``) holds 2,000 connections that
never send a byte, from 64 source addresses (127.0.1.2 to 127.0.64.2, each in a /24 of its own), each re-dialled as
soon as the node cuts it; after 5 s of ramp-up, 40 new honest peers (from 127.0.200.x, one every 0.25 s) each connect,
handshake and ask one ``echo`` within 10 s, while the existing connections measure p50 again. Reported: the new peers'
success rate and connect+answer p50/p95, the existing connections' p50 under the flood against idle, and the node's
admission counters.

After the three phases the largest N is run again, so the node's memory after a repeated phase (against
after its first run) shows whether it grows without bound or stays at its high-water mark.
``RLIMIT_NOFILE`` is raised to its hard limit in both processes (1,000 clients plus the attacker need
more than 1,024 descriptors). All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import ByteStream

from butter import Identity
from butter.wire import FrameDecoder, Reply, Request, decode_payload, encode, encode_payload
from butter_transport_tcp import Network, SecureChannel

LOOPBACK = "127.0.0.1"
ABUSER_IPS = {"flood": "127.0.0.250", "slowloris": "127.0.0.251", "bad_frames": "127.0.0.252"}
BODY = 256  # bytes per echo request
REQUEST_TIMEOUT = 10.0  # seconds
MAX_FRAME = 4 * 1024 * 1024  # the node's default, bytes
RESULTS = Path(__file__).parent / "results"


def default_out(stem: str, backend: str) -> Path:
    """``results/<stem>.json`` on asyncio, ``results/<stem>-trio.json`` on trio: one backend's run never
    overwrites the other's."""
    return RESULTS / (f"{stem}.json" if backend == "asyncio" else f"{stem}-{backend}.json")
NETWORK = Network("butter")  # the node's default network, no key
SILENT_CONNECTIONS = 2000  # the admission phase's silent connections, re-dialled as soon as cut
SILENT_HOSTS = [f"127.0.{x}.2" for x in range(1, 65)]  # 64 source addresses, each in a /24 of its own


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the node, in its own process -----------------------------------------------------------------------


def serve(backend: str, secure: bool, defaults: bool = False) -> None:
    """Run the node; print its port, then serve until stdin closes. ``defaults``: the transport's default
    options (the admission phase), else the larger caps of the client phases."""
    import butter
    from butter.settings import ButterSettings

    raise_fd_limit()
    settings = ButterSettings(
        host=LOOPBACK, port=0, discovery={"drivers": []}, persistence={"driver": ""}, retrieval={"driver": ""},
        transport={"driver": "tcp", "options": {"secure": secure} if defaults else {
            "secure": secure, "max_connections": 4096, "max_inbound": 2048, "frame_timeout": 2.0,
        }},
    )

    async def main() -> None:
        async with butter.open_node(settings) as node:

            @node.route("echo")
            async def echo(request: butter.RouteRequest) -> bytes:
                return request.body

            @node.route("load-stats")
            async def stats(request: butter.RouteRequest) -> bytes:
                from dataclasses import asdict

                return encode_payload(asdict(node.transport.stats))  # type: ignore[attr-defined]

            print(node.address.port, flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the benchmark closes our stdin

    anyio.run(main, backend=backend)


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "peak_kib": fields.get("VmHWM", 0)}


# -- clients --------------------------------------------------------------------------------------------


class Client:
    """One connection speaking Butter frames: sequential requests, replies read with a FrameDecoder."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(MAX_FRAME)
        self.next_id = 1

    @classmethod
    async def open(cls, port: int, channel: SecureChannel | None, local_host: str) -> Client:
        stream: ByteStream = await anyio.connect_tcp(LOOPBACK, port, local_host=local_host)
        if channel is not None:
            stream, _ = await channel.secure_client(stream)
        await NETWORK.exchange(stream, server=False)
        return cls(stream)

    async def call(self, route: str, body: bytes) -> Reply:
        request_id, self.next_id = self.next_id, self.next_id + 1
        await self.stream.send(encode(Request(request_id, route, body)))
        while True:
            event = self.decoder.next_event()
            if event is not None:
                assert isinstance(event, Reply) and event.id == request_id, event
                return event
            self.decoder.feed(await self.stream.receive())

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self.stream)


async def node_stats(port: int, channel: SecureChannel | None) -> dict[str, int]:
    client = await Client.open(port, channel, LOOPBACK)
    try:
        reply = await client.call("load-stats", b"")
        return dict(decode_payload(reply.body))
    finally:
        await client.aclose()


async def well_behaved(client: Client, deadline: float, latencies: list[float], errors: list[str]) -> None:
    body = os.urandom(BODY)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            with anyio.fail_after(REQUEST_TIMEOUT):
                reply = await client.call("echo", body)
            if reply.body != body:
                raise ValueError(f"wrong reply {reply!r:.80}")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        latencies.append(time.perf_counter() - start)


# -- the abusive client ---------------------------------------------------------------------------------


async def abuse(port: int, channel: SecureChannel | None, deadline: float, counts: dict[str, float]) -> None:
    """Flood, slow-loris and bad frames at once, from ABUSER_IPS, until ``deadline`` (bounded rates)."""

    async def attempt(make: Any) -> ByteStream | None:
        try:
            with anyio.fail_after(5):
                return await make()  # type: ignore[no-any-return]
        except (OSError, TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream, Exception):
            counts["abuser_refused"] += 1
            return None

    async def raw(kind: str = "flood") -> ByteStream:
        return await anyio.connect_tcp(LOOPBACK, port, local_host=ABUSER_IPS[kind])

    async def secured(kind: str) -> ByteStream:
        stream = await raw(kind)
        if channel is not None:
            stream, _ = await channel.secure_client(stream)
        await NETWORK.exchange(stream, server=False)
        return stream

    async def flood() -> None:
        while time.perf_counter() < deadline:
            held: list[ByteStream] = []

            async def one(held: list[ByteStream]) -> None:
                stream = await attempt(raw)
                counts["flood_connections"] += 1
                if stream is not None:
                    held.append(stream)

            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(one, held)
            await anyio.sleep(0.5)
            for stream in held:
                await anyio.aclose_forcefully(stream)

    async def loris() -> None:
        stream = await attempt(lambda: secured("slowloris"))
        if stream is None:
            await anyio.sleep(0.5)
            return
        try:
            await stream.send((1000).to_bytes(4, "big"))
            counts["slowloris_started"] += 1
            if not counts["slowloris_first_started_s"]:  # how long before the phase's end it began
                counts["slowloris_first_started_s"] = round(deadline - time.perf_counter(), 2)
            while time.perf_counter() < deadline:
                await anyio.sleep(0.5)
                await stream.send(b"\xa1")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            counts["slowloris_cut_off"] += 1
        finally:
            await anyio.aclose_forcefully(stream)

    async def loris_pool() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(80):

                async def keep_one() -> None:
                    while time.perf_counter() < deadline:
                        await loris()

                tg.start_soon(keep_one)

    async def bad_frames() -> None:
        while time.perf_counter() < deadline:
            stream = await attempt(lambda: secured("bad_frames"))
            if stream is None:
                await anyio.sleep(0.2)
                continue
            try:
                for _ in range(100):  # undecodable frames: each gets an error reply
                    await stream.send(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
                    counts["bad_frames"] += 1
                    await anyio.sleep(0.005)
                await stream.send((2**31).to_bytes(4, "big") + b"\x00" * 1024)  # announces 2 GiB
                counts["oversized_frames"] += 1
                with anyio.move_on_after(max(0.0, deadline - time.perf_counter())):
                    while True:  # drain error replies until the node cuts us off (frame_timeout)
                        await stream.receive()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
                pass
            finally:
                await anyio.aclose_forcefully(stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        tg.start_soon(loris_pool)
        tg.start_soon(bad_frames)


async def run_abuser(port: int, seconds: float, secure: bool) -> dict[str, float]:
    """The abusive client's process: attack for ``seconds``, return the counts."""
    raise_fd_limit()
    counts: dict[str, float] = {k: 0 for k in (
        "flood_connections", "abuser_refused", "slowloris_started", "slowloris_first_started_s",
        "slowloris_cut_off", "bad_frames", "oversized_frames")}
    channel = SecureChannel(Identity.generate()) if secure else None
    with anyio.move_on_after(seconds + 20):  # bounded even if a connection hangs
        await abuse(port, channel, time.perf_counter() + seconds, counts)
    return counts


# -- phases ---------------------------------------------------------------------------------------------


async def phase(clients: int, seconds: float, port: int, pid: int, secure: bool, backend: str) -> dict[str, Any]:
    channel = SecureChannel(Identity.generate()) if secure else None
    before = rss_kib(pid)
    stats_before = await node_stats(port, channel)
    errors: list[str] = []
    latencies: list[float] = []
    connected: list[Client] = []
    connect_start = time.perf_counter()

    async def connect(i: int) -> None:
        try:
            with anyio.fail_after(30):
                connected.append(await Client.open(port, channel, f"127.0.{1 + i % 100}.{10 + i // 100}"))
        except Exception as exc:
            errors.append(f"connect: {type(exc).__name__}: {exc}"[:200])

    async with anyio.create_task_group() as tg:
        limiter = anyio.CapacityLimiter(100)  # at most 100 handshakes in progress at once

        async def limited(i: int) -> None:
            async with limiter:
                await connect(i)

        for i in range(clients):
            tg.start_soon(limited, i)
    connect_seconds = time.perf_counter() - connect_start
    start = time.perf_counter()
    deadline = start + seconds
    abuser = await anyio.open_process(
        [sys.executable, __file__, "--abuse", str(port), "--seconds", str(seconds), "--backend", backend]
        + ([] if secure else ["--plaintext"]), stdout=subprocess.PIPE, stderr=None,
    )
    async with anyio.create_task_group() as tg:
        for client in connected:
            tg.start_soon(well_behaved, client, deadline, latencies, errors)
    elapsed = time.perf_counter() - start
    counts = await report_of(abuser, 30)
    for client in connected:
        await client.aclose()
    await anyio.sleep(1.0)  # let the node close what we dropped
    stats_after = await node_stats(port, channel)
    after = rss_kib(pid)
    latencies.sort()
    millis = [x * 1e3 for x in latencies] or [0.0]
    return {
        "clients": clients,
        "connected": len(connected),
        "connect_seconds": round(connect_seconds, 2),
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed),
        "latency_p50_ms": round(millis[len(millis) // 2], 2),
        "latency_p99_ms": round(millis[min(len(millis) - 1, int(len(millis) * 0.99))], 2),
        "latency_mean_ms": round(statistics.fmean(millis), 2),
        "errors": len(errors),
        "error_samples": errors[:5],
        "node_memory_before": before,
        "node_memory_after": after,
        "node_rss_growth_kib": after["rss_kib"] - before["rss_kib"],
        "node_limits_hit": {k: stats_after[k] - stats_before.get(k, 0) for k in stats_after
                            if stats_after[k] != stats_before.get(k, 0)},
        "abuser": counts,
    }


@asynccontextmanager
async def node_process(args: argparse.Namespace, *, defaults: bool = False) -> AsyncIterator[tuple[int, int]]:
    """The node in its own process (``--serve``) while the block runs: yields its (port, pid); stops it
    after (closing its stdin; killed if it has not left 15 s later)."""
    command = [sys.executable, __file__, "--serve", "--backend", args.backend] + (
        ["--plaintext"] if args.plaintext else []) + (["--defaults"] if defaults else [])
    node = await anyio.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
    try:
        assert node.stdout is not None and node.stdin is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await node.stdout.receive(1)
        yield int(line), node.pid
    finally:
        with anyio.CancelScope(shield=True):
            if node.stdin is not None:
                await node.stdin.aclose()
            with anyio.move_on_after(15) as waiting:
                await node.wait()
            if waiting.cancelled_caught:
                node.kill()
                await node.wait()


async def report_of(process: anyio.abc.Process, timeout: float) -> dict[str, Any]:
    """The JSON a helper process (``--abuse``, ``--silent``) prints when it is done, within ``timeout`` s."""
    assert process.stdout is not None
    report = b""
    with anyio.fail_after(timeout):
        async for chunk in process.stdout:
            report += chunk
        await process.wait()
    return dict(json.loads(report or b"{}"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with node_process(args) as (port, pid):
        phases = []
        sizes = [*args.clients, max(args.clients)]  # the largest again: memory after a repeat
        for index, clients in enumerate(sizes):
            print(f"  phase {index + 1}/{len(sizes)}: {clients} clients for {args.seconds} s ...", file=sys.stderr,
                  flush=True)
            phases.append(await phase(clients, args.seconds, port, pid, not args.plaintext, args.backend))
            print(f"    {phases[-1]['requests_per_s']} req/s, p99 {phases[-1]['latency_p99_ms']} ms, "
                  f"{phases[-1]['errors']} errors, node RSS {phases[-1]['node_memory_after']['rss_kib']} KiB",
                  file=sys.stderr, flush=True)
        return {"phases": phases, "node_peak_kib": rss_kib(pid)["peak_kib"]}


# -- the admission phase --------------------------------------------------------------------------------


async def run_silent(port: int, seconds: float) -> dict[str, int]:
    """The silent flood's process: SILENT_CONNECTIONS connections from SILENT_HOSTS that never send a byte,
    each re-dialled as soon as the node cuts it, for ``seconds``; return the counts."""
    raise_fd_limit()
    counts = {"dials": 0, "dial_failures": 0, "cut_by_node": 0}
    deadline = time.perf_counter() + seconds

    async def keep_one(source: str) -> None:
        while time.perf_counter() < deadline:
            counts["dials"] += 1
            try:
                stream = await anyio.connect_tcp(LOOPBACK, port, local_host=source)
            except OSError:
                counts["dial_failures"] += 1
                await anyio.sleep(0.05)  # bounded: at most 20 dials a second per task
                continue
            try:
                with anyio.move_on_after(max(0.0, deadline - time.perf_counter())):
                    while True:
                        await stream.receive()  # the node's bytes, if any, until it cuts us off
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                counts["cut_by_node"] += 1
            finally:
                await anyio.aclose_forcefully(stream)

    with anyio.move_on_after(seconds + 20):
        async with anyio.create_task_group() as tg:
            for i in range(SILENT_CONNECTIONS):
                tg.start_soon(keep_one, SILENT_HOSTS[i % len(SILENT_HOSTS)])
    return counts


async def latencies_of(clients: list[Client], seconds: float) -> list[float]:
    """Sequential ``echo`` round trips (milliseconds) on each of ``clients`` for ``seconds``."""
    out: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(well_behaved, client, deadline, out, errors)
    if errors:
        raise RuntimeError(f"existing connections failed: {errors[:3]}")
    return sorted(x * 1e3 for x in out)


async def newcomer(port: int, channel: SecureChannel | None, source: str) -> float | str:
    """A new honest peer: connect, handshake, one ``echo``; its duration (ms) or the error."""
    start = time.perf_counter()
    try:
        with anyio.fail_after(REQUEST_TIMEOUT):
            client = await Client.open(port, channel, source)
            try:
                reply = await client.call("echo", b"hello")
            finally:
                await client.aclose()
        if reply.body != b"hello":
            return f"wrong reply {reply!r}"[:200]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return (time.perf_counter() - start) * 1e3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values) or [0.0]
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


async def admission(args: argparse.Namespace) -> dict[str, Any]:
    """The node on default options; 16 existing connections measured idle, then under the silent flood
    while 40 new honest peers (one every 0.25 s) connect and ask."""
    secure = not args.plaintext
    channel = SecureChannel(Identity.generate()) if secure else None
    async with node_process(args, defaults=True) as (port, _):
        existing = [await Client.open(port, channel, f"127.0.0.{2 + i}") for i in range(16)]
        stats_before = await node_stats(port, channel)
        idle = await latencies_of(existing, 3.0)
        flood = await anyio.open_process(
            [sys.executable, __file__, "--silent", str(port), "--seconds", str(args.seconds + 5), "--backend",
             args.backend], stdout=subprocess.PIPE, stderr=None,
        )
        await anyio.sleep(5.0)  # the flood ramps up: 2,000 connections and their re-dials
        outcomes: list[float | str] = []
        async with anyio.create_task_group() as tg:

            async def one(i: int) -> None:
                outcomes.append(await newcomer(port, channel, f"127.0.200.{2 + i}"))

            async def spaced() -> None:
                for i in range(40):
                    tg.start_soon(one, i)
                    await anyio.sleep(0.25)

            tg.start_soon(spaced)
            under_flood = await latencies_of(existing, min(args.seconds, 10.0))
        silent = await report_of(flood, 60)
        stats_after = await node_stats(port, channel)
        for client in existing:
            await client.aclose()
    times = [x for x in outcomes if isinstance(x, float)]
    idle_p50, flood_p50 = percentile(idle, 0.5), percentile(under_flood, 0.5)
    return {
        "benchmark": "load-admission",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": args.backend,
        "secure": secure,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "node_options": "transport defaults",
        "silent_connections": SILENT_CONNECTIONS,
        "silent_source_addresses": len(SILENT_HOSTS),
        "silent_flood": silent,
        "new_peers": len(outcomes),
        "new_peers_answered": len(times),
        "new_peers_success_rate": round(len(times) / max(1, len(outcomes)), 3),
        "new_peer_connect_and_answer_p50_ms": percentile(times, 0.5),
        "new_peer_connect_and_answer_p95_ms": percentile(times, 0.95),
        "new_peer_errors": [x for x in outcomes if isinstance(x, str)][:5],
        "existing_connections": len(existing),
        "existing_p50_idle_ms": idle_p50,
        "existing_p50_under_flood_ms": flood_p50,
        "existing_p50_ratio": round(flood_p50 / idle_p50, 2) if idle_p50 else None,
        "existing_p99_under_flood_ms": percentile(under_flood, 0.99),
        "node_limits_hit": {k: stats_after[k] - stats_before.get(k, 0) for k in stats_after
                            if stats_after[k] != stats_before.get(k, 0)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s phases with 10 and 100 clients (a smoke run)")
    parser.add_argument("--clients", type=int, nargs="+", help="client counts (default 10 100 1000)")
    parser.add_argument("--seconds", type=float, help="seconds per phase (default 10, quick 3)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--plaintext", action="store_true", help="the node and clients without the secure channel")
    parser.add_argument("--out", type=Path, help="results file (default benchmarks/results/load.json, "
                        "load-admission.json with --admission; -trio before .json on trio)")
    parser.add_argument("--admission", action="store_true", help="the admission phase only (its own results file)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--silent", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--abuse", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.backend, not args.plaintext, args.defaults)
        return
    if args.silent:
        print(json.dumps(anyio.run(run_silent, args.silent, float(args.seconds), backend=args.backend)))
        return
    if args.admission:
        args.seconds = max(1.0, min(args.seconds or 10.0, 120.0))
        raise_fd_limit()
        print(f"load benchmark, admission phase, on {args.backend}: {SILENT_CONNECTIONS} silent connections from "
              f"{len(SILENT_HOSTS)} addresses", file=sys.stderr)
        out = args.out or default_out("load-admission", args.backend)
        report = anyio.run(admission, args, backend=args.backend)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        return
    if args.abuse:
        print(json.dumps(anyio.run(run_abuser, args.abuse, float(args.seconds), not args.plaintext,
                                   backend=args.backend)))
        return
    args.clients = args.clients or ([10, 100] if args.quick else [10, 100, 1000])
    args.clients = [max(1, min(n, 2000)) for n in args.clients]
    args.seconds = max(1.0, min(args.seconds or (3.0 if args.quick else 10.0), 120.0))
    fds = raise_fd_limit()
    print(f"load benchmark on {args.backend}, 127.0.0.0/8, clients {args.clients}, {args.seconds} s each, "
          f"{'plaintext' if args.plaintext else 'secure channel'}, RLIMIT_NOFILE {fds}", file=sys.stderr)
    results = anyio.run(run, args, backend=args.backend)
    largest = max(args.clients)
    first = next(p for p in results["phases"] if p["clients"] == largest)
    repeat = results["phases"][-1]
    report = {
        "benchmark": "load",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": args.backend,
        "secure": not args.plaintext,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "seconds_per_phase": args.seconds,
        "well_behaved_errors": sum(p["errors"] for p in results["phases"]),
        "node_rss_after_largest_first_vs_repeat_kib": [first["node_memory_after"]["rss_kib"],
                                                      repeat["node_memory_after"]["rss_kib"]],
        **results,
    }
    out = args.out or default_out("load", args.backend)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS before':>11} {'RSS after':>10}")
    for p in results["phases"]:
        print(f"{p['clients']:>8} {p['requests_per_s']:>8} {p['latency_p50_ms']:>8} {p['latency_p99_ms']:>8} "
              f"{p['errors']:>7} {p['node_memory_before']['rss_kib']:>9} K {p['node_memory_after']['rss_kib']:>8} K")
    print(f"node peak RSS {results['node_peak_kib']} KiB; written to {out}")


if __name__ == "__main__":
    main()
