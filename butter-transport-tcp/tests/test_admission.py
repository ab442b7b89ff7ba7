"""Admission that cannot be locked, over real TCP on 127.0.0.0/8 (Linux routes all of it to loopback, so a
test can connect from 127.0.x.y): silent connections from many addresses cannot keep an honest peer out,
and the inbound-eviction rule keeps diverse, long-lived, useful peers."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream

from butter import Identity
from butter.peers import PeerAddress
from butter.wire import Request, encode
from butter_transport_tcp import Network, SecureChannel
from butter_transport_tcp._eviction import Candidate, choose_eviction, netgroup

from .helpers import LOOPBACK, connect_plain, read_events, serving, tcp_transport

pytestmark = pytest.mark.anyio

FLOOD_HOSTS = [f"127.0.{net}.{host}" for net in range(1, 5) for host in range(2, 5)]  # 12 addresses, 4 /24s


def test_netgroups_are_slash_24_and_slash_48() -> None:
    assert netgroup("10.1.2.3") == netgroup("10.1.2.200") == "10.1.2.0/24"
    assert netgroup("10.1.3.3") != netgroup("10.1.2.3")
    assert netgroup("2001:db8:1:2::5") == netgroup("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    assert netgroup("::ffff:10.1.2.3") == "10.1.2.0/24"


def test_the_eviction_rule_protects_diverse_fast_useful_and_old_peers() -> None:
    honest = [Candidate(f"10.0.{i}.0/24", connected=float(i), latency=0.5, active=0.0) for i in range(12)]
    flood = [Candidate("6.6.6.0/24", connected=100.0 + i, latency=1.0, active=0.0) for i in range(30)]
    known = Candidate("6.6.6.0/24", connected=200.0, latency=9.0, known=True)
    chosen = choose_eviction([*honest, *flood, known], key=b"k")
    assert chosen is flood[-1]  # the youngest of the largest netgroup
    assert choose_eviction(honest[:4], key=b"k") is None  # few peers, all protected
    assert choose_eviction([known], key=b"k") is None  # known hosts are never evicted


async def hold(port: int, source: str, held: list[SocketStream]) -> None:
    try:
        held.append(await anyio.connect_tcp(LOOPBACK, port, local_host=source))
    except OSError:
        pass


async def test_silent_connections_from_many_addresses_cannot_lock_out_an_honest_peer() -> None:
    with anyio.fail_after(30):
        server = tcp_transport(
            handshake_timeout=20, max_inbound=32, max_handshakes=16, max_handshakes_per_subnet=4,
        )
        honest = tcp_transport()
        held: list[SocketStream] = []
        try:
            async with serving(server) as address, serving(honest):
                async with anyio.create_task_group() as tg:  # 96 silent connections, 8 per address
                    for source in FLOOD_HOSTS * 8:
                        tg.start_soon(hold, address.port, source, held)
                while server.stats.connections_accepted < 96:
                    await anyio.sleep(0.01)
                assert server.stats.handshakes_evicted >= 96 - 16
                for attempt in range(5):  # each a fresh connection and handshake through the flood
                    assert await honest.request(address, "echo", b"%d" % attempt, timeout=10) == b"%d" % attempt
                    honest._pool.discard(address, next(iter(honest._pool.connections.values())), "next attempt")
        finally:
            for stream in held:
                await anyio.aclose_forcefully(stream)


async def test_a_full_inbound_cap_evicts_the_flood_not_the_honest_peers() -> None:
    with anyio.fail_after(30):
        server = tcp_transport(secure=False, max_inbound=40, reserved_inbound=0)
        streams: list[SocketStream] = []
        try:
            async with serving(server) as address:
                for net in range(1, 5):  # four honest, long-lived peers of four /24s, recently useful
                    stream = await connect_plain(address.port, local_host=f"127.0.{net}.1")
                    await stream.send(encode(Request(1, "echo", b"useful")))
                    await read_events(stream, 1)
                    streams.append(stream)
                honest = list(streams)
                for i in range(60):  # a flood of working connections from one /24
                    try:
                        streams.append(await connect_plain(address.port, local_host=f"127.0.9.{i + 1}"))
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass
                while server.stats.inbound_evicted < 60 - 36:
                    await anyio.sleep(0.01)
                for i, stream in enumerate(honest):  # every honest peer is still connected and served
                    await stream.send(encode(Request(2 + i, "echo", b"still")))
                    assert len(await read_events(stream, 1)) == 1
        finally:
            for stream in streams:
                await anyio.aclose_forcefully(stream)


async def secure_raw(port: int, source: str) -> ByteStream:
    """A raw secure client (a throwaway identity) from ``source``, past the network check."""
    stream: ByteStream = await anyio.connect_tcp(LOOPBACK, port, local_host=source)
    stream, _ = await SecureChannel(Identity.generate()).secure_client(stream)
    await Network("butter").exchange(stream, server=False)
    return stream


async def test_places_are_kept_for_known_hosts() -> None:
    with anyio.fail_after(20):
        server = tcp_transport(max_inbound=4, reserved_inbound=2)
        server.expect_identity(PeerAddress("127.0.5.1", 9000), "a known host's node id")
        streams: list[ByteStream] = []
        try:
            async with serving(server) as address:
                for source in ("127.0.1.1", "127.0.2.1"):  # unknown peers fill their share (4 - 2)
                    streams.append(await secure_raw(address.port, source))
                    await streams[-1].send(encode(Request(1, "echo", b"x")))
                    await read_events(streams[-1], 1)  # type: ignore[arg-type]
                streams.append(await secure_raw(address.port, "127.0.3.1"))  # one more: both others protected
                while server.stats.connections_refused_inbound < 1:
                    await anyio.sleep(0.01)
                streams.append(known := await secure_raw(address.port, "127.0.5.1"))  # a reserved place
                await known.send(encode(Request(2, "echo", b"known")))
                assert len(await read_events(known, 1)) == 1  # type: ignore[arg-type]
                assert server.stats.connections_refused_inbound == 1
        finally:
            for stream in streams:
                await anyio.aclose_forcefully(stream)


async def test_a_full_handshake_budget_refuses_the_busiest_netgroup_and_admits_the_others() -> None:
    """A flood over several /24s that fills ``max_handshakes`` gets its re-dials refused (one close each), not
    an eviction and a new handshake each; a newcomer of another /24 still evicts one and gets in."""
    with anyio.fail_after(30):
        server = tcp_transport(handshake_timeout=20, max_handshakes=16, max_handshakes_per_subnet=8)
        honest = tcp_transport()
        held: list[SocketStream] = []
        flood = [f"127.0.{net}.2" for net in range(1, 5)]  # four /24s, four handshakes each: the budget is full
        try:
            async with serving(server) as address, serving(honest):
                for source in flood * 4:
                    await hold(address.port, source, held)
                while server.stats.connections_accepted < 16:
                    await anyio.sleep(0.01)
                for source in flood * 2:  # eight re-dials of the flood: each its own netgroup's, the busiest
                    await hold(address.port, source, held)
                while server.stats.handshakes_refused < 8:
                    await anyio.sleep(0.01)
                assert server.stats.handshakes_evicted == 0
                assert await honest.request(address, "echo", b"in", timeout=10) == b"in"  # from 127.0.0.1
                assert server.stats.handshakes_evicted == 1
        finally:
            for stream in held:
                await anyio.aclose_forcefully(stream)
