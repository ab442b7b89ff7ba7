"""trio's streams (``_trio``) on a real TCP connection on 127.0.0.1: what the connections rely on.

A write the kernel cannot take at once is finished, in order, by the next ``send``; closing a stream wakes a
task waiting to read it; a peer that closes is the end of the stream, in plaintext and in TLS.
"""

from __future__ import annotations

import os
import socket

import anyio
import pytest
from anyio.streams.tls import TLSAttribute

from butter import Identity
from butter_transport_tcp import SecureChannel
from butter_transport_tcp._secure import peer_node_id

from .helpers import LOOPBACK

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["trio"])]

SMALL_BUFFER = 64 * 1024  # bytes: the sockets' kernel buffers, so a few MiB cannot be taken at once


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one TCP connection on 127.0.0.1, with small kernel buffers."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    return client, server


async def test_a_write_the_kernel_cannot_take_at_once_is_finished_in_order_by_the_next_send() -> None:
    from butter_transport_tcp._trio import TrioStream

    client, server = tcp_pair()
    sender, receiver = TrioStream(client), TrioStream(server)
    data = os.urandom(4 * 1024 * 1024)
    with anyio.fail_after(30):
        assert sender.write_now(data) is False  # partly written: the rest is kept
        assert sender.unsent > 0
        assert not sender.writable  # nothing else may be written before it
        received = bytearray()

        async def read() -> None:
            while len(received) < len(data) + 4:
                received.extend(await receiver.receive(65536))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await sender.send(b"tail")
        assert sender.unsent == 0 and sender.writable
        assert bytes(received) == data + b"tail"
        await sender.aclose()
        await receiver.aclose()


async def test_closing_wakes_a_reader_and_the_peer_sees_the_end_of_the_stream() -> None:
    from butter_transport_tcp._trio import TrioStream

    client, server = tcp_pair()
    near, far = TrioStream(client), TrioStream(server)
    with anyio.fail_after(10):
        outcome: list[type[Exception]] = []

        async def read() -> None:
            try:
                await near.receive()
            except (anyio.ClosedResourceError, anyio.EndOfStream) as exc:
                outcome.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()  # the reader waits for the socket
            await near.aclose()
        assert outcome == [anyio.ClosedResourceError]
        with pytest.raises(anyio.EndOfStream):
            await far.receive()
        await far.aclose()


async def test_tls_carries_bytes_both_ways_and_ends_when_the_peer_closes() -> None:
    from butter_transport_tcp._native import open_stream

    a, b = Identity.generate(), Identity.generate()
    client_side, server_side = SecureChannel(a), SecureChannel(b)
    client, server = tcp_pair()
    with anyio.fail_after(30):
        streams: dict[str, anyio.abc.ByteStream] = {}

        async def handshake(name: str, sock: socket.socket, channel: SecureChannel, server_side: bool) -> None:
            context = channel._server if server_side else channel._client
            streams[name] = await open_stream(sock, context, server_side=server_side)

        async with anyio.create_task_group() as tg:
            tg.start_soon(handshake, "client", client, client_side, False)
            tg.start_soon(handshake, "server", server, server_side, True)
        near, far = streams["client"], streams["server"]
        assert type(near).__name__ == "TrioTLSStream"
        assert peer_node_id(near.extra(TLSAttribute.peer_certificate_binary)) == b.node_id
        assert peer_node_id(far.extra(TLSAttribute.peer_certificate_binary)) == a.node_id
        body = os.urandom(1024 * 1024)  # many TLS records, more than the kernel takes at once
        received = bytearray()

        async def read() -> None:
            while len(received) < len(body):
                received.extend(await far.receive(65536))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await near.send(body)
        assert bytes(received) == body
        await far.send(b"reply")
        assert await near.receive() == b"reply"
        await near.aclose()  # no close_notify: the peer sees the end of the stream
        with pytest.raises(anyio.EndOfStream):
            await far.receive()
        await far.aclose()
