"""Resource limits with real sockets on 127.0.0.1: caps on incoming connections and the slow-peer cut-off.

A limit hit is counted and never fatal: after each, a well-behaved client is still served. These run on
plaintext transports so that a raw socket can misbehave byte by byte (the secure channel is the same
beneath: the caps apply before the handshake, the frame deadline after it).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from butter.wire import Request, encode
from butter_transport_tcp import TcpTransport

from .helpers import LOOPBACK, connect_plain, header, read_events, serving, tcp_transport

pytestmark = pytest.mark.anyio


def transport(**options: Any) -> TcpTransport:
    options.setdefault("secure", False)
    return tcp_transport(**options)


async def closed_at_once(stream: anyio.abc.SocketStream) -> bool:
    try:
        with anyio.fail_after(2):
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return True
    return False


async def assert_served(address: object) -> None:
    client = transport()
    async with serving(client):
        assert await client.request(address, "echo", b"fine", timeout=5) == b"fine"  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", ["max_inbound_per_ip", "max_inbound_per_subnet"])
async def test_incoming_connections_over_an_address_cap_are_closed_at_once(cap: str) -> None:
    counters = {
        "max_inbound_per_ip": "connections_refused_per_ip",
        "max_inbound_per_subnet": "connections_refused_per_subnet",
    }
    with anyio.fail_after(10):
        server = transport(**{cap: 2})
        async with serving(server) as address:
            first = await connect_plain(address.port)
            second = await connect_plain(address.port)
            async with first, second, await anyio.connect_tcp(LOOPBACK, address.port) as third:
                assert await closed_at_once(third)
                assert getattr(server.stats, counters[cap]) == 1
                await first.send(encode(Request(1, "echo", b"kept")))
                assert len(await read_events(first, 1)) == 1  # the admitted ones are still served
            while server.open_connections:
                await anyio.sleep(0.01)
            await assert_served(address)


@pytest.mark.parametrize("cap", ["max_inbound", "max_connections"])
async def test_over_a_working_cap_with_every_peer_protected_the_newcomer_is_closed(cap: str) -> None:
    counters = {"max_inbound": "connections_refused_inbound", "max_connections": "connections_refused"}
    with anyio.fail_after(10):
        server = transport(**{cap: 2}, reserved_inbound=0)
        async with serving(server) as address:
            first = await connect_plain(address.port)
            second = await connect_plain(address.port)
            async with first, second, await connect_plain(address.port) as third:
                assert await closed_at_once(third)  # two peers of one /24: both protected (diversity, speed)
                assert getattr(server.stats, counters[cap]) == 1
                await first.send(encode(Request(1, "echo", b"kept")))
                assert len(await read_events(first, 1)) == 1
            while server.open_connections:
                await anyio.sleep(0.01)
            await assert_served(address)


async def test_a_peer_trickling_a_frame_is_cut_off() -> None:
    with anyio.fail_after(10):
        server = transport(frame_timeout=0.3)
        async with serving(server) as address:
            async with await connect_plain(address.port) as loris:
                await loris.send(header(1000) + b"x")
                start = anyio.current_time()
                try:
                    while anyio.current_time() - start < 3:  # one byte every 50 ms: 50 s for the frame
                        await loris.send(b"x")
                        await anyio.sleep(0.05)
                except (anyio.BrokenResourceError, anyio.EndOfStream):
                    pass
                assert await closed_at_once(loris)
                assert anyio.current_time() - start < 1.5
            assert server.stats.connections_slow_closed == 1
            await assert_served(address)


async def test_frames_that_complete_in_time_are_never_cut_off() -> None:
    """Many frames, each split across sends, over longer than ``frame_timeout`` in total: each frame's own
    deadline starts when it begins, so none is cut off."""
    with anyio.fail_after(10):
        server = transport(frame_timeout=0.2)
        async with serving(server) as address:
            async with await connect_plain(address.port) as client:
                for i in range(8):
                    frame = encode(Request(i + 1, "echo", b"%d" % i))
                    await client.send(frame[:3])
                    await anyio.sleep(0.05)
                    await client.send(frame[3:] + encode(Request(100 + i, "echo", b"next"))[:2])
                    await anyio.sleep(0.05)
                    await client.send(encode(Request(100 + i, "echo", b"next"))[2:])
                events = await read_events(client, 16)
            assert len(events) == 16 and server.stats.connections_slow_closed == 0
