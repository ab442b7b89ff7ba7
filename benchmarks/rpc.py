"""RPC benchmark: Butter's request path against raw asyncio and raw trio sockets, on 127.0.0.1 only.

Run::

    python benchmarks/rpc.py [--quick] [--rounds N] [--systems NAME,...] [--out benchmarks/results/rpc-baselines.json]

Every system runs in its own process (a fresh interpreter per system and round, client and server in that
one process and thread, so process CPU time is the work of both ends); rounds are interleaved, rotating the
order, and every figure is the median over rounds. The Butter figures are given as ratios of the raw
baselines measured in the same run.

Systems:

* ``raw-asyncio`` / ``raw-asyncio-tls``: asyncio streams (``asyncio.open_connection`` /
  ``asyncio.start_server``, with ``ssl=`` for TLS), a 4-byte big-endian length prefix and the body; the
  server answers each frame inline. TLS is 1.3 with mutually authenticated Ed25519 certificates (a throwaway
  self-signed pair: the same algorithms and verification mode as Butter's secure channel).
* ``raw-trio`` / ``raw-trio-tls``: the same on trio's ``SocketStream`` (and ``trio.SSLStream``).
* ``butter-asyncio`` / ``butter-asyncio-tls`` / ``butter-trio`` / ``butter-trio-tls``: two
  :class:`butter_transport_tcp.TcpTransport` (secure channel off / on) on that anyio backend; requests go to
  the server's ``echo`` dispatcher. 64 senders share the pooled connection, as the transport does for any
  peer.
* ``butter-node-asyncio`` / ``butter-node-trio``: the same through two real nodes (``butter.open_node``,
  plaintext tcp, route ``echo``), i.e. with the route table, its events and the node's dispatch.
* ``native-asyncio`` / ``native-asyncio-tls`` (an experiment, not a product): Butter's sans-IO channel
  (:mod:`butter.channel`: the same frames, ids and rules) driven by asyncio's own Protocol/Transport, with
  asyncio's native TLS for ``-tls``; a task per request on the serving side, a timeout per request on the
  calling side, no flow control or admission. What a native asyncio transport could cost.

Measurements (bounded in count and in time, ``phase_limit`` seconds each):

* ``latency``: sequential round trips of a 64-byte body on one connection; p50/p99/mean microseconds and
  ``cpu_us_per_request`` (process CPU: both ends).
* ``throughput``: 64 senders doing sequential 64-byte round trips, so 64 requests in flight. The raw systems
  do it twice: ``throughput`` with one connection per sender, ``pipelined`` with the 64 senders sharing one
  connection (replies come back in order, handed out FIFO by one reader: no ids, no encoding). Butter always
  multiplexes over its one pooled connection.
* ``large``: sequential 1 MiB requests answered with a small reply (8 bytes); MiB/s of request bytes.
* ``connect``: a fresh connection, its TLS handshake (TLS systems; for Butter also the network check),
  one 64-byte round trip, close; p50 and mean milliseconds, CPU ms per connection.

Targets (issue 16): Butter CPU per request <= 2x raw asyncio, sequential round trip <= 2x raw asyncio,
64 in flight >= 0.5x raw asyncio with one connection per sender; 1 MiB >= 0.7x raw (TLS against raw TLS);
TLS connect + first request <= 3x raw asyncio TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import platform
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
MAX_FRAME = 4 * 1024 * 1024  # bytes
SMALL_BODY = 64  # bytes
LARGE_BODY = 1024 * 1024  # bytes
TIMEOUT = 30.0  # seconds per request
HEADER = struct.Struct(">I")
SIZE = struct.Struct(">Q")  # the small reply to a large request: its length

Call = Callable[[bytes], Awaitable[bytes]]
RAW = ("raw-asyncio", "raw-asyncio-tls", "raw-trio", "raw-trio-tls")
BUTTER = ("butter-asyncio", "butter-asyncio-tls", "butter-trio", "butter-trio-tls", "butter-node-asyncio",
          "butter-node-trio")
NATIVE = ("native-asyncio", "native-asyncio-tls")  # the experiment: Butter's channel on asyncio's transports
SYSTEMS = RAW + BUTTER + NATIVE


@dataclass(frozen=True)
class Plan:
    latency_requests: int = 2000
    warmup: int = 200
    throughput_requests: int = 10000
    concurrency: int = 64
    large_requests: int = 100
    connect_requests: int = 200
    rounds: int = 3
    phase_limit: float = 20.0  # seconds


QUICK = Plan(latency_requests=500, warmup=50, throughput_requests=5000, large_requests=30, connect_requests=50,
             rounds=1, phase_limit=10.0)


@dataclass
class System:
    """How to drive one system: ``call`` for sequential use, ``senders(n, pipelined)`` for n concurrent ones,
    ``connect`` for a fresh connection and one round trip. Time and CPU come from the caller's clocks."""

    call: Call
    senders: Callable[[int, bool], Awaitable[list[Call]]]
    connect: Callable[[], Awaitable[None]] | None  # None: not measured (nodes)
    pipelines: bool = False  # offers a separate pipelined mode (raw systems)
    results: dict[str, Any] = field(default_factory=dict)


async def wait_for(coroutine: Awaitable[None]) -> None:
    await coroutine


def answer(body: bytes) -> bytes:
    """What every echo server replies: the body if small, else its length (8 bytes)."""
    return body if len(body) <= SMALL_BODY else SIZE.pack(len(body))


# -- measurements (backend-neutral: the caller passes its sleep-free helpers) -------------------------------


def summary(samples: list[float], cpu: float, scale: float, unit: str) -> dict[str, Any]:
    samples.sort()
    values = [s * scale for s in samples]
    return {
        "count": len(values),
        f"p50_{unit}": round(values[len(values) // 2], 3),
        f"p99_{unit}": round(values[min(len(values) - 1, int(len(values) * 0.99))], 3),
        f"mean_{unit}": round(statistics.fmean(values), 3),
        f"cpu_{unit}_per_request": round(cpu / len(values) * scale, 3),
    }


async def measure_latency(call: Call, plan: Plan, deadline: float) -> dict[str, Any]:
    body = os.urandom(SMALL_BODY)
    for _ in range(plan.warmup):
        await call(body)
    samples: list[float] = []
    cpu = time.process_time()
    for _ in range(plan.latency_requests):
        start = time.perf_counter()
        reply = await call(body)
        samples.append(time.perf_counter() - start)
        assert reply == body
        if start > deadline:
            break
    return summary(samples, time.process_time() - cpu, 1e6, "us")


async def measure_throughput(senders: list[Call], plan: Plan, gather: Callable[..., Awaitable[None]],
                             deadline: float) -> dict[str, Any]:
    body = os.urandom(SMALL_BODY)
    remaining = plan.throughput_requests
    done = 0

    async def sender(call: Call) -> None:
        nonlocal remaining, done
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            assert await call(body) == body
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    await gather(*[sender(call) for call in senders])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"requests": done, "concurrency": len(senders), "seconds": round(elapsed, 3),
            "requests_per_s": round(done / elapsed), "cpu_us_per_request": round(cpu / done * 1e6, 1)}


async def measure_large(call: Call, plan: Plan, deadline: float) -> dict[str, Any]:
    body = os.urandom(LARGE_BODY)
    expected = answer(body)
    await call(body)  # warm-up
    done = 0
    start, cpu = time.perf_counter(), time.process_time()
    while done < plan.large_requests and time.perf_counter() < deadline:
        assert await call(body) == expected
        done += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"requests": done, "body_bytes": LARGE_BODY, "seconds": round(elapsed, 3),
            "mib_per_s": round(done * LARGE_BODY / (1024 * 1024) / elapsed, 1),
            "cpu_us_per_request": round(cpu / done * 1e6, 1)}


async def measure_connect(connect: Callable[[], Awaitable[None]], plan: Plan, deadline: float) -> dict[str, Any]:
    samples: list[float] = []
    cpu = time.process_time()
    for _ in range(plan.connect_requests):
        start = time.perf_counter()
        await connect()
        samples.append(time.perf_counter() - start)
        if start > deadline:
            break
    return summary(samples, time.process_time() - cpu, 1e3, "ms")


async def measure(system: System, plan: Plan, gather: Callable[..., Awaitable[None]]) -> dict[str, Any]:
    def deadline() -> float:
        return time.perf_counter() + plan.phase_limit

    results = {"latency": await measure_latency(system.call, plan, deadline())}
    senders = await system.senders(plan.concurrency, False)
    results["throughput"] = await measure_throughput(senders, plan, gather, deadline())
    if system.pipelines:
        pipelined = await system.senders(plan.concurrency, True)
        results["pipelined"] = await measure_throughput(pipelined, plan, gather, deadline())
    results["large"] = await measure_large(system.call, plan, deadline())
    if system.connect is not None:
        results["connect"] = await measure_connect(system.connect, plan, deadline())
    return results


# -- TLS material for the raw baselines -------------------------------------------------------------------


def tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway self-signed Ed25519 certificate; (client, server) contexts with TLS 1.3 only, mutual
    authentication (CERT_REQUIRED both ways), no host name check, no session tickets: Butter's settings."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rpc benchmark")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, None))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = directory / "node.pem"
    path.write_bytes(cert_pem + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    contexts = []
    for side in (ssl.PROTOCOL_TLS_CLIENT, ssl.PROTOCOL_TLS_SERVER):
        context = ssl.SSLContext(side)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=cert_pem.decode())
        context.load_cert_chain(path)
        if side == ssl.PROTOCOL_TLS_SERVER:
            context.num_tickets = 0
        contexts.append(context)
    return contexts[0], contexts[1]


# -- raw asyncio ------------------------------------------------------------------------------------------


async def run_raw_asyncio(plan: Plan, tls: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        client_tls, server_tls = tls_contexts(Path(directory)) if tls else (None, None)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
                reply = answer(await reader.readexactly(length))
                writer.write(HEADER.pack(len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the benchmark is over
        finally:
            writer.close()

    # limit: a StreamReader pauses reading beyond twice its limit (64 KiB by default), which would halve the
    # 1 MiB figure; the raw baseline gets a buffer as large as a frame, as Butter's transport has.
    server = await asyncio.start_server(serve, LOOPBACK, 0, ssl=server_tls, limit=MAX_FRAME)
    port = server.sockets[0].getsockname()[1]
    writers: list[asyncio.StreamWriter] = []
    readers: set[asyncio.Task[None]] = set()

    async def open_connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(LOOPBACK, port, ssl=client_tls, server_hostname="" if tls else None,
                                             limit=MAX_FRAME)

    def direct(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Call:
        async def call(body: bytes) -> bytes:
            writer.write(HEADER.pack(len(body)) + body)
            await writer.drain()
            return await reader.readexactly(HEADER.unpack(await reader.readexactly(HEADER.size))[0])
        return call

    async def connection() -> Call:
        reader, writer = await open_connection()
        writers.append(writer)
        return direct(reader, writer)

    async def pipelined() -> Call:
        reader, writer = await open_connection()
        writers.append(writer)
        waiters: deque[asyncio.Future[bytes]] = deque()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while True:
                    length = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
                    waiters.popleft().set_result(await reader.readexactly(length))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        task = asyncio.create_task(read())
        readers.add(task)

        async def call(body: bytes) -> bytes:
            waiter = loop.create_future()
            waiters.append(waiter)
            writer.write(HEADER.pack(len(body)) + body)
            await writer.drain()
            reply: bytes = await waiter
            return reply
        return call

    async def senders(n: int, pipeline: bool) -> list[Call]:
        if pipeline:
            return [await pipelined()] * n
        return [await connection() for _ in range(n)]

    async def connect() -> None:
        reader, writer = await open_connection()
        body = os.urandom(SMALL_BODY)
        assert await direct(reader, writer)(body) == body
        writer.close()
        await writer.wait_closed()

    async def gather(*coroutines: Awaitable[None]) -> None:
        await asyncio.gather(*coroutines)

    try:
        system = System(await connection(), senders, connect, pipelines=True)
        return await measure(system, plan, gather)
    finally:
        for task in readers:
            task.cancel()
        for writer in writers:
            writer.close()
        server.close()


# -- experiment: Butter's sans-IO channel on asyncio's own transports ----------------------------------------


async def run_native_asyncio(plan: Plan, tls: bool) -> dict[str, Any]:
    """Butter's channel (:mod:`butter.channel`, the same frames and rules as the tcp transport) driven by
    asyncio's Protocol/Transport (and its native TLS for ``-tls``): a task per request on the serving side and
    a timeout per request on the calling side, as the transport has; no flow control, no admission. What a
    native asyncio transport could cost, not a product."""
    from butter.channel import ClientChannel, ServerChannel
    from butter.wire import Reply, Request

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as directory:
        client_tls, server_tls = tls_contexts(Path(directory)) if tls else (None, None)
    tasks: set[asyncio.Task[None]] = set()

    class Server(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.channel = ServerChannel(MAX_FRAME)

        def data_received(self, data: bytes) -> None:
            self.channel.receive_data(data)
            while (event := self.channel.next_event()) is not None:
                if isinstance(event, Request):
                    task = loop.create_task(self.answer(event))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            self.flush()

        async def answer(self, request: Request) -> None:
            self.channel.send_reply(Reply(request.id, answer(request.body)))
            self.flush()

        def flush(self) -> None:
            frames = self.channel.frames_to_send()
            if frames:
                self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    class Client(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.channel = ClientChannel(MAX_FRAME)
            self.waiters: dict[int, asyncio.Future[Any]] = {}

        def data_received(self, data: bytes) -> None:
            self.channel.receive_data(data)
            while (event := self.channel.next_event()) is not None:
                if isinstance(event, Reply) and (waiter := self.waiters.get(event.id)) is not None:
                    waiter.set_result(event)

        async def call(self, body: bytes) -> bytes:
            request_id = self.channel.send_request("echo", body)
            self.transport.write(b"".join(self.channel.frames_to_send()))
            waiter = self.waiters[request_id] = loop.create_future()
            try:
                async with asyncio.timeout(TIMEOUT):
                    reply = await waiter
            finally:
                del self.waiters[request_id]
                self.channel.forget(request_id)
            return reply.body  # type: ignore[no-any-return]

    server = await loop.create_server(Server, LOOPBACK, 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    clients: list[Client] = []

    async def open_client() -> Client:
        _, client = await loop.create_connection(Client, LOOPBACK, port, ssl=client_tls,
                                                 server_hostname="" if tls else None)
        return client

    async def senders(n: int, pipeline: bool) -> list[Call]:
        client = await open_client()
        clients.append(client)
        return [client.call] * n

    async def connect() -> None:
        client = await open_client()
        body = os.urandom(SMALL_BODY)
        assert await client.call(body) == body
        client.transport.abort()

    async def gather(*coroutines: Awaitable[None]) -> None:
        await asyncio.gather(*coroutines)

    try:
        first = await open_client()
        clients.append(first)
        return await measure(System(first.call, senders, connect), plan, gather)
    finally:
        for client in clients:
            client.transport.abort()
        server.close()
        for task in tasks:
            task.cancel()


# -- raw trio ---------------------------------------------------------------------------------------------


async def run_raw_trio(plan: Plan, tls: bool) -> dict[str, Any]:
    import trio

    with tempfile.TemporaryDirectory() as directory:
        client_tls, server_tls = tls_contexts(Path(directory)) if tls else (None, None)

    class Framed:
        """A trio stream with an exact-read buffer."""

        def __init__(self, stream: Any) -> None:
            self.stream = stream
            self.buffer = bytearray()

        async def exactly(self, n: int) -> bytes:
            while len(self.buffer) < n:
                data = await self.stream.receive_some(256 * 1024)
                if not data:
                    raise trio.EndOfChannel
                self.buffer += data
            out = bytes(self.buffer[:n])
            del self.buffer[:n]
            return out

        async def frame(self) -> bytes:
            return await self.exactly(HEADER.unpack(await self.exactly(HEADER.size))[0])

    async def serve(stream: Any) -> None:
        if server_tls is not None:
            stream = trio.SSLStream(stream, server_tls, server_side=True, https_compatible=False)
        framed = Framed(stream)
        try:
            while True:
                reply = answer(await framed.frame())
                await stream.send_all(HEADER.pack(len(reply)) + reply)
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def open_connection() -> Framed:
        stream: Any = await trio.open_tcp_stream(LOOPBACK, port)
        if client_tls is not None:
            stream = trio.SSLStream(stream, client_tls, server_hostname=None, https_compatible=False)
            await stream.do_handshake()
        framed = Framed(stream)
        streams.append(framed)
        return framed

    def direct(framed: Framed) -> Call:
        async def call(body: bytes) -> bytes:
            await framed.stream.send_all(HEADER.pack(len(body)) + body)
            return await framed.frame()
        return call

    async def pipelined() -> Call:
        framed = await open_connection()
        lock = trio.StrictFIFOLock()
        waiters: deque[list[Any]] = deque()

        async def read() -> None:
            try:
                while True:
                    reply = await framed.frame()
                    waiter = waiters.popleft()
                    waiter[1] = reply
                    waiter[0].set()
            except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        nursery.start_soon(read)

        async def call(body: bytes) -> bytes:
            waiter: list[Any] = [trio.Event(), b""]
            async with lock:
                waiters.append(waiter)
                await framed.stream.send_all(HEADER.pack(len(body)) + body)
            await waiter[0].wait()
            return waiter[1]  # type: ignore[no-any-return]
        return call

    async def senders(n: int, pipeline: bool) -> list[Call]:
        if pipeline:
            return [await pipelined()] * n
        return [direct(await open_connection()) for _ in range(n)]

    async def connect() -> None:
        framed = await open_connection()
        streams.remove(framed)
        body = os.urandom(SMALL_BODY)
        assert await direct(framed)(body) == body
        await trio.aclose_forcefully(framed.stream)

    async def gather(*coroutines: Awaitable[None]) -> None:
        async with trio.open_nursery() as inner:
            for coroutine in coroutines:
                inner.start_soon(wait_for, coroutine)

    streams: list[Framed] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host=LOOPBACK))
        port = listeners[0].socket.getsockname()[1]
        try:
            system = System(direct(await open_connection()), senders, connect, pipelines=True)
            return await measure(system, plan, gather)
        finally:
            for framed in streams:
                await trio.aclose_forcefully(framed.stream)
            nursery.cancel_scope.cancel()
    raise AssertionError("unreachable")


# -- Butter -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def butter_transport(secure: bool) -> AsyncIterator[System]:
    import anyio

    from butter import Identity
    from butter.settings import ButterSettings
    from butter.wire import FrameDecoder, Reply, Request, encode
    from butter_transport_tcp import Network, SecureChannel, TcpOptions, TcpTransport

    async def echo(request: Request) -> Reply:
        return Reply(request.id, answer(request.body))

    settings = ButterSettings(host=LOOPBACK, port=0, max_frame=MAX_FRAME)
    server = TcpTransport(settings, TcpOptions(secure=secure))
    client = TcpTransport(settings, TcpOptions(secure=secure))
    channel = SecureChannel(Identity.generate()) if secure else None
    async with anyio.create_task_group() as tg:
        address = await tg.start(server.serve, echo)
        await tg.start(client.serve, echo)

        async def call(body: bytes) -> bytes:
            return await client.request(address, "echo", body, timeout=TIMEOUT)

        async def senders(n: int, pipeline: bool) -> list[Call]:
            return [call] * n

        async def connect() -> None:  # what a new peer costs: TCP, TLS, the network check, one request
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

        yield System(call, senders, connect)
        assert client.stats.connections_opened == 1, "the transport should have reused one connection"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def butter_node() -> AsyncIterator[System]:
    import butter
    from butter.settings import ButterSettings

    def settings() -> ButterSettings:
        return ButterSettings(host=LOOPBACK, port=0, transport={"driver": "tcp", "options": {"secure": False}},
                              discovery={"drivers": ["static"]}, max_frame=MAX_FRAME)

    async with butter.open_node(settings()) as a, butter.open_node(settings()) as b:

        async def echo(request: butter.RouteRequest) -> bytes:
            return answer(request.body)

        a.route("echo", echo)

        async def call(body: bytes) -> bytes:
            return await b.request(a.address, "echo", body, timeout=TIMEOUT)

        async def senders(n: int, pipeline: bool) -> list[Call]:
            return [call] * n

        yield System(call, senders, None)


async def run_butter(plan: Plan, factory: Callable[[], AbstractAsyncContextManager[System]]) -> dict[str, Any]:
    import anyio

    async def gather(*coroutines: Awaitable[None]) -> None:
        async with anyio.create_task_group() as tg:
            for coroutine in coroutines:
                tg.start_soon(wait_for, coroutine)

    async with factory() as system:
        return await measure(system, plan, gather)


def run_system(name: str, plan: Plan) -> dict[str, Any]:
    """Measure one system in this process."""
    if name.startswith("raw-asyncio"):
        return asyncio.run(run_raw_asyncio(plan, tls=name.endswith("-tls")))
    if name.startswith("native-asyncio"):
        return asyncio.run(run_native_asyncio(plan, tls=name.endswith("-tls")))
    if name.startswith("raw-trio"):
        import trio

        return trio.run(run_raw_trio, plan, name.endswith("-tls"))
    import anyio

    backend = "trio" if "trio" in name else "asyncio"
    if name.startswith("butter-node"):
        return anyio.run(run_butter, plan, butter_node, backend=backend)
    secure = name.endswith("-tls")
    return anyio.run(run_butter, plan, lambda: butter_transport(secure), backend=backend)


# -- running and reporting --------------------------------------------------------------------------------


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for phase in rounds[0]:
        merged[phase] = {k: statistics.median(r[phase][k] for r in rounds) for k in rounds[0][phase]}
    merged["rounds"] = rounds
    return merged


def run_all(plan: Plan, systems: list[str]) -> dict[str, Any]:
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    failed: dict[str, str] = {}
    for round_number in range(plan.rounds):
        shift = round_number % len(systems)
        for name in systems[shift:] + systems[:shift]:
            if name in failed:
                continue
            print(f"  round {round_number + 1}/{plan.rounds}: {name} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--worker", name, "--plan", json.dumps(asdict(plan))]
            done = subprocess.run(command, capture_output=True, text=True, timeout=8 * plan.phase_limit + 60)
            if done.returncode != 0:
                failed[name] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
                print(done.stderr, file=sys.stderr)
                continue
            per_round[name].append(json.loads(done.stdout))
    return {name: {"failed": failed[name]} if name in failed else median_of(rounds)
            for name, rounds in per_round.items()}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def compare(mine: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """``mine`` against ``base``: times and CPU as mine/base (lower is better), rates as mine/base (higher is
    better); throughput against one connection per sender and against the pipelined connection."""
    return {
        "latency_p50": ratio(mine["latency"]["p50_us"], base["latency"]["p50_us"]),
        "cpu_per_request": ratio(mine["latency"]["cpu_us_per_request"], base["latency"]["cpu_us_per_request"]),
        "cpu_per_request_64_in_flight": ratio(mine["throughput"]["cpu_us_per_request"],
                                              base["throughput"]["cpu_us_per_request"]),
        "throughput": ratio(mine["throughput"]["requests_per_s"], base["throughput"]["requests_per_s"]),
        "throughput_vs_pipelined": ratio(mine["throughput"]["requests_per_s"], base["pipelined"]["requests_per_s"]),
        "large_mib_per_s": ratio(mine["large"]["mib_per_s"], base["large"]["mib_per_s"]),
    } | ({"connect_p50": ratio(mine["connect"]["p50_ms"], base["connect"]["p50_ms"])} if "connect" in mine else {})


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each Butter system against the raw systems of the same security (asyncio and trio)."""
    out: dict[str, dict[str, float]] = {}
    for name in BUTTER + NATIVE:
        mine = results.get(name)
        if not mine or "failed" in mine:
            continue
        suffix = "-tls" if name.endswith("-tls") else ""
        for base_name in (f"raw-asyncio{suffix}", f"raw-trio{suffix}"):
            base = results.get(base_name)
            if base and "failed" not in base:
                out[f"{name} / {base_name}"] = compare(mine, base)
    return out


TARGETS = {"latency_p50": ("<=", 2.0), "cpu_per_request": ("<=", 2.0), "throughput": (">=", 0.5),
           "large_mib_per_s": (">=", 0.7), "connect_p50 (tls)": ("<=", 3.0)}


def verdicts(report_ratios: dict[str, dict[str, float]]) -> dict[str, dict[str, str]]:
    """Each target met or missed, for each Butter system against raw asyncio of the same security."""
    out: dict[str, dict[str, str]] = {}
    for pair, values in report_ratios.items():
        if "/ raw-asyncio" not in pair:
            continue
        marks: dict[str, str] = {}
        for key, (op, bound) in TARGETS.items():
            metric = key.split(" ")[0]
            if key.endswith("(tls)") and "-tls" not in pair:
                continue
            value = values.get(metric)
            if value is None:
                continue
            met = value <= bound if op == "<=" else value >= bound
            marks[metric] = f"{'met' if met else 'missed'}: {value} (target {op} {bound})"
        out[pair] = marks
    return out


def table(results: dict[str, Any]) -> str:
    rows = [
        ("64 B round trip p50, us", "latency", "p50_us"),
        ("CPU us per request (both ends)", "latency", "cpu_us_per_request"),
        ("64 in flight, req/s", "throughput", "requests_per_s"),
        ("  CPU us per request", "throughput", "cpu_us_per_request"),
        ("64 in flight pipelined, req/s", "pipelined", "requests_per_s"),
        ("1 MiB request, MiB/s", "large", "mib_per_s"),
        ("connect + 1 request, ms p50", "connect", "p50_ms"),
        ("  CPU ms per connection", "connect", "cpu_ms_per_request"),
    ]
    names = [n for n in results if "failed" not in results[n]]
    lines = [f"{'':<32}" + "".join(f"{n.replace('butter-', 'b-'):>16}" for n in names)]
    for label, phase, key in rows:
        cells = []
        for n in names:
            value = results[n].get(phase, {}).get(key)
            cells.append("-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.2f}")
        lines.append(f"{label:<32}" + "".join(f"{c:>16}" for c in cells))
    lines += [f"{n} failed: {results[n]['failed']}" for n in results if "failed" in results[n]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, one round (smoke runs)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, each figure the median (default 3)")
    parser.add_argument("--systems", help=f"comma-separated subset of: {', '.join(SYSTEMS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rpc-baselines.json")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_system(args.worker, Plan(**json.loads(args.plan)))))
        return
    plan = QUICK if args.quick else Plan()
    if args.rounds:
        plan = replace(plan, rounds=max(1, min(args.rounds, 20)))
    systems = args.systems.split(",") if args.systems else list(SYSTEMS)
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    load_before = os.getloadavg()
    print(f"rpc benchmark, 127.0.0.1, plan {plan}, load average {load_before}", file=sys.stderr)
    results = run_all(plan, systems)
    report_ratios = ratios(results)
    report: dict[str, Any] = {
        "benchmark": "rpc",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "plan": asdict(plan),
        "results": results,
        "ratios": report_ratios,
        "targets_against_raw_asyncio": verdicts(report_ratios),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    for pair, marks in report["targets_against_raw_asyncio"].items():
        print(f"{pair}: " + "; ".join(f"{k} {v}" for k, v in marks.items()))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
