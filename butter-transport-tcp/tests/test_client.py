"""The requesting side with real sockets on 127.0.0.1: the connection pool and error mapping."""

from __future__ import annotations

import functools
import gc
import socket
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from butter.errors import FrameTooLarge, PeerUnreachable, RemoteError, RequestTimeout, TransportBusy
from butter.peers import PeerAddress
from butter.wire import FrameDecoder, Request, encode_payload
from butter_transport_tcp import TcpTransport
from butter_transport_tcp._pool import _Dial

from .helpers import LOOPBACK, accept_plain, header, serving, tcp_transport, unused_port

pytestmark = pytest.mark.anyio


def transport(**options: Any) -> TcpTransport:
    return tcp_transport(**options)


async def test_sequential_requests_reuse_one_connection() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"one", timeout=5) == b"one"
            assert await client.request(address, "echo", b"two", timeout=5) == b"two"
            assert client.stats.connections_opened == 1
            assert server.stats.connections_accepted == 1


async def test_concurrent_first_requests_share_one_connect() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        replies: list[bytes] = []

        async def ask(i: int) -> None:
            replies.append(await client.request(address, "echo", b"%d" % i, timeout=5))

        async with serving(server) as address, serving(client):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(ask, i)
            assert sorted(replies) == sorted(b"%d" % i for i in range(20))
            assert client.stats.connections_opened == 1
            assert server.stats.connections_accepted == 1


async def test_a_refused_connect_is_freed_without_the_cycle_collector() -> None:
    """The failed connect attempt (and the exception it keeps for its waiters) must not sit in a reference
    cycle: with 100 nodes in one process, every such cycle waits for a full collection over ~1 M objects."""
    with anyio.fail_after(10):
        client = transport()
        async with serving(client):
            gc.collect()  # (garbage of earlier tests in this process)
            gc.disable()
            try:
                before = {id(o) for o in gc.get_objects() if isinstance(o, _Dial)}
                with pytest.raises(PeerUnreachable):
                    await client.request(PeerAddress(LOOPBACK, unused_port()), "echo", b"", timeout=5)
                await anyio.sleep(0.01)
                alive = [o for o in gc.get_objects() if isinstance(o, _Dial) and id(o) not in before]
            finally:
                gc.enable()
    assert alive == []


async def test_full_pool_evicts_the_least_recently_used_idle_connection() -> None:
    with anyio.fail_after(10):
        b, c, client = transport(), transport(), transport(max_connections=1)
        async with serving(b) as address_b, serving(c) as address_c, serving(client):
            assert await client.request(address_b, "echo", b"b", timeout=5) == b"b"
            assert await client.request(address_c, "echo", b"c", timeout=5) == b"c"
            assert client.stats.connections_evicted == 1 and client.open_connections == 1
            while b.open_connections:  # b saw the evicted connection close
                await anyio.sleep(0.01)
            assert await client.request(address_b, "echo", b"b again", timeout=5) == b"b again"
            assert client.stats.connections_opened == 3


async def test_full_pool_with_every_connection_busy_is_a_local_transport_busy() -> None:
    with anyio.fail_after(10):
        b, c, client = transport(), transport(), transport(max_connections=1)
        async with serving(b) as address_b, serving(c) as address_c, serving(client):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(client.request, address_b, "slow", b"5", timeout=6))
                await anyio.sleep(0.1)
                with pytest.raises(TransportBusy, match="max_connections"):
                    await client.request(address_c, "echo", b"c", timeout=5)
                assert client.stats.requests_busy == 1
                tg.cancel_scope.cancel()


async def test_idle_connections_are_closed() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport(idle_timeout=0.1)
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"x", timeout=5) == b"x"
            while client.open_connections or server.open_connections:
                await anyio.sleep(0.01)
            assert client.stats.connections_idle_closed == 1
            assert await client.request(address, "echo", b"y", timeout=5) == b"y"
            assert client.stats.connections_opened == 2


async def test_an_oversized_request_fails_before_connecting() -> None:
    with anyio.fail_after(5):
        client = transport()
        async with serving(client):
            with pytest.raises(FrameTooLarge):
                await client.request(PeerAddress(LOOPBACK, unused_port()), "echo", b"x" * 64 * 1024, timeout=5)
            assert client.stats.connections_opened == 0 and client.open_connections == 0


async def test_request_without_serve_is_unreachable() -> None:
    with anyio.fail_after(5):
        client, server = transport(), transport()
        async with serving(server) as address:
            with pytest.raises(PeerUnreachable, match="not serving"):
                await client.request(address, "echo", b"x", timeout=1)
            async with serving(client):
                assert await client.request(address, "echo", b"x", timeout=1) == b"x"
            with pytest.raises(PeerUnreachable, match="not serving"):
                await client.request(address, "echo", b"x", timeout=1)


async def raw_server() -> tuple[anyio.abc.SocketListener, PeerAddress]:
    """A plain anyio listener on 127.0.0.1 standing in for a broken peer."""
    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    return listener.listeners[0], PeerAddress(LOOPBACK, port)  # type: ignore[return-value]


async def test_peer_closing_the_connection_fails_pending_requests_at_once() -> None:
    async def read_then_hang_up(stream: SocketStream) -> None:
        async with stream:
            await accept_plain(stream)
            await stream.receive()  # the requests arrived; leave without answering

    with anyio.fail_after(10):
        listener, address = await raw_server()
        client = transport(secure=False)  # the raw server speaks plaintext frames
        async with listener, serving(client), anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, read_then_hang_up)
            start = anyio.current_time()
            with pytest.raises(PeerUnreachable):
                await client.request(address, "echo", b"x", timeout=8)
            assert anyio.current_time() - start < 2  # failed on the hang-up, not after the timeout
            tg.cancel_scope.cancel()


async def test_malformed_reply_is_a_remote_protocol_error() -> None:
    async def answer_badly(stream: SocketStream) -> None:
        async with stream:
            await accept_plain(stream)
            decoder = FrameDecoder()
            while not (events := decoder.events()):
                decoder.feed(await stream.receive())
            request = events[0]
            assert isinstance(request, Request)
            bad = encode_payload({"v": 1, "id": request.id, "ok": "perhaps"})
            await stream.send(header(len(bad)) + bad)
            await anyio.sleep(5)

    with anyio.fail_after(10):
        listener, address = await raw_server()
        client = transport(secure=False)  # the raw server speaks plaintext frames
        async with listener, serving(client), anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, answer_badly)
            with pytest.raises(RemoteError) as info:
                await client.request(address, "echo", b"x", timeout=5)
            assert info.value.code == "protocol-error"
            tg.cancel_scope.cancel()


async def test_connect_timeout_is_a_request_timeout() -> None:
    """A listener whose accept queue is full drops new SYNs, so connecting hangs (Linux behaviour)."""
    with anyio.fail_after(10), socket.socket() as full:
        full.bind((LOOPBACK, 0))
        full.listen(0)
        address = PeerAddress(LOOPBACK, full.getsockname()[1])
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue; the connects that do not fit stay pending
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex((LOOPBACK, address.port))
                fillers.append(filler)
            await anyio.sleep(0.05)
            client = tcp_transport(connect_timeout=0.3)
            async with serving(client):
                start = anyio.current_time()
                with pytest.raises(RequestTimeout, match="connecting"):
                    await client.request(address, "echo", b"x", timeout=5)
                assert anyio.current_time() - start < 2
                assert client.open_connections == 0
        finally:
            for filler in fillers:
                filler.close()


async def test_timeout_shorter_than_connect_timeout_wins() -> None:
    with anyio.fail_after(10):
        server, client = transport(), transport()
        async with serving(server) as address, serving(client):
            with pytest.raises(RequestTimeout):
                await client.request(address, "slow", b"1", timeout=0.1)
            # The connection survived the caller giving up and serves the next request.
            assert await client.request(address, "echo", b"ok", timeout=5) == b"ok"
            assert client.stats.connections_opened == 1


async def test_timeouts_on_an_open_connection_fire_each_at_its_own_deadline() -> None:
    # On an open connection the timeout is a timer (asyncio's, or the connection's timer task on trio):
    # a shorter timeout set after a longer one must still fire first, and the connection keeps serving.
    with anyio.fail_after(20):
        server, client = transport(), transport()
        async with serving(server) as address, serving(client):
            assert await client.request(address, "echo", b"open", timeout=5) == b"open"
            fired: list[float] = []

            async def slow(timeout: float) -> None:
                with pytest.raises(RequestTimeout):
                    await client.request(address, "slow", b"10", timeout=timeout)
                fired.append(timeout)

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow, 3.0)
                await anyio.sleep(0.05)
                tg.start_soon(slow, 0.2)
            assert fired == [0.2, 3.0]
            assert await client.request(address, "echo", b"ok", timeout=5) == b"ok"
            assert client.stats.connections_opened == 1


async def test_a_peer_that_never_reads_holds_back_writers_with_bounded_memory() -> None:
    from butter_transport_tcp._connection import OUTBOX_HIGH_WATER

    async def never_read(stream: SocketStream) -> None:
        async with stream:
            await accept_plain(stream)
            await anyio.sleep(30)

    with anyio.fail_after(60):
        listener, address = await raw_server()
        client = tcp_transport(max_frame=1024 * 1024, secure=False)  # the raw peer speaks plaintext
        body = b"q" * (512 * 1024)
        peak = 0
        timeouts = 0

        async def ask() -> None:
            nonlocal timeouts
            try:
                await client.request(address, "echo", body, timeout=5)  # time to connect and queue, under load
            except RequestTimeout:
                timeouts += 1

        async def watch() -> None:
            nonlocal peak
            while True:
                for connection in client._pool.connections.values():
                    peak = max(peak, connection.channel.outbound_bytes)
                await anyio.sleep(0.005)

        async with listener, serving(client), anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, never_read)
            tg.start_soon(watch)
            async with anyio.create_task_group() as asks:
                for _ in range(40):  # 20 MiB: more than the kernel's socket buffers take
                    asks.start_soon(ask)
            tg.cancel_scope.cancel()
        assert timeouts == 40
        assert 0 < peak <= OUTBOX_HIGH_WATER + len(body) + 64
