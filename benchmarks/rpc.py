"""RPC benchmark: Butter's TCP transport against a raw anyio length-prefixed echo, on 127.0.0.1 only.

Run::

    python benchmarks/rpc.py [--quick] [--backend asyncio|trio] [--rounds N] [--no-node]
                             [--out benchmarks/results/rpc.json]

Three measurements, each on every implementation in the same run:

(a) latency: sequential round trips of a 64-byte body on one connection; p50, p99 and mean, microseconds.
(b) throughput: ``--concurrency`` (64) senders each doing sequential 64-byte round trips until
    ``--requests`` in total are done; requests per second. Always 64 requests in flight.
(c) large bodies: sequential round trips of a 1 MiB body; MiB/s counted one way (each request also
    carries 1 MiB back, so the bytes moved are twice that, for every implementation alike).
(d) handshake (Butter transports only): ``handshake_requests`` fresh connections, each opened, secured
    (TLS 1.3 with Ed25519 certificates, or nothing in plaintext) and used for one 64-byte round trip, then
    closed; milliseconds per connection, p50 and mean. This is the cost of a new peer, before pooling.

Implementations:

* ``butter-transport``: two :class:`butter_transport_tcp.TcpTransport`, the client's requests go to the
  server's ``echo`` dispatcher (a tiny function returning the body). (b) multiplexes the 64 in-flight
  requests over one connection, as the transport does for any peer. The secure channel is on (default).
* ``butter-transport-plaintext``: the same with ``secure=False``, so the two columns side by side are the
  cost of the secure channel (``ratios["secure_over_plaintext"]``).
* ``butter-node``: the same through two real nodes (``butter.open_node``, route ``echo``). Skipped, with
  the reason in the results, if the node cannot start.
* ``raw`` (the baseline): a 4-byte big-endian length prefix and the body, written directly on anyio
  streams; the server echoes each frame inline. (a) and (c) use one connection, send then read. For (b)
  the baseline keeps the same 64 requests in flight on one connection: the 64 senders write under a lock
  and one reader task hands replies back in FIFO order (the cheapest possible demultiplexer; no ids, no
  encoding, no task per request on the server).
* ``raw-64-connections`` (reference for (b) only): 64 connections, each with one sequential sender.

Ratios are Butter/raw (higher is better; for latency, raw/Butter). Targets: (b) >= 50 % of raw, (c) >= 70 %
of raw. The implementations run in ``rounds`` interleaved rounds (rotating their order) and each number is
the median over rounds, because a shared machine makes single runs swing by 2x. Each measurement also
records ``cpu_us_per_request``: process CPU time per request. Client and server run in this one process and
thread, so that is the work both sides did, and it is much less sensitive to other load than wall time.
Every loop is bounded in count (the plan) and in time (``phase_limit`` seconds per phase).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from butter import Identity
from butter.settings import ButterSettings
from butter.wire import FrameDecoder, Reply, Request, encode
from butter_transport_tcp import Network, SecureChannel, TcpOptions, TcpTransport

LOOPBACK = "127.0.0.1"
MAX_FRAME = 4 * 1024 * 1024  # bytes
SMALL_BODY = 64  # bytes
LARGE_BODY = 1024 * 1024  # bytes
TIMEOUT = 30.0  # seconds per request
HEADER = struct.Struct(">I")

Call = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class Plan:
    latency_requests: int = 2000
    warmup: int = 200
    throughput_requests: int = 20000
    concurrency: int = 64
    large_requests: int = 100
    handshake_requests: int = 200
    rounds: int = 3
    phase_limit: float = 30.0  # seconds


QUICK = Plan(latency_requests=500, warmup=50, throughput_requests=5000, large_requests=30, handshake_requests=50,
             rounds=1, phase_limit=15.0)


@dataclass
class Implementation:
    """How to call one implementation: ``call`` for sequential use, ``senders(n)`` for n concurrent ones."""

    name: str
    call: Call
    senders: Callable[[int], Awaitable[list[Call]]]
    results: dict[str, Any] = field(default_factory=dict)
    handshake: Callable[[], Awaitable[None]] | None = None  # open, secure, one round trip, close


# -- measurements ---------------------------------------------------------------------------------------


async def measure_latency(call: Call, plan: Plan) -> dict[str, Any]:
    body = os.urandom(SMALL_BODY)
    samples: list[float] = []
    with anyio.move_on_after(plan.phase_limit):
        for _ in range(plan.warmup):
            await call(body)
        cpu = time.process_time()
        for _ in range(plan.latency_requests):
            start = time.perf_counter()
            reply = await call(body)
            samples.append(time.perf_counter() - start)
            assert reply == body
    cpu = time.process_time() - cpu
    samples.sort()
    micro = [s * 1e6 for s in samples]
    return {
        "requests": len(samples),
        "p50_us": round(micro[len(micro) // 2], 1),
        "p99_us": round(micro[min(len(micro) - 1, int(len(micro) * 0.99))], 1),
        "mean_us": round(statistics.fmean(micro), 1),
        "cpu_us_per_request": round(cpu / len(samples) * 1e6, 1),
    }


async def measure_throughput(senders: list[Call], plan: Plan) -> dict[str, Any]:
    body = os.urandom(SMALL_BODY)
    remaining = plan.throughput_requests
    done = 0

    async def sender(call: Call) -> None:
        nonlocal remaining, done
        while remaining > 0:
            remaining -= 1
            assert await call(body) == body
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    with anyio.move_on_after(plan.phase_limit):
        async with anyio.create_task_group() as tg:
            for call in senders:
                tg.start_soon(sender, call)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"requests": done, "concurrency": len(senders), "seconds": round(elapsed, 3),
            "requests_per_s": round(done / elapsed), "cpu_us_per_request": round(cpu / done * 1e6, 1)}


async def measure_large(call: Call, plan: Plan) -> dict[str, Any]:
    body = os.urandom(LARGE_BODY)
    await call(body)  # warm-up
    done = 0
    start, cpu = time.perf_counter(), time.process_time()
    with anyio.move_on_after(plan.phase_limit):
        for _ in range(plan.large_requests):
            assert await call(body) == body
            done += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"requests": done, "body_bytes": LARGE_BODY, "seconds": round(elapsed, 3),
            "mib_per_s": round(done * LARGE_BODY / (1024 * 1024) / elapsed, 1),
            "cpu_us_per_request": round(cpu / done * 1e6, 1)}


async def measure_handshake(handshake: Callable[[], Awaitable[None]], plan: Plan) -> dict[str, Any]:
    samples: list[float] = []
    cpu = time.process_time()
    with anyio.move_on_after(plan.phase_limit):
        for _ in range(plan.handshake_requests):
            start = time.perf_counter()
            await handshake()
            samples.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    samples.sort()
    milli = [s * 1e3 for s in samples]
    return {"connections": len(samples), "p50_ms": round(milli[len(milli) // 2], 3),
            "mean_ms": round(statistics.fmean(milli), 3), "cpu_ms_per_connection": round(cpu / len(samples) * 1e3, 3)}


# -- implementations ------------------------------------------------------------------------------------


async def echo_dispatch(request: Request) -> Reply:
    return Reply(request.id, request.body)


@asynccontextmanager
async def butter_transport(secure: bool = True) -> AsyncIterator[Implementation]:
    settings = ButterSettings(host=LOOPBACK, port=0, max_frame=MAX_FRAME)
    server = TcpTransport(settings, TcpOptions(secure=secure))
    client = TcpTransport(settings, TcpOptions(secure=secure))
    channel = SecureChannel(Identity.generate()) if secure else None
    async with anyio.create_task_group() as tg:
        address = await tg.start(server.serve, echo_dispatch)
        await tg.start(client.serve, echo_dispatch)

        async def call(body: bytes) -> bytes:
            return await client.request(address, "echo", body, timeout=TIMEOUT)

        async def senders(n: int) -> list[Call]:
            return [call] * n

        async def handshake() -> None:
            stream: Any = await anyio.connect_tcp(LOOPBACK, address.port)
            if channel is not None:
                stream, _ = await channel.secure_client(stream, server.node_id)
            await Network("butter").exchange(stream, server=False)
            body = os.urandom(SMALL_BODY)
            await stream.send(encode(Request(1, "echo", body)))
            decoder = FrameDecoder(MAX_FRAME)
            while not (events := decoder.events()):
                decoder.feed(await stream.receive())
            assert events == [Reply(1, body)]
            await anyio.aclose_forcefully(stream)

        name = "butter-transport" if secure else "butter-transport-plaintext"
        yield Implementation(name, call, senders, handshake=handshake)
        assert client.stats.connections_opened == 1, "the transport should have reused one connection"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def butter_node() -> AsyncIterator[Implementation]:
    import butter
    from butter.settings import ButterSettings

    def settings() -> ButterSettings:
        return ButterSettings(host=LOOPBACK, port=0, transport={"driver": "tcp"}, discovery={"drivers": ["static"]},
                              max_frame=MAX_FRAME)

    async with butter.open_node(settings()) as a, butter.open_node(settings()) as b:

        async def echo(request: butter.RouteRequest) -> bytes:
            return request.body

        a.route("echo", echo)

        async def call(body: bytes) -> bytes:
            return await b.request(a.address, "echo", body, timeout=TIMEOUT)

        async def senders(n: int) -> list[Call]:
            return [call] * n

        yield Implementation("butter-node", call, senders)


async def raw_echo_server(stream: SocketStream) -> None:
    async with stream:
        buffered = BufferedByteReceiveStream(stream)
        try:
            while True:
                head = await buffered.receive_exactly(HEADER.size)
                body = await buffered.receive_exactly(HEADER.unpack(head)[0])
                await stream.send(head + body)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


class RawDirect:
    """One connection, one request at a time: send the frame, read the reply frame."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffered = BufferedByteReceiveStream(stream)

    async def call(self, body: bytes) -> bytes:
        await self.stream.send(HEADER.pack(len(body)) + body)
        length = HEADER.unpack(await self.buffered.receive_exactly(HEADER.size))[0]
        return await self.buffered.receive_exactly(length)


class RawPipelined:
    """One connection shared by many senders; replies come back in order, handed out FIFO by one reader."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.lock = anyio.Lock(fast_acquire=True)
        self.waiters: deque[list[Any]] = deque()

    async def call(self, body: bytes) -> bytes:
        waiter: list[Any] = [anyio.Event(), b""]
        async with self.lock:
            self.waiters.append(waiter)
            await self.stream.send(HEADER.pack(len(body)) + body)
        await waiter[0].wait()
        return waiter[1]  # type: ignore[no-any-return]

    async def read(self, *, task_status: TaskStatus[None]) -> None:
        buffered = BufferedByteReceiveStream(self.stream)
        task_status.started()
        while True:
            length = HEADER.unpack(await buffered.receive_exactly(HEADER.size))[0]
            waiter = self.waiters.popleft()
            waiter[1] = await buffered.receive_exactly(length)
            waiter[0].set()


@asynccontextmanager
async def raw(name: str = "raw", many_connections: bool = False) -> AsyncIterator[Implementation]:
    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, raw_echo_server)
        streams: list[SocketStream] = []

        async def connect() -> SocketStream:
            stream = await anyio.connect_tcp(LOOPBACK, port)
            streams.append(stream)
            return stream

        direct = RawDirect(await connect())

        async def senders(n: int) -> list[Call]:
            if many_connections:
                return [RawDirect(await connect()).call for _ in range(n)]
            pipelined = RawPipelined(await connect())
            await tg.start(pipelined.read)
            return [pipelined.call] * n

        yield Implementation(name, direct.call, senders)
        tg.cancel_scope.cancel()
        for stream in streams:
            await anyio.aclose_forcefully(stream)


# -- running and reporting ------------------------------------------------------------------------------


async def run_once(factory: Callable[[], Any], phases: tuple[str, ...], plan: Plan) -> dict[str, Any]:
    with anyio.fail_after(4 * plan.phase_limit + 30):
        async with factory() as impl:
            if "latency" in phases:
                impl.results["latency"] = await measure_latency(impl.call, plan)
            if "throughput" in phases:
                impl.results["throughput"] = await measure_throughput(await impl.senders(plan.concurrency), plan)
            if "large" in phases:
                impl.results["large"] = await measure_large(impl.call, plan)
            if "handshake" in phases and impl.handshake is not None:
                impl.results["handshake"] = await measure_handshake(impl.handshake, plan)
            results: dict[str, Any] = impl.results
            return results


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and key, the median over rounds (``rounds`` keeps every round's numbers too)."""
    merged: dict[str, Any] = {}
    for phase in rounds[0]:
        keys = rounds[0][phase].keys()
        merged[phase] = {k: statistics.median(r[phase][k] for r in rounds) for k in keys}
    merged["rounds"] = rounds
    return merged


async def run_all(plan: Plan, backend: str, include_node: bool) -> dict[str, Any]:
    factories: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
        ("raw", lambda: raw(), ("latency", "throughput", "large")),
        ("butter-transport", butter_transport, ("latency", "throughput", "large", "handshake")),
        ("butter-transport-plaintext", lambda: butter_transport(secure=False),
         ("latency", "throughput", "large", "handshake")),
        ("raw-64-connections", lambda: raw("raw-64-connections", many_connections=True), ("throughput",)),
    ]
    if include_node:
        factories.append(("butter-node", butter_node, ("latency", "throughput", "large")))
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in factories}
    skipped: dict[str, str] = {}
    for round_number in range(plan.rounds):
        order = factories[round_number % len(factories):] + factories[: round_number % len(factories)]
        for name, factory, phases in order:
            if name in skipped:
                continue
            print(f"  round {round_number + 1}/{plan.rounds}: {name} ...", file=sys.stderr, flush=True)
            try:
                per_round[name].append(await run_once(factory, phases, plan))
            except Exception as exc:  # report a broken implementation rather than losing the whole run
                skipped[name] = f"{type(exc).__name__}: {exc}"
    return {name: {"skipped": skipped[name]} if name in skipped else median_of(rounds)
            for name, rounds in per_round.items()}


def secure_over_plaintext(results: dict[str, Any]) -> dict[str, float]:
    """The secure channel's cost: secure / plaintext per metric (throughputs below 1 and times above 1 are
    what the channel costs)."""
    secure, plain = results.get("butter-transport", {}), results.get("butter-transport-plaintext", {})
    if "skipped" in secure or "skipped" in plain or not secure or not plain:
        return {}
    return {
        "latency_p50": round(secure["latency"]["p50_us"] / plain["latency"]["p50_us"], 3),
        "throughput": round(secure["throughput"]["requests_per_s"] / plain["throughput"]["requests_per_s"], 3),
        "large_mib_per_s": round(secure["large"]["mib_per_s"] / plain["large"]["mib_per_s"], 3),
        "handshake_p50": round(secure["handshake"]["p50_ms"] / plain["handshake"]["p50_ms"], 3),
    }


def ratios(results: dict[str, Any], name: str) -> dict[str, float]:
    base, mine = results.get("raw", {}), results.get(name, {})
    if "skipped" in mine or "skipped" in base:
        return {}
    return {
        "latency_p50_raw_over_butter": round(base["latency"]["p50_us"] / mine["latency"]["p50_us"], 3),
        "throughput_butter_over_raw": round(
            mine["throughput"]["requests_per_s"] / base["throughput"]["requests_per_s"], 3),
        "large_butter_over_raw": round(mine["large"]["mib_per_s"] / base["large"]["mib_per_s"], 3),
        # the same comparisons on CPU time per request (raw cost / Butter cost)
        "cpu_latency_raw_over_butter": round(
            base["latency"]["cpu_us_per_request"] / mine["latency"]["cpu_us_per_request"], 3),
        "cpu_throughput_raw_over_butter": round(
            base["throughput"]["cpu_us_per_request"] / mine["throughput"]["cpu_us_per_request"], 3),
        "cpu_large_raw_over_butter": round(
            base["large"]["cpu_us_per_request"] / mine["large"]["cpu_us_per_request"], 3),
    }


def table(report: dict[str, Any]) -> str:
    results = report["results"]
    columns = [n for n in ("butter-transport", "butter-transport-plaintext", "butter-node", "raw",
                           "raw-64-connections") if n in results]

    def cell(name: str, phase: str, key: str) -> str:
        value = results[name].get(phase, {}).get(key)
        if value is None:
            return "-"
        return f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}" if value >= 10 else f"{value:,.3f}"

    rows = [
        ("(a) latency p50, us (64 B)", "latency", "p50_us"),
        ("(a) latency p99, us (64 B)", "latency", "p99_us"),
        ("(a) CPU us per request", "latency", "cpu_us_per_request"),
        ("(b) requests/s (64 B, 64 in flight)", "throughput", "requests_per_s"),
        ("(b) CPU us per request", "throughput", "cpu_us_per_request"),
        ("(c) MiB/s (1 MiB bodies)", "large", "mib_per_s"),
        ("(c) CPU us per request", "large", "cpu_us_per_request"),
        ("(d) new connection + 1 request, ms p50", "handshake", "p50_ms"),
        ("(d) CPU ms per new connection", "handshake", "cpu_ms_per_connection"),
    ]
    width = 40
    lines = [f"{'':<{width}}" + "".join(f"{c:>28}" for c in columns)]
    for label, phase, key in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{cell(c, phase, key):>28}" for c in columns))
    for name in columns:
        if "skipped" in results[name]:
            lines.append(f"{name} skipped: {results[name]['skipped']}")
    lines.append("")
    cost = report.get("secure_over_plaintext") or {}
    if cost:
        lines.append(
            f"secure channel / plaintext: latency p50 x{cost['latency_p50']}, throughput x{cost['throughput']}, "
            f"1 MiB x{cost['large_mib_per_s']}, new connection x{cost['handshake_p50']}"
        )
    for name, values in report["ratios"].items():
        if values:
            lines.append(
                f"{name}/raw, wall clock: latency {values['latency_p50_raw_over_butter']:.0%} of raw speed (p50), "
                f"throughput {values['throughput_butter_over_raw']:.0%} (target >= 50%), "
                f"1 MiB {values['large_butter_over_raw']:.0%} (target >= 70%)"
            )
            lines.append(
                f"{' ' * len(name)}      CPU time: latency {values['cpu_latency_raw_over_butter']:.0%}, "
                f"throughput {values['cpu_throughput_raw_over_butter']:.0%}, "
                f"1 MiB {values['cpu_large_raw_over_butter']:.0%}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (for CI smoke runs)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rpc.json")
    parser.add_argument("--no-node", action="store_true", help="skip the measurement through two Butter nodes")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, each number is the median (default 3, quick 1)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.rounds:
        plan = replace(plan, rounds=max(1, min(args.rounds, 20)))
    print(f"rpc benchmark on {args.backend}, 127.0.0.1, plan {plan}", file=sys.stderr)
    results = anyio.run(run_all, plan, args.backend, not args.no_node, backend=args.backend)
    report = {
        "benchmark": "rpc",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": args.backend,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "plan": asdict(plan),
        "results": results,
        "ratios": {name: ratios(results, name) for name in ("butter-transport", "butter-transport-plaintext",
                                                             "butter-node") if name in results},
        "secure_over_plaintext": secure_over_plaintext(results),
        "targets": {"throughput_butter_over_raw": 0.5, "large_butter_over_raw": 0.7},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
