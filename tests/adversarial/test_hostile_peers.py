"""Hostile peers over real sockets on 127.0.0.1, secure channel on, asyncio and trio.

Each test attacks a node that stored an item first, then checks (:func:`nodes.assert_intact_and_serving`)
that it still answers an honest peer and still holds every block of that item.
"""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import ByteStream

import butter
from butter import Identity
from butter.errors import BlockCorrupted, ButterError, PeerIdentityMismatch
from butter.peers import MAX_COUNT, MAX_STORAGE, MAX_UPTIME, PeerAddress
from butter.wire import FrameDecoder, Reply, Request, encode, encode_payload
from butter_transport_tcp import Network, SecureChannel, TcpTransport

from .nodes import assert_intact_and_serving, target_node, tcp_settings

pytestmark = pytest.mark.anyio

FLOOD_IP = "127.0.0.3"  # the flood comes from another loopback address than the honest peers (127.0.0.1)


async def secure_raw(address: PeerAddress, *, local_host: str | None = None) -> ByteStream:
    """A raw client stream through the secure channel, with a throwaway identity: bytes of our choosing."""
    raw = await anyio.connect_tcp(address.host, address.port, local_host=local_host)
    stream, _ = await SecureChannel(Identity.generate()).secure_client(raw)
    await Network("butter").exchange(stream, server=False)
    return stream


async def events(stream: ByteStream, count: int) -> list[object]:
    decoder, out = FrameDecoder(), []
    while len(out) < count:
        decoder.feed(await stream.receive())
        out.extend(decoder.events())
    return out


def transport_of(node: butter.Node) -> TcpTransport:
    assert isinstance(node.transport, TcpTransport)
    return node.transport


async def test_truncated_oversized_and_garbage_frames() -> None:
    with anyio.fail_after(20):
        async with target_node() as (node, cid):
            limit = int(node.settings.max_frame)
            async with await secure_raw(node.address) as stream:
                await stream.send((limit + 1).to_bytes(4, "big") + b"\x00" * 1000)  # announces too much
                (too_large,) = await events(stream, 1)
                assert isinstance(too_large, Reply) and too_large.error is not None
                assert too_large.error.code == "frame-too-large"
            async with await secure_raw(node.address) as stream:
                await stream.send(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1" + encode(Request(3, "ping", b"")))
                replies = await events(stream, 2)
                assert [r.error.code if isinstance(r, Reply) and r.error else "ok" for r in replies] == [
                    "protocol-error", "ok"]  # the bad frame is answered, the next one served
            async with await secure_raw(node.address) as stream:
                await stream.send(encode(Request(4, "store", encode_payload({"blocks": [b"x" * 100]})))[:-30])
            assert transport_of(node).stats.frames_rejected >= 2
            await assert_intact_and_serving(node, cid)


async def test_a_flood_of_connections_is_capped_and_honest_peers_are_served_meanwhile() -> None:
    with anyio.fail_after(30):
        async with target_node(max_inbound_per_ip=16, handshake_timeout=5.0) as (node, cid):
            transport = transport_of(node)
            flood: list[ByteStream] = []

            async def connect(garbage: bool) -> None:
                stream = await anyio.connect_tcp(node.address.host, node.address.port, local_host=FLOOD_IP)
                flood.append(stream)
                if garbage:
                    await stream.send(b"\x16\x03\x01garbage that is not a client hello")

            async with butter.open_node(tcp_settings()) as honest:
                async with anyio.create_task_group() as tg:  # 200 silent connections at once, from one address
                    for _ in range(200):
                        tg.start_soon(connect, False)
                while transport.stats.connections_accepted + transport.stats.connections_refused_per_ip < 200:
                    await anyio.sleep(0.01)
                for _ in range(20):  # the flood holds its 16 slots; an honest peer's requests all succeed
                    assert await honest.fetch_block(node.address, cid, timeout=5)
                assert transport.stats.connections_refused_per_ip == 200 - 16
                for stream in flood:
                    await anyio.aclose_forcefully(stream)
                flood.clear()
                async with anyio.create_task_group() as tg:  # then 100 that send garbage instead of a handshake
                    for _ in range(100):
                        tg.start_soon(connect, True)
                for _ in range(20):
                    assert await honest.fetch_block(node.address, cid, timeout=5)
            for stream in flood:
                await anyio.aclose_forcefully(stream)
            while transport.open_connections:
                await anyio.sleep(0.02)
            assert transport.stats.handshakes_failed >= 16
            await assert_intact_and_serving(node, cid)


async def test_slow_loris_in_the_handshake_and_in_a_frame() -> None:
    with anyio.fail_after(20):
        async with target_node(handshake_timeout=0.5, frame_timeout=0.5) as (node, cid):
            transport = transport_of(node)
            async with await anyio.connect_tcp(node.address.host, node.address.port) as handshake_loris:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    with anyio.fail_after(3):
                        for byte in b"\x16\x03\x01\x02\x00" + b"\x01" * 100:  # a client hello, a byte a time
                            await handshake_loris.send(bytes([byte]))
                            await anyio.sleep(0.05)
                        await handshake_loris.receive()
            async with await secure_raw(node.address) as frame_loris:
                await frame_loris.send((1000).to_bytes(4, "big") + b"\x82")
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    with anyio.fail_after(3):
                        for _ in range(60):
                            await frame_loris.send(b"\xa1")
                            await anyio.sleep(0.05)
                        await frame_loris.receive()
            while transport.stats.connections_slow_closed < 1 or transport.stats.handshakes_failed < 1:
                await anyio.sleep(0.02)
            await assert_intact_and_serving(node, cid)


async def test_a_peer_serving_blocks_that_do_not_match_their_hash() -> None:
    with anyio.fail_after(30):
        async with target_node() as (node, cid), butter.open_node(tcp_settings()) as liar:
            other = await liar.store(b"the liar's item " * 1000)

            @liar.route("fetch-block")
            async def corrupted(request: butter.RouteRequest) -> bytes:
                return b"not what you asked for" * 10

            with pytest.raises(BlockCorrupted):
                await node.fetch_block(liar.address, other, timeout=5)
            assert not await node.blocks.has(other)
            node.introduce([liar.address])
            while liar.address not in {p.address for p in node.hosts.peers()}:
                await anyio.sleep(0.05)
            try:
                data = await node.retrieve(other)
            except ButterError:
                pass  # the only holder lies: no data is the right answer
            else:
                assert data == b"the liar's item " * 1000, "retrieval returned corrupted data"
            assert not await node.blocks.has(other) or await node.blocks.get(other) is None
            await assert_intact_and_serving(node, cid)


def lying_quality(node_id: str, address: PeerAddress) -> bytes:
    absurd = {"uptime": 1e308, "available_storage": 2**64 - 1, "known_hosts": -7, "known_by": float("nan"),
              "ambassador": "certainly"}
    return encode_payload({"id": node_id, "addr": address.to_wire(), "quality": absurd})


async def test_a_peer_lying_in_its_host_quality_record_is_clamped() -> None:
    with anyio.fail_after(20):
        async with target_node() as (node, cid), butter.open_node(tcp_settings()) as liar:

            @liar.route("host-quality")
            async def boast(request: butter.RouteRequest) -> bytes:
                return lying_quality(liar.node_id, liar.address)

            node.introduce([liar.address])
            while liar.address not in {p.address for p in node.hosts.peers()}:
                await anyio.sleep(0.05)
            (info,) = [p for p in node.hosts.peers() if p.address == liar.address]
            assert info.quality.uptime == MAX_UPTIME and info.quality.available_storage == MAX_STORAGE
            assert info.quality.known_hosts == 0 and info.quality.known_by == 0 and info.quality.ambassador is False
            assert 0 <= info.quality.known_hosts <= MAX_COUNT
            await assert_intact_and_serving(node, cid)


async def test_a_peer_claiming_another_node_id_than_it_authenticates_as_is_cut_off() -> None:
    with anyio.fail_after(20):
        async with butter.open_node(tcp_settings(refresh=60.0, stack=False)) as node, \
                butter.open_node(tcp_settings()) as liar:
            claimed = Identity.generate().node_id  # someone else's id

            @liar.route("host-quality")
            async def pose(request: butter.RouteRequest) -> bytes:
                return lying_quality(claimed, liar.address)

            node.introduce([liar.address])
            transport = transport_of(node)
            while transport.stats.identity_mismatches < 1:  # admitted under the claimed id: connection closed
                await anyio.sleep(0.05)
            # While the claim stands, every connection to the address is refused.
            assert transport.expected_node_id(liar.address) == claimed
            with pytest.raises(PeerIdentityMismatch):
                await node.request(liar.address, "ping", timeout=3)
            await node.hosts.refresh()  # the liar cannot answer as the claimed node: it is dropped
            assert claimed not in {p.node_id for p in node.hosts.peers()}
            assert transport.expected_node_id(liar.address) is None  # and the claim forgotten with it
